"""Importance-sampled log-likelihood and latent statistics against exact answers."""
import jax
import jax.numpy as jnp
import numpy as np

from test_estimators import MODEL, X, _generic_params, _posterior_params, exact_elbo, exact_log_evidence
from vaejax import evaluate

XS = jnp.stack([X, X * 0.5 - 0.3, X[..., ::-1, :] + 0.7, jnp.zeros_like(X)])


def _near_posterior_params():
  """q a little off the exact posterior (shifted, and wider so the weights stay tame)."""
  params = _posterior_params()
  head = params["encoder"]["head"]
  head["mean"]["bias"] = head["mean"]["bias"] + 0.4
  head["log_var"]["bias"] = head["log_var"]["bias"] + 0.5
  return params


def test_importance_sampling_recovers_the_exact_log_evidence():
  params = _near_posterior_params()
  # The estimate's Monte-Carlo standard error is about sqrt(Var[w] / E[w]^2 / k), near
  # 0.005 here with k = 50000: 0.02 is four of them.
  est = evaluate.importance_log_likelihood(MODEL, params, XS, key=jax.random.PRNGKey(0),
                                           num_samples=50_000, chunk_size=5000, batch_size=2)
  exact = jnp.stack([exact_log_evidence(params, x) for x in XS])
  elbo = jnp.stack([exact_elbo(params, x) for x in XS])
  np.testing.assert_allclose(est, exact, atol=0.02)
  assert bool(jnp.all(est > elbo + 0.02)), (est, elbo)  # q is not the posterior: a strict gap
  # At the exact posterior every importance weight equals p(x): exact with any k.
  post = _posterior_params()
  one = evaluate.importance_log_likelihood(MODEL, post, XS[:1], key=jax.random.PRNGKey(1),
                                           num_samples=10, chunk_size=5)
  np.testing.assert_allclose(one[0], exact_log_evidence(post, XS[0]), atol=1e-4)


def test_estimate_rises_with_k_on_average():
  params = _generic_params()
  xs = jnp.tile(XS, (25, 1, 1, 1))
  means = [float(jnp.mean(evaluate.importance_log_likelihood(
      MODEL, params, xs, key=jax.random.PRNGKey(2), num_samples=k, chunk_size=k)))
      for k in (1, 10, 1000)]
  assert means[0] < means[1] < means[2], means


def test_chunking_and_batching_do_not_change_the_estimate():
  params = _generic_params()
  key = jax.random.PRNGKey(3)
  a = evaluate.importance_log_likelihood(MODEL, params, XS, key=key, num_samples=1000,
                                         chunk_size=1000, batch_size=4)
  b = evaluate.importance_log_likelihood(MODEL, params, XS, key=key, num_samples=1000,
                                         chunk_size=100, batch_size=3)
  np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_active_units_and_kl_per_dimension():
  params = _generic_params()
  head = params["encoder"]["head"]
  head["mean"]["kernel"] = head["mean"]["kernel"].at[:, 1].set(0.0)  # unit 1 ignores x
  xs = jax.random.normal(jax.random.PRNGKey(4), (50,) + X.shape)
  stats = evaluate.latent_statistics(MODEL, params, xs, batch_size=16)
  assert stats["activity"].shape == (2,) and float(stats["activity"][1]) < 1e-10
  assert float(stats["activity"][0]) > 0.01
  total_kl = jnp.mean(jax.vmap(lambda x: MODEL.posterior(params, x).kl_to_standard_normal())(xs))
  np.testing.assert_allclose(jnp.sum(stats["kl_per_dim"]), total_kl, rtol=1e-5)
  assert stats["posterior_means"].shape == (50, 2)

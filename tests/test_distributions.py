"""Closed-form densities and KLs against Monte Carlo and direct formulas."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vaejax import distributions as D


def _q(mean, log_var):
  return D.DiagGaussian(jnp.asarray(mean, jnp.float32), jnp.asarray(log_var, jnp.float32))


def _mc_kl(q_params, p, key, n=200_000):
  """Monte-Carlo KL(q||p) with reparameterised samples: differentiable in q."""
  q = D.DiagGaussian(*q_params)
  z = jax.vmap(lambda k: q.sample(key=k))(jax.random.split(key, n))
  return jnp.mean(jax.vmap(q.log_prob)(z) - jax.vmap(p.log_prob)(z))


def test_kl_matches_monte_carlo_value_and_gradient():
  q_params = (jnp.array([0.3, -1.0, 2.0]), jnp.array([-0.5, 0.4, 0.1]))
  p = _q([0.1, 0.5, 1.0], [0.2, -0.3, 0.0])
  key = jax.random.PRNGKey(0)
  exact = lambda qp: D.DiagGaussian(*qp).kl(p)
  mc = lambda qp: _mc_kl(qp, p, key)
  np.testing.assert_allclose(mc(q_params), exact(q_params), rtol=0.02)
  g_exact, g_mc = jax.grad(exact)(q_params), jax.grad(mc)(q_params)
  for a, b in zip(g_mc, g_exact):
    np.testing.assert_allclose(a, b, atol=0.03, rtol=0.03)


def test_kl_to_standard_normal_is_kl_to_prior_and_gradient_matches():
  q_params = (jnp.array([0.7, -0.2]), jnp.array([0.5, -1.5]))
  prior = D.standard_normal(2)
  f1 = lambda qp: D.DiagGaussian(*qp).kl_to_standard_normal()
  f2 = lambda qp: D.DiagGaussian(*qp).kl(prior)
  np.testing.assert_allclose(f1(q_params), f2(q_params), rtol=1e-6)
  mc = _mc_kl(q_params, prior, jax.random.PRNGKey(1))
  np.testing.assert_allclose(mc, f1(q_params), rtol=0.02)
  for a, b in zip(jax.grad(f1)(q_params), jax.grad(f2)(q_params)):
    np.testing.assert_allclose(a, b, rtol=1e-5)


def test_kl_zero_for_identical_and_never_negative():
  q = _q([1.0, -2.0], [0.3, 0.3])
  assert float(q.kl(q)) == 0.0
  qs = D.DiagGaussian(jax.random.normal(jax.random.PRNGKey(2), (1000, 4)),
                      3 * jax.random.normal(jax.random.PRNGKey(3), (1000, 4)))
  assert float(jnp.min(jax.vmap(lambda m, v: D.DiagGaussian(m, v).kl_to_standard_normal())(*qs))) >= 0


def test_log_prob_and_entropy_match_scalar_formulas():
  q = _q([0.5, -1.0], [np.log(4.0), 0.0])
  z = jnp.array([1.0, 1.0])
  # dim 0: N(1; 0.5, 4); dim 1: N(1; -1, 1).
  expected = (-0.5 * np.log(2 * np.pi * 4) - 0.5 ** 2 / (2 * 4)
              - 0.5 * np.log(2 * np.pi) - 2.0 ** 2 / 2)
  np.testing.assert_allclose(q.log_prob(z), expected, rtol=1e-6)
  zs = jax.vmap(lambda k: q.sample(key=k))(jax.random.split(jax.random.PRNGKey(4), 100_000))
  np.testing.assert_allclose(-jnp.mean(jax.vmap(q.log_prob)(zs)), q.entropy(), rtol=0.01)


def test_sampling_uses_the_key_only():
  q = _q([0.0, 1.0], [0.0, 2.0])
  k = jax.random.PRNGKey(5)
  np.testing.assert_array_equal(q.sample(key=k), q.sample(key=k))
  assert not np.allclose(q.sample(key=k), q.sample(key=jax.random.PRNGKey(6)))
  zs = jax.vmap(lambda kk: q.sample(key=kk))(jax.random.split(k, 50_000))
  np.testing.assert_allclose(zs.mean(0), [0.0, 1.0], atol=0.05)
  np.testing.assert_allclose(zs.std(0), [1.0, np.e], rtol=0.02)


def test_bernoulli_log_prob_matches_naive_form_and_is_finite_at_extremes():
  logits = jnp.array([-3.0, 0.0, 2.5, 0.7])
  x = jnp.array([0.0, 1.0, 1.0, 0.0])
  p = jax.nn.sigmoid(logits)
  naive = jnp.sum(x * jnp.log(p) + (1 - x) * jnp.log1p(-p))
  np.testing.assert_allclose(D.bernoulli_log_prob(logits, x), naive, rtol=1e-6)
  extreme = jnp.array([-1e4, 1e4, 80.0, -80.0])
  val, grad = jax.value_and_grad(D.bernoulli_log_prob)(extreme, jnp.array([1.0, 0.0, 0.0, 1.0]))
  assert np.isfinite(val) and np.all(np.isfinite(grad))
  np.testing.assert_allclose(val, -(1e4 + 1e4 + 80 + 80), rtol=1e-6)


def test_bernoulli_log_prob_custom_jvp_matches_autodiff_of_softplus_form():
  logits = jnp.array([-90.0, -12.0, -0.3, 0.0, 0.4, 7.5, 90.0])
  x = jnp.array([0.0, 1.0, 0.25, 1.0, 0.0, 0.6, 1.0])
  reference = lambda l, x: jnp.sum(x * l - jax.nn.softplus(l))  # noqa: E731
  got = jax.grad(D.bernoulli_log_prob, argnums=(0, 1))(logits, x)
  want = jax.grad(reference, argnums=(0, 1))(logits, x)
  np.testing.assert_allclose(got[0], x - jax.nn.sigmoid(logits), atol=1e-7)
  np.testing.assert_allclose(got[0], want[0], atol=1e-7)
  np.testing.assert_allclose(got[1], logits)
  # Second order (a Hessian-vector product) goes through the custom rule too.
  hvp = lambda f: jax.jvp(jax.grad(f), (logits,), (jnp.ones_like(logits),))[1]  # noqa: E731
  np.testing.assert_allclose(hvp(lambda l: D.bernoulli_log_prob(l, x)),
                             hvp(lambda l: reference(l, x)), atol=1e-6)
  # Forward mode in x alone (logits' tangent a symbolic zero).
  _, tangent = jax.jvp(lambda x: D.bernoulli_log_prob(logits, x), (x,), (jnp.ones_like(x),))
  np.testing.assert_allclose(tangent, jnp.sum(logits), rtol=1e-6)


@pytest.mark.parametrize("log_scale", [0.0, -1.3, 0.8])
def test_gaussian_log_prob_matches_formula(log_scale):
  mean = jnp.array([[0.2, 0.4], [0.9, 0.0]])
  x = jnp.array([[0.0, 1.0], [1.0, 0.5]])
  s = np.exp(log_scale)
  expected = np.sum(-0.5 * ((np.asarray(x) - np.asarray(mean)) / s) ** 2 - np.log(s) - 0.5 * np.log(2 * np.pi))
  np.testing.assert_allclose(D.gaussian_log_prob(mean, jnp.float32(log_scale), x), expected, rtol=1e-5)

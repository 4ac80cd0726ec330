"""The bounds against exact answers: reparameterised gradients, IWAE vs ELBO, pPCA."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vaejax import distributions as D
from vaejax import estimators, models, objectives


def test_reparameterised_gradient_matches_exact_gradient():
  # E_{z ~ N(mu, s^2)}[(z - c)^2] = (mu - c)^2 + s^2: d/dmu = 2 (mu - c), d/dlog_var = s^2.
  mu, log_var, c = jnp.array([0.4, -1.2]), jnp.array([0.3, -0.8]), jnp.array([1.0, 0.5])
  keys = jax.random.split(jax.random.PRNGKey(0), 200_000)

  def mc(mu, log_var):
    q = D.DiagGaussian(mu, log_var)
    z = jax.vmap(lambda k: q.sample(key=k))(keys)
    return jnp.mean(jnp.sum((z - c) ** 2, axis=-1))

  g_mu, g_lv = jax.grad(mc, argnums=(0, 1))(mu, log_var)
  np.testing.assert_allclose(g_mu, 2 * (mu - c), atol=0.02)
  np.testing.assert_allclose(g_lv, jnp.exp(log_var), rtol=0.02)
  np.testing.assert_allclose(mc(mu, log_var), jnp.sum((mu - c) ** 2 + jnp.exp(log_var)), rtol=0.01)


def _tiny_vae(likelihood="bernoulli", hidden=(16,), latent_dim=3, image_shape=(4, 4, 1)):
  return models.make_vae(architecture="mlp", image_shape=image_shape, latent_dim=latent_dim,
                         hidden=hidden, likelihood=likelihood)


def _binary_images(key, n, shape=(4, 4, 1)):
  return jax.random.bernoulli(key, 0.3, (n,) + shape).astype(jnp.float32)


def test_iwae_with_one_sample_equals_the_elbo_value_and_gradient():
  model = _tiny_vae()
  params = jax.jit(model.init)(jax.random.PRNGKey(0))
  x = _binary_images(jax.random.PRNGKey(1), 1)[0]
  key = jax.random.PRNGKey(2)

  def bound(params, which):
    terms = objectives.sample_terms(model, params, x, key=key, num_samples=1)
    return objectives.iwae_bound(terms) if which == "iwae" else \
        objectives.elbo_bound(terms, analytic_kl=False)

  value, grad = jax.jit(bound, static_argnums=1), jax.jit(jax.grad(bound), static_argnums=1)
  np.testing.assert_allclose(value(params, "iwae"), value(params, "elbo"), rtol=1e-6)
  g_iwae, g_elbo = grad(params, "iwae"), grad(params, "elbo")
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                         g_iwae, g_elbo)


def test_over_samples_calls_once_for_one_sample_and_equals_vmap():
  calls = []

  def fn(z):
    calls.append((z.shape, isinstance(z, jax.core.Tracer)))
    return jnp.sum(jnp.sin(z) * jnp.arange(1.0, 4.0))

  for num_samples in (1, 4):
    z = jax.random.normal(jax.random.PRNGKey(num_samples), (num_samples, 3))
    calls.clear()
    got = objectives.over_samples(fn, z)
    if num_samples == 1:  # fn ran once on the concrete sample, not under a vmap
      assert calls == [((3,), False)]
    else:
      assert calls == [((3,), True)]  # traced once under vmap
    assert got.shape == (num_samples,)
    np.testing.assert_allclose(got, [fn(z_k) for z_k in z], rtol=1e-6)
  # Under the batch vmap of the train step, and differentiated: the same values as vmap.
  zs = jax.random.normal(jax.random.PRNGKey(9), (5, 1, 3))
  batched = lambda over: lambda z: jnp.sum(jax.vmap(lambda zk: over(fn, zk))(zs * z))  # noqa: E731
  plain_vmap = lambda f, z: jax.vmap(f)(z)  # noqa: E731
  np.testing.assert_allclose(jax.grad(batched(objectives.over_samples))(1.3),
                             jax.grad(batched(plain_vmap))(1.3), rtol=1e-6)


def test_iwae_bound_rises_with_k_on_average():
  model = _tiny_vae()
  params = jax.jit(model.init)(jax.random.PRNGKey(3))
  xs = _binary_images(jax.random.PRNGKey(4), 8)
  keys = jax.random.split(jax.random.PRNGKey(5), 400)

  def mean_bound(k):
    f = lambda x, key: objectives.iwae_bound(objectives.sample_terms(model, params, x, key=key, num_samples=k))
    bounds = jax.jit(jax.vmap(lambda key: jax.vmap(f, in_axes=(0, None))(xs, key)))(keys)
    return float(jnp.mean(bounds))

  b1, b5, b50 = mean_bound(1), mean_bound(5), mean_bound(50)
  assert b1 < b5 < b50, (b1, b5, b50)
  # And the ELBO with the analytic KL estimates the same quantity as IWAE at K = 1.
  elbo = jax.jit(jax.vmap(lambda key: jax.vmap(lambda x: objectives.elbo_bound(
      objectives.sample_terms(model, params, x, key=key)))(xs)))(keys)
  np.testing.assert_allclose(float(jnp.mean(elbo)), b1, rtol=0.01)


def test_objectives_report_per_example_metrics_and_batch_loss_is_their_mean():
  model = _tiny_vae()
  params = jax.jit(model.init)(jax.random.PRNGKey(6))
  xs = _binary_images(jax.random.PRNGKey(7), 5)
  key = jax.random.PRNGKey(8)
  objective = estimators.make_estimator("elbo", beta=0.5).per_example
  loss, metrics = jax.jit(objectives.make_batch_loss(model, objective))(params, xs, key=key)
  keys = objectives.example_keys(key, 5)
  per_example = jax.jit(lambda x, k: objective(model, params, x, key=k))
  per = [per_example(x, k) for x, k in zip(xs, keys)]
  np.testing.assert_allclose(loss, -np.mean([v for v, _ in per]), rtol=1e-6)
  np.testing.assert_allclose(metrics["neg_elbo"], metrics["recon"] + metrics["kl"], rtol=1e-6)
  # beta < 1 weights the KL down, so the loss is below the reported -ELBO.
  assert float(loss) < float(metrics["neg_elbo"])


def test_example_keys_do_not_depend_on_how_the_batch_is_split():
  key = jax.random.PRNGKey(9)
  whole = objectives.example_keys(key, 8)
  halves = jnp.concatenate([objectives.example_keys(key, 4, 0), objectives.example_keys(key, 4, 4)])
  np.testing.assert_array_equal(whole, halves)


def test_unknown_names_raise_with_the_valid_list():
  with pytest.raises(ValueError, match="valid"):
    estimators.make_estimator("elbow").per_example
  with pytest.raises(ValueError, match="pathwise"):
    estimators.make_estimator("elbo", estimator="magic").per_example


def test_linear_gaussian_vae_reaches_the_ppca_maximum_likelihood():
  """Tipping & Bishop: pPCA's maximum log-likelihood in closed form. A linear VAE
  with a diagonal Gaussian posterior and a learned isotropic noise scale attains
  it at its optimum (its posterior covariance is diagonal there), so its trained
  ELBO must come within a small tolerance of the pPCA optimum, and never above it
  beyond Monte-Carlo error."""
  rng = np.random.default_rng(0)
  n, d, q = 2000, 5, 2
  w_true = rng.normal(size=(d, q)) * np.array([2.0, 1.0])
  x = rng.normal(size=(n, q)) @ w_true.T + 0.5 * rng.normal(size=(n, d)) + rng.normal(size=d)
  x = x.astype(np.float32)
  centred = x - x.mean(0)
  eig = np.sort(np.linalg.eigvalsh(centred.T @ centred / n))[::-1]
  sigma2 = eig[q:].mean()
  ppca_ll = -0.5 * (d * np.log(2 * np.pi) + np.sum(np.log(eig[:q])) + (d - q) * np.log(sigma2) + d)

  model = models.make_vae(architecture="mlp", image_shape=(1, d, 1), latent_dim=q, hidden=(),
                          likelihood="gaussian_learned")
  images = jnp.asarray(x.reshape(n, 1, d, 1))
  params = jax.jit(model.init)(jax.random.PRNGKey(0))
  loss_fn = objectives.make_batch_loss(model, estimators.make_estimator("elbo", num_samples=4).per_example)
  schedule = optax.exponential_decay(3e-2, transition_steps=3000, decay_rate=0.01)
  opt = optax.adam(schedule)

  # A compute-bound loop of 3000 steps: XLA's optimised CPU backend (the conftest's
  # fast-compile flags off for this one program) runs it 2.5x faster.
  @jax.jit(compiler_options={"xla_backend_optimization_level": 3,
                             "xla_llvm_disable_expensive_passes": False})
  def train(params, key):
    def step(carry, i):
      params, opt_state = carry
      g = jax.grad(lambda p: loss_fn(p, images, key=jax.random.fold_in(key, i))[0])(params)
      updates, opt_state = opt.update(g, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), None
    return jax.lax.scan(step, (params, opt.init(params)), jnp.arange(3000))[0][0]

  params = train(params, jax.random.PRNGKey(1))
  eval_loss = objectives.make_batch_loss(model, estimators.make_estimator("elbo", num_samples=256).per_example)
  elbo = -float(jax.jit(eval_loss)(params, images, key=jax.random.PRNGKey(2))[0])
  print(f"pPCA max log-lik {ppca_ll:.4f}, trained linear-VAE ELBO {elbo:.4f}")
  assert elbo <= ppca_ll + 0.01, (elbo, ppca_ll)
  assert elbo >= ppca_ll - 0.03, (elbo, ppca_ll)

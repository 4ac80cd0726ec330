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


_CB_LOGITS = [0.0, 1e-6, -1e-6, 0.3, -0.3, 5.0, -5.0, 40.0, -40.0]


def _cb_integral(fn, n=40_001):
  """Trapezoid rule in float64 over x in [0, 1] of fn(x), fn evaluated by jax."""
  x = np.linspace(0.0, 1.0, n)
  y = np.asarray(jax.vmap(fn)(jnp.asarray(x, jnp.float32)), np.float64)
  return (np.sum(y) - 0.5 * (y[0] + y[-1])) / (n - 1)


@pytest.mark.parametrize("logit", _CB_LOGITS)
def test_continuous_bernoulli_density_integrates_to_one_and_mean_matches(logit):
  l = jnp.float32(logit)
  density = lambda x: jnp.exp(D.continuous_bernoulli_log_prob(l, x))  # noqa: E731
  # At |l| = 40 the mass sits within ~1/40 of an end; 40k points resolve it.
  np.testing.assert_allclose(_cb_integral(density), 1.0, rtol=1e-4)
  np.testing.assert_allclose(D.continuous_bernoulli_mean(l),
                             _cb_integral(lambda x: x * density(x)), rtol=1e-4, atol=1e-6)


def test_continuous_bernoulli_log_norm_matches_lambda_formula_and_is_even():
  l64 = np.array([-20.0, -3.0, -1.0, -0.5, 0.5, 1.0, 3.0, 20.0])
  lam = 1.0 / (1.0 + np.exp(-l64))
  want = np.log(2.0 * np.arctanh(1.0 - 2.0 * lam) / (1.0 - 2.0 * lam))
  got = D.continuous_bernoulli_log_norm(jnp.asarray(l64, jnp.float32))
  np.testing.assert_allclose(got, want, rtol=1e-6)
  assert float(D.continuous_bernoulli_log_norm(jnp.float32(0.0))) == pytest.approx(np.log(2.0), rel=1e-7)
  ls = jnp.array([0.0, 1e-30, 1e-8, 1e-3, 0.2, 0.41, 0.7, 6.0, 90.0, 1e4, 1e30])
  np.testing.assert_array_equal(D.continuous_bernoulli_log_norm(ls), D.continuous_bernoulli_log_norm(-ls))
  # Large |l|: ~log|l| (C -> |l|), no overflow.
  np.testing.assert_allclose(D.continuous_bernoulli_log_norm(jnp.array([1e4, -1e30])),
                             [np.log(1e4), np.log(1e30)], rtol=1e-6)


def test_continuous_bernoulli_log_norm_gradient_finite_and_matches_finite_difference():
  f = D.continuous_bernoulli_log_norm
  for l in [0.0, 1e-8, -1e-8, 1e-30, 1e4, -1e30]:
    g = jax.grad(f)(jnp.float32(l))
    assert np.isfinite(g), l
  assert float(jax.grad(f)(jnp.float32(0.0))) == 0.0
  # d2/dl2 at 0 is 1/6 (series log 2 + l^2 / 12): second order is finite too.
  np.testing.assert_allclose(jax.grad(jax.grad(f))(jnp.float32(0.0)), 1 / 6, rtol=1e-6)
  ref = lambda l: np.log(l / np.tanh(l / 2))  # noqa: E731
  h = 1e-6
  for l in [0.05, 0.4, -0.42, 1.3, -7.0, 30.0]:
    fd = (ref(l + h) - ref(l - h)) / (2 * h)
    np.testing.assert_allclose(jax.grad(f)(jnp.float32(l)), fd, rtol=1e-4)
    # Closed form: d/dl log(l / tanh(l/2)) = 1/l - 1/sinh(l).
    np.testing.assert_allclose(fd, 1 / l - 1 / np.sinh(l), rtol=1e-7)


def test_continuous_bernoulli_mean_at_zero_extremes_and_symmetry():
  m = D.continuous_bernoulli_mean
  assert float(m(jnp.float32(0.0))) == 0.5
  np.testing.assert_allclose(jax.grad(m)(jnp.float32(0.0)), 1 / 12, rtol=1e-6)
  ls = jnp.array([1e-30, 1e-8, 0.2, 0.41, 0.7, 6.0, 90.0, 1e4, 1e30])
  vals, grads = jax.vmap(jax.value_and_grad(m))(jnp.concatenate([ls, -ls]))
  assert np.all(np.isfinite(vals)) and np.all(np.isfinite(grads)) and np.all(grads >= 0)
  np.testing.assert_allclose(m(ls) + m(-ls), 1.0, rtol=1e-6)
  # Small means stay accurate in relative terms: mean(-l) ~ 1/l.
  np.testing.assert_allclose(m(jnp.array([-1e4, -1e30])), [1e-4, 1e-30], rtol=1e-6)
  l64 = np.array([-3.0, 0.05, 0.6, 2.0])
  np.testing.assert_allclose(m(jnp.asarray(l64, jnp.float32)), 1 / (1 - np.exp(-l64)) - 1 / l64, rtol=1e-6)


def test_continuous_bernoulli_log_prob_is_bernoulli_plus_normaliser():
  logits = jnp.array([[-3.0, 0.0, 1e-7], [2.5, -0.7, 45.0]])
  x = jnp.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0]])
  want = D.bernoulli_log_prob(logits, x) + jnp.sum(D.continuous_bernoulli_log_norm(logits))
  np.testing.assert_allclose(D.continuous_bernoulli_log_prob(logits, x), want, rtol=1e-6)
  g = jax.grad(D.continuous_bernoulli_log_prob)(logits, x)
  np.testing.assert_allclose(g, x - jax.nn.sigmoid(logits) + jax.vmap(jax.vmap(jax.grad(
      D.continuous_bernoulli_log_norm)))(logits), atol=1e-6)

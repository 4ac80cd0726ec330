"""Every estimator against exact answers on a CONDITIONAL linear-Gaussian model.

Model (a label CVAE with a learned prior and hidden=(): every net one affine map):
z | c ~ N(m_c, diag v_c) from the prior net, x | z, c ~ N(J z + b_c, s^2 I_3) (the
one-hot label shifts the decoder bias), linear encoder q(z|x, c). E_q log p(x|z, c)
and KL(q || p(z|c)) are closed form, so the ELBO and its gradient are exact; log
p(x|c) = N(x; J m_c + b_c, J diag(v_c) J^T + s^2 I); the exact posterior is
Gaussian, diagonal when J has orthogonal columns. Unbiasedness is checked by
z-scores < 5 on every coordinate of encoder, decoder and prior (about 60).
"""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vaejax import estimators, evaluate, nets
from vaejax.models import cvae

D, L, C, SCALE = 3, 2, 3, 0.7
MODEL = cvae.make_cvae(architecture="mlp", image_shape=(1, D, 1), latent_dim=L, hidden=(),
                       likelihood="gaussian_fixed", gaussian_scale=SCALE, activation="linear",
                       condition="label", prior="learned", num_classes=C)
GROUPS = ("encoder", "decoder", "prior")
CHUNK, K = 20_000, 4  # draws per compiled call (cheap: compiling dominates); IWAE K
X = {"image": jnp.array([0.8, -0.4, 1.3]).reshape(1, D, 1), "label": jnp.int32(1)}


def _example(image, label):
  return {"image": jnp.asarray(image, jnp.float32).reshape(1, D, 1), "label": jnp.int32(label)}


@functools.lru_cache(maxsize=None)
def _generic_params(seed=0):
  """Init, every leaf perturbed (zero-initialised biases included) to a generic point."""
  params = MODEL.init(jax.random.PRNGKey(seed))
  leaves, tree = jax.tree_util.tree_flatten(params)
  keys = jax.random.split(jax.random.PRNGKey(100 + seed), len(leaves))
  return jax.tree_util.tree_unflatten(
      tree, [p + 0.3 + 0.3 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])


def _affine(params, x=X):
  """(J [D, L], b_c [D], m_c [L], v_c [L]): decode(z, c) = J z + b_c, p(z|c) = N(m_c, diag v_c)."""
  decode = lambda z: MODEL.decode(params, z, x).reshape(D)  # noqa: E731
  prior = MODEL.prior(params, x)
  return jax.jacfwd(decode)(jnp.zeros(L)), decode(jnp.zeros(L)), prior.mean, jnp.exp(prior.log_var)


def exact_elbo(params, x=X):
  q = MODEL.posterior(params, x)
  J, b, m, v = _affine(params, x)
  s = jnp.exp(q.log_var)
  resid = x["image"].reshape(D) - (J @ q.mean + b)
  sq = jnp.sum(resid ** 2) + jnp.sum(J ** 2 * s[None, :])
  expected_loglik = -0.5 * D * math.log(2 * math.pi * SCALE ** 2) - 0.5 * sq / SCALE ** 2
  kl = 0.5 * jnp.sum(s / v + (q.mean - m) ** 2 / v - 1.0 - jnp.log(s / v))
  return expected_loglik - kl


def exact_log_evidence(params, x=X):
  J, b, m, v = _affine(params, x)
  cov = J @ jnp.diag(v) @ J.T + SCALE ** 2 * jnp.eye(D)
  r = x["image"].reshape(D) - (J @ m + b)
  return -0.5 * (D * math.log(2 * math.pi) + jnp.linalg.slogdet(cov)[1]
                 + r @ jnp.linalg.solve(cov, r))


_elbo_and_grad = jax.jit(jax.value_and_grad(exact_elbo))
_evidence_and_grad = jax.jit(jax.value_and_grad(exact_log_evidence))


def _exact_posterior(params, x):
  """(mean [L], covariance [L, L]) of p(z|x, c)."""
  J, b, m, v = (np.asarray(a, np.float64) for a in _affine(params, x))
  cov = np.linalg.inv(np.diag(1 / v) + J.T @ J / SCALE ** 2)
  return cov @ (m / v + J.T @ (np.asarray(x["image"]).reshape(D) - b) / SCALE ** 2), cov


@functools.lru_cache(maxsize=None)
def _posterior_params():
  """Generic prior means and decoder label rows, decoder columns orthogonal, one prior
  variance for all labels (so the posterior's gain is the same for every label), and the
  encoder set to the exact (diagonal) posterior p(z|x, c) for every label c."""
  params = jax.tree_util.tree_map(lambda a: a, _generic_params(1))  # fresh dicts: a cached value
  prior_log_var = params["prior"]["head"]["log_var"]
  prior_log_var["kernel"] = jnp.zeros_like(prior_log_var["kernel"])
  q_orth, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(D, D)))
  W = q_orth[:, :L] * np.array([1.5, 0.8])  # [D, L], orthogonal columns
  dec = params["decoder"]["out"]
  dec["kernel"] = dec["kernel"].at[:L].set(jnp.asarray(W.T, jnp.float32))  # rows L.. : labels
  head = params["encoder"]["head"]  # kernel rows: D image pixels, then C label features
  mean_kernel = np.zeros((D + C, L))
  log_var_kernel = np.zeros((D + C, L))
  for c in range(C):
    x0 = _example(np.zeros(D), c)
    J = np.asarray(_affine(params, x0)[0], np.float64)
    offset, cov = _exact_posterior(params, x0)  # mean = gain x + offset_c
    assert np.allclose(cov, np.diag(np.diag(cov)), atol=1e-6)
    mean_kernel[:D] = (cov @ J.T / SCALE ** 2).T
    mean_kernel[D + c] = offset
    bound = nets.LOG_VAR_BOUND
    log_var_kernel[D + c] = bound * np.arctanh(np.log(np.diag(cov)) / bound)
  head["mean"] = {"kernel": jnp.asarray(mean_kernel, jnp.float32), "bias": jnp.zeros(L)}
  head["log_var"] = {"kernel": jnp.asarray(log_var_kernel, jnp.float32), "bias": jnp.zeros(L)}
  for c in range(C):
    x = _example(X["image"], c)
    q = MODEL.posterior(params, x)
    mean, cov = _exact_posterior(params, x)
    np.testing.assert_allclose(q.mean, mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(jnp.exp(q.log_var), np.diag(cov), rtol=1e-5)
  return params


@functools.lru_cache(maxsize=None)
def _draw_fn(objective, name, **settings):
  """A jitted (params, keys [CHUNK]) -> (grads, losses) per estimator: one compile per
  estimator, shared by every parameter point and chunk."""
  est = estimators.make_estimator(objective, name, **settings).per_example

  @jax.jit
  def run(params, keys):
    def one(key):
      (_, metrics), grads = jax.value_and_grad(
          lambda p: est(MODEL, p, X, key=key), has_aux=True)(params)
      return grads, metrics["loss"]
    return jax.lax.map(one, keys, batch_size=CHUNK // 8)

  return run


def _draws(params, n, objective, name, seed=0, **settings):
  """Surrogate gradients and reported losses for n independent keys (n a multiple of CHUNK)."""
  run = _draw_fn(objective, name, **settings)
  keys = jax.random.split(jax.random.PRNGKey(seed), n).reshape(n // CHUNK, CHUNK, -1)
  out = [run(params, k) for k in keys]
  return jax.tree_util.tree_map(lambda *a: jnp.concatenate(a), *out)


def _flat(tree, groups=GROUPS):
  """[N, P]: per-draw leaves of `groups`, concatenated."""
  return jnp.concatenate([x.reshape(x.shape[:1] + (-1,)) for g in groups
                          for x in jax.tree_util.tree_leaves(tree[g])], axis=-1)


def _flat_exact(tree, groups=GROUPS):
  return jnp.concatenate([jnp.ravel(x) for g in groups for x in jax.tree_util.tree_leaves(tree[g])])


def _assert_unbiased(draws, exact, *, max_z=5.0):
  """draws: [N, P]; exact: [P]. Every coordinate's z-score below max_z."""
  n = draws.shape[0]
  mean, se = jnp.mean(draws, 0), jnp.std(draws, 0) / math.sqrt(n)
  z = jnp.abs(mean - exact) / jnp.maximum(se, 1e-7)
  z = jnp.where(jnp.abs(mean - exact) < 1e-6, 0.0, z)  # exact agreement (zero-variance coords)
  assert float(jnp.max(z)) < max_z, (float(jnp.max(z)), np.asarray(mean - exact))


def test_the_model_is_conditional_affine_gaussian():
  """The closed forms' assumptions: decode is J z + b_c, the label moves b_c and p(z|c),
  log p(x|z, c) is N(x; J z + b_c, s^2 I), and the prior gradient is non-trivial."""
  params = _generic_params()
  J, b, m, v = _affine(params)
  z = jnp.array([0.7, -1.9])
  np.testing.assert_allclose(MODEL.decode(params, z, X).reshape(D), J @ z + b, rtol=1e-5, atol=1e-6)
  r = X["image"].reshape(D) - (J @ z + b)
  expected = -0.5 * D * math.log(2 * math.pi * SCALE ** 2) - 0.5 * jnp.sum(r ** 2) / SCALE ** 2
  np.testing.assert_allclose(MODEL.log_likelihood(params, X, z), expected, rtol=1e-5)
  other = _affine(params, _example(X["image"], 2))
  np.testing.assert_allclose(other[0], J, rtol=1e-6)
  assert float(jnp.min(jnp.abs(other[1] - b))) > 0.05
  assert float(jnp.min(jnp.abs(other[2] - m))) > 0.05
  assert float(jnp.min(jnp.abs(other[3] / v - 1))) > 0.05
  prior_grad = _flat_exact(_elbo_and_grad(params)[1], ("prior",))
  assert int(jnp.sum(jnp.abs(prior_grad) > 0.05)) >= 4  # the label's mean and log_var rows, biases


ELBO_CASES = [
    dict(estimator="pathwise", analytic_kl=True),
    dict(estimator="pathwise", analytic_kl=False),
    dict(estimator="stl"),
    dict(estimator="score_function", baseline="none"),
]


@pytest.mark.parametrize("case", ELBO_CASES, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_elbo_estimators_are_unbiased_in_value_and_gradient(case):
  params = _generic_params()
  n = 5 * CHUNK
  settings = {k: v for k, v in case.items() if k != "estimator"}
  grads, losses = _draws(params, n, "elbo", case["estimator"], **settings)
  exact_value, exact_grad = _elbo_and_grad(params)
  se = float(jnp.std(losses)) / math.sqrt(n)
  assert abs(float(-jnp.mean(losses)) - float(exact_value)) < 5 * se + 1e-5
  _assert_unbiased(_flat(grads), _flat_exact(exact_grad))


@functools.lru_cache(maxsize=None)
def _posterior_draws(name):
  return _draws(_posterior_params(), 5 * CHUNK, "iwae", name, num_samples=K)


def _evidence_gradient_at_the_posterior():
  """grad log p(x|c) for decoder and prior; zero for the encoder (q is optimal)."""
  params = _posterior_params()
  log_px, exact = _evidence_and_grad(params, X)
  exact["encoder"] = jax.tree_util.tree_map(jnp.zeros_like, params["encoder"])
  return log_px, exact


@pytest.mark.parametrize("name", ["pathwise", "stl", "dreg", "vimco", "rws"])
def test_iwae_estimators_at_the_exact_posterior(name):
  """With q = p(z|x, c) every weight is p(x|c): the bound is log p(x|c) for every draw,
  the decoder and prior gradients are grad log p(x|c), the encoder's is zero."""
  grads, losses = _posterior_draws(name)
  log_px, exact = _evidence_gradient_at_the_posterior()
  np.testing.assert_allclose(-np.asarray(losses), float(log_px), atol=2e-4)
  _assert_unbiased(_flat(grads), _flat_exact(exact))


@pytest.mark.parametrize("name", ["dreg", "rws"])
def test_the_check_catches_a_prior_left_without_gradient(name):
  """A learned prior given no gradient (only the decoder getting the IWAE gradient) is
  rejected: the prior part of the check has power."""
  grads, _ = _posterior_draws(name)
  _, exact = _evidence_gradient_at_the_posterior()
  exact["prior"] = jax.tree_util.tree_map(jnp.zeros_like, exact["prior"])
  with pytest.raises(AssertionError):
    _assert_unbiased(_flat(grads), _flat_exact(exact))


@pytest.mark.parametrize("name", ["dreg", "vimco"])
def test_iwae_estimators_agree_with_pathwise_iwae_at_a_generic_point(name):
  """Pathwise IWAE is unbiased by construction; DReG's and VIMCO's mean gradients on
  encoder, decoder and prior must match it (two-sample z), and so must the bound."""
  params = _generic_params()
  ref, ref_losses = _draws(params, 5 * CHUNK, "iwae", "pathwise", seed=1, num_samples=K)
  got, losses = _draws(params, (10 if name == "vimco" else 5) * CHUNK, "iwae", name, seed=2,
                       num_samples=K)
  a, b = _flat(got), _flat(ref)
  diff = jnp.abs(jnp.mean(a, 0) - jnp.mean(b, 0))
  se = jnp.sqrt(jnp.var(a, 0) / a.shape[0] + jnp.var(b, 0) / b.shape[0])
  z = jnp.where(diff < 1e-6, 0.0, diff / jnp.maximum(se, 1e-7))
  assert float(jnp.max(z)) < 5.0, float(jnp.max(z))
  assert float(jnp.max(jnp.abs(jnp.mean(_flat(ref, ("prior",)), 0)))) > 0.05
  se_bound = math.sqrt(float(jnp.var(losses)) / len(losses)
                       + float(jnp.var(ref_losses)) / len(ref_losses))
  assert abs(float(jnp.mean(losses) - jnp.mean(ref_losses))) < 5 * se_bound
  elbo, _ = _elbo_and_grad(params)
  log_px, _ = _evidence_and_grad(params, X)
  assert float(elbo) < float(-jnp.mean(ref_losses)) < float(log_px)


IMAGES = np.array([[0.8, -0.4, 1.3], [0.1, 0.9, -0.6], [-1.2, 0.3, 0.5]], np.float32)
EXAMPLES = {"image": jnp.asarray(IMAGES).reshape(3, 1, D, 1),
            "label": jnp.array([0, 1, 2], jnp.int32)}
NUM_IS = 20_000


def _importance(params):
  return np.asarray(evaluate.importance_log_likelihood(
      MODEL, params, EXAMPLES, key=jax.random.PRNGKey(7), num_samples=NUM_IS, chunk_size=1000,
      batch_size=2))  # three examples: the last batch is padded


def _exact_per_example(params):
  return np.array([float(_evidence_and_grad(params, _example(IMAGES[i], i))[0]) for i in range(3)])


def test_importance_log_likelihood_recovers_log_p_x_given_c():
  """A q near but not at p(z|x, c), wider: within 5 standard errors (of independent
  weights) of the exact log p(x|c), for every example and label."""
  params = _posterior_params()
  leaves, tree = jax.tree_util.tree_flatten(params)
  keys = jax.random.split(jax.random.PRNGKey(9), len(leaves))
  params = jax.tree_util.tree_unflatten(
      tree, [p + 0.1 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])
  log_var = params["encoder"]["head"]["log_var"]
  log_var["kernel"] = log_var["kernel"].at[D:].add(0.5)
  got, exact = _importance(params), _exact_per_example(params)
  for i in range(3):
    x = _example(IMAGES[i], i)
    q = MODEL.posterior(params, x)
    J, b, m, v = _affine(params, x)
    eps = jax.random.normal(jax.random.PRNGKey(8 + i), (NUM_IS, L))
    z = q.mean + jnp.exp(0.5 * q.log_var) * eps
    r = x["image"].reshape(D) - (z @ J.T + b)
    log_w = (-0.5 * jnp.sum(r ** 2, -1) / SCALE ** 2 - 0.5 * jnp.sum((z - m) ** 2 / v, -1)
             + 0.5 * jnp.sum((z - q.mean) ** 2 * jnp.exp(-q.log_var), -1))  # up to a constant
    w = jnp.exp(log_w - jnp.max(log_w))
    se = float(jnp.std(w) / jnp.mean(w)) / math.sqrt(NUM_IS)  # of log mean w (delta method)
    assert 1e-4 < se < 0.02  # q is not the posterior, and the check is tight
    assert abs(got[i] - exact[i]) < 5 * se, (i, got[i], exact[i], se)


def test_importance_log_likelihood_is_exact_at_the_exact_posterior():
  params = _posterior_params()
  np.testing.assert_allclose(_importance(params), _exact_per_example(params), atol=2e-4)

"""Every estimator against exact answers on a linear-Gaussian latent model.

Model: z ~ N(0, I_2), x | z ~ N(W z + b, s^2 I_3), linear encoder. For a linear
decoder E_q[log p(x|z)] is closed form, so the ELBO and its gradient are exact;
log p(x) is the Gaussian N(x; b, W W^T + s^2 I), and the exact posterior is
Gaussian (diagonal when W has orthogonal columns). Unbiasedness is checked by
z-scores: |mean of N draws - exact| / (std / sqrt N) must stay below 5 on every
coordinate (about 40 coordinates: a false alarm is a < 1e-4 event).
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vaejax import diagnostics, estimators, models, nets

D, L, SCALE = 3, 2, 0.7
MODEL = models.make_vae(architecture="mlp", image_shape=(1, D, 1), latent_dim=L, hidden=(),
                        likelihood="gaussian_fixed", gaussian_scale=SCALE)
X = jnp.array([0.8, -0.4, 1.3]).reshape(1, D, 1)


def _generic_params():
  params = jax.jit(MODEL.init)(jax.random.PRNGKey(0))
  return jax.tree_util.tree_map(lambda p: p + 0.3 * jnp.ones_like(p), params)


def _decoder_affine(params):
  """(J [D, L], b [D]) with decode(z) = J z + b."""
  b = MODEL.decode(params, jnp.zeros(L)).reshape(D)
  J = jax.jacfwd(lambda z: MODEL.decode(params, z).reshape(D))(jnp.zeros(L))
  return J, b


def exact_elbo(params, x=X):
  q = MODEL.posterior(params, x)
  J, b = _decoder_affine(params)
  resid = x.reshape(D) - (J @ q.mean + b)
  sq = jnp.sum(resid ** 2) + jnp.sum(J ** 2 * jnp.exp(q.log_var)[None, :])
  expected_loglik = -0.5 * D * math.log(2 * math.pi * SCALE ** 2) - 0.5 * sq / SCALE ** 2
  return expected_loglik - q.kl_to_standard_normal()


def exact_log_evidence(params, x=X):
  J, b = _decoder_affine(params)
  cov = J @ J.T + SCALE ** 2 * jnp.eye(D)
  r = x.reshape(D) - b
  return -0.5 * (D * math.log(2 * math.pi) + jnp.linalg.slogdet(cov)[1] + r @ jnp.linalg.solve(cov, r))


def _posterior_params():
  """Params whose encoder is the exact posterior (decoder columns orthogonal)."""
  params = jax.jit(MODEL.init)(jax.random.PRNGKey(1))
  q_orth, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(D, D)))
  W = q_orth[:, :L] * np.array([1.5, 0.8])  # [D, L], orthogonal columns
  params["decoder"]["out"]["kernel"] = jnp.asarray(W.T, jnp.float32)
  params["decoder"]["out"]["bias"] = jnp.array([0.2, -0.1, 0.3])
  J, b = jax.jit(_decoder_affine)(params)
  post_cov = np.linalg.inv(np.eye(L) + np.asarray(J.T @ J) / SCALE ** 2)
  assert np.allclose(post_cov, np.diag(np.diag(post_cov)), atol=1e-6)
  gain = post_cov @ np.asarray(J).T / SCALE ** 2  # mean = gain (x - b)
  head = params["encoder"]["head"]
  head["mean"]["kernel"] = jnp.asarray(gain.T, jnp.float32)
  head["mean"]["bias"] = jnp.asarray(-gain @ np.asarray(b), jnp.float32)
  head["log_var"]["kernel"] = jnp.zeros_like(head["log_var"]["kernel"])
  bound = nets.LOG_VAR_BOUND
  head["log_var"]["bias"] = jnp.asarray(bound * np.arctanh(np.log(np.diag(post_cov)) / bound),
                                        jnp.float32)
  return params


def _draws(estimator, params, n, seed=0, x=X):
  """Surrogate gradients and reported losses for n independent keys."""
  est = estimator.per_example

  def one(key):
    (_, metrics), grads = jax.value_and_grad(
        lambda p: est(MODEL, p, x, key=key), has_aux=True)(params)
    return grads, metrics["loss"]

  keys = jax.random.split(jax.random.PRNGKey(seed), n)
  return jax.jit(lambda keys: jax.lax.map(one, keys, batch_size=2048))(keys)


def _flat(tree, groups=("encoder", "decoder")):
  return jnp.concatenate([jnp.concatenate([x.reshape(x.shape[:1] + (-1,)) if x.ndim else x[None]
                                           for x in jax.tree_util.tree_leaves(tree[g])], axis=-1)
                          for g in groups], axis=-1)


def _assert_unbiased(draws, exact, *, max_z=5.0):
  """draws: [N, P]; exact: [P]. Returns the largest z-score."""
  n = draws.shape[0]
  mean, se = jnp.mean(draws, 0), jnp.std(draws, 0) / math.sqrt(n)
  z = jnp.abs(mean - exact) / jnp.maximum(se, 1e-7)
  z = jnp.where(jnp.abs(mean - exact) < 1e-6, 0.0, z)  # exact agreement (zero-variance coords)
  assert float(jnp.max(z)) < max_z, (float(jnp.max(z)), np.asarray(mean - exact))
  return float(jnp.max(z))


def _flat_exact(tree, groups=("encoder", "decoder")):
  return jnp.concatenate([jnp.concatenate([jnp.ravel(x) for x in jax.tree_util.tree_leaves(tree[g])])
                          for g in groups])


ELBO_CASES = [
    dict(estimator="pathwise", analytic_kl=True),
    dict(estimator="pathwise", analytic_kl=False),
    dict(estimator="stl"),
    dict(estimator="score_function", baseline="none"),
    dict(estimator="score_function", baseline="moving_average"),
    dict(estimator="score_function", baseline="learned"),
    dict(estimator="score_function", baseline="none", analytic_kl=False),
]


@pytest.mark.parametrize("case", ELBO_CASES, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_elbo_estimators_are_unbiased_in_value_and_gradient(case):
  est = estimators.make_estimator("elbo", **case)
  params = {**_generic_params(), **est.init_params(jax.random.PRNGKey(5), MODEL)}
  if case.get("baseline") == "moving_average":
    params["baseline"]["value"] = jnp.float32(-3.0)  # any fixed baseline keeps it unbiased
  n = 100_000 if case["estimator"] == "score_function" else 20_000
  grads, losses = _draws(est, params, n)
  exact_value, exact_grad = jax.jit(jax.value_and_grad(exact_elbo))(params)
  # Value: the reported loss is minus an unbiased estimate of the ELBO.
  se = float(jnp.std(losses)) / math.sqrt(n)
  assert abs(float(-jnp.mean(losses)) - float(exact_value)) < 5 * se + 1e-5
  _assert_unbiased(_flat(grads), _flat_exact(exact_grad))


def test_the_unbiasedness_check_has_power():
  """A deliberately wrong estimator (score term with the wrong sign) is caught."""
  est = estimators.make_estimator("elbo", "score_function")
  params = _generic_params()
  grads, _ = _draws(est, params, 100_000)
  exact = jax.jit(jax.grad(exact_elbo))(params)
  wrong = jax.tree_util.tree_map(lambda g: g, exact)
  wrong["encoder"] = jax.tree_util.tree_map(lambda g: -g, exact["encoder"])
  with pytest.raises(AssertionError):
    _assert_unbiased(_flat(grads), _flat_exact(wrong))


@pytest.mark.parametrize("name", ["pathwise", "stl", "dreg", "vimco", "rws"])
def test_iwae_estimators_at_the_exact_posterior(name):
  """With q = p(z|x) every IWAE weight is p(x): the bound is log p(x) for every draw,
  its decoder gradient is grad log p(x) and its encoder gradient is zero."""
  params = _posterior_params()
  est = estimators.make_estimator("iwae", name, num_samples=4)
  grads, losses = _draws(est, params, 20_000)
  log_px = jax.jit(exact_log_evidence)(params)
  np.testing.assert_allclose(-np.asarray(losses), float(log_px), atol=2e-4)
  exact_dec = jax.jit(jax.grad(exact_log_evidence))(params)["decoder"]
  exact = {"encoder": jax.tree_util.tree_map(jnp.zeros_like, params["encoder"]), "decoder": exact_dec}
  _assert_unbiased(_flat(grads), _flat_exact(exact))


def test_stl_has_zero_encoder_variance_at_the_posterior_and_pathwise_does_not():
  params = _posterior_params()
  stl, _ = _draws(estimators.make_estimator("elbo", "stl"), params, 2000)
  total, _ = _draws(estimators.make_estimator("elbo", "pathwise", analytic_kl=False), params, 2000)
  dreg, _ = _draws(estimators.make_estimator("iwae", "dreg", num_samples=4), params, 2000)
  enc = lambda g: _flat(g, ("encoder",))  # noqa: E731
  assert float(jnp.max(jnp.std(enc(stl), 0))) < 1e-5
  assert float(jnp.max(jnp.std(enc(dreg), 0))) < 1e-5
  assert float(jnp.max(jnp.std(enc(total), 0))) > 1e-2


@pytest.mark.parametrize("name", ["dreg", "vimco"])
def test_iwae_estimators_agree_with_pathwise_iwae_at_a_generic_point(name):
  """Away from the posterior the IWAE gradient has no closed form; pathwise IWAE is
  unbiased by construction, so DReG's and VIMCO's means must match it (two-sample z)."""
  params = _generic_params()
  K = 5
  ref, ref_losses = _draws(estimators.make_estimator("iwae", "pathwise", num_samples=K), params,
                           50_000, seed=1)
  got, losses = _draws(estimators.make_estimator("iwae", name, num_samples=K), params,
                       200_000 if name == "vimco" else 50_000, seed=2)
  a, b = _flat(got), _flat(ref)
  se = jnp.sqrt(jnp.var(a, 0) / a.shape[0] + jnp.var(b, 0) / b.shape[0])
  z = jnp.abs(jnp.mean(a, 0) - jnp.mean(b, 0)) / jnp.maximum(se, 1e-7)
  assert float(jnp.max(z)) < 5.0, float(jnp.max(z))
  # Both report the same bound, below log p(x) and above the ELBO.
  se_bound = math.sqrt(float(jnp.var(losses)) / len(losses) + float(jnp.var(ref_losses)) / len(ref_losses))
  assert abs(float(jnp.mean(losses) - jnp.mean(ref_losses))) < 5 * se_bound
  assert (float(jax.jit(exact_elbo)(params)) < float(-jnp.mean(ref_losses))
          < float(jax.jit(exact_log_evidence)(params)))


def test_iwae_with_one_sample_estimators_match_the_elbo_ones():
  params = _generic_params()
  key = jax.random.PRNGKey(3)
  for iwae_name, elbo_name in [("pathwise", "pathwise"), ("stl", "stl")]:
    a = estimators.make_estimator("iwae", iwae_name, num_samples=1).per_example
    b = estimators.make_estimator("elbo", elbo_name, analytic_kl=False).per_example
    ga = jax.jit(jax.grad(lambda p: a(MODEL, p, X, key=key)[0]))(params)
    gb = jax.jit(jax.grad(lambda p: b(MODEL, p, X, key=key)[0]))(params)
    jax.tree_util.tree_map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-5), ga, gb)


def test_moving_average_baseline_is_an_exact_ema():
  est = estimators.make_estimator("elbo", "score_function", baseline="moving_average",
                                  baseline_decay=0.9)
  params = {**_generic_params(), **est.init_params(jax.random.PRNGKey(0), MODEL)}
  opt = estimators.make_optimizer(optax.adam(1e-3), est)
  opt_state = opt.init(params)
  loss = lambda p: -est.per_example(MODEL, p, X, key=jax.random.PRNGKey(4))[0]  # noqa: E731
  _, metrics = jax.jit(lambda p: est.per_example(MODEL, p, X, key=jax.random.PRNGKey(4)))(params)
  signal = -metrics["recon"]  # with the analytic KL the signal is log p(x|z)
  updates, _ = opt.update(jax.jit(jax.grad(loss))(params), opt_state, params)
  new = optax.apply_updates(params, updates)
  np.testing.assert_allclose(new["baseline"]["value"], 0.9 * 0.0 + 0.1 * float(signal), rtol=1e-5)


def test_estimator_names_and_bad_combinations():
  assert estimators.display_name("iwae", "pathwise") == "iwae"
  assert estimators.display_name("iwae", "stl") == "iwae_stl"
  assert estimators.display_name("iwae", "dreg") == "dreg"
  with pytest.raises(ValueError, match=r"does not apply to objective 'elbo'; valid: \['pathwise'"):
    estimators.make_estimator("elbo", "dreg")
  with pytest.raises(ValueError, match="num_samples >= 2"):
    estimators.make_estimator("iwae", "vimco", num_samples=1)
  with pytest.raises(ValueError, match="applies to estimator='score_function' only"):
    estimators.make_estimator("elbo", "pathwise", baseline="learned")


def test_diagnostics_on_a_gradient_with_known_moments():
  """g = mu + sigma * eps per draw: variance sigma^2, SNR |mu|/sigma, bias vs a reference."""
  mu = {"encoder": jnp.array([1.0, -2.0, 0.5]), "decoder": jnp.array([3.0, 0.0])}
  sigma = {"encoder": jnp.array([0.5, 1.0, 0.25]), "decoder": jnp.array([1.5, 2.0])}

  def grad_fn(params, *, key):
    ke, kd = jax.random.split(key)
    return {"encoder": params["encoder"] + sigma["encoder"] * jax.random.normal(ke, (3,)),
            "decoder": params["decoder"] + sigma["decoder"] * jax.random.normal(kd, (2,))}

  stats = diagnostics.gradient_statistics(grad_fn, mu, key=jax.random.PRNGKey(0),
                                          num_draws=64_000, reference=mu)
  np.testing.assert_allclose(stats["encoder"]["variance"], np.mean(np.square([0.5, 1.0, 0.25])), rtol=0.02)
  np.testing.assert_allclose(stats["decoder"]["snr"], np.mean([3.0 / 1.5, 0.0]), atol=0.02)
  np.testing.assert_allclose(stats["encoder"]["snr"], np.mean([2.0, 2.0, 2.0]), rtol=0.02)
  # t_rms^2 * 3 is chi-square with 3 degrees of freedom: below 3.0 but for a 1e-5 chance.
  assert stats["encoder"]["t_rms"] < 3.0 and stats["encoder"]["bias_l2"] < 0.02
  shifted = jax.tree_util.tree_map(lambda m: m + 0.1, mu)
  biased = diagnostics.gradient_statistics(grad_fn, mu, key=jax.random.PRNGKey(1),
                                           num_draws=64_000, reference=shifted)
  assert biased["encoder"]["t_rms"] > 10 and biased["encoder"]["bias_l2"] == pytest.approx(0.1 * math.sqrt(3), rel=0.1)

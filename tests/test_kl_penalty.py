"""objectives.make_kl_penalty (warm-up, capacity, free bits) and its use in the ELBO."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vaejax import estimators, models, nets, objectives

MODEL = models.make_vae(architecture="mlp", image_shape=(2, 2, 1), latent_dim=2, hidden=(8,),
                        likelihood="bernoulli")
X = jnp.array([1.0, 0.0, 0.0, 1.0]).reshape(2, 2, 1)
KL_PER_DIM = jnp.array([1.0, 2.5])  # KL = 3.5


@pytest.mark.parametrize("jit", [False, True])
def test_warmup_ramps_beta_linearly_from_zero(jit):
  """beta(t) = beta * min(1, t / warmup_steps), also for a traced step (as in training)."""
  pen = objectives.make_kl_penalty(beta=2.0, warmup_steps=100)
  weight = jax.jit(pen.weight) if jit else pen.weight
  penalty = jax.jit(pen.penalty) if jit else pen.penalty
  for step, expected in [(0, 0.0), (50, 1.0), (100, 2.0), (1000, 2.0)]:
    assert float(weight(jnp.int32(step))) == pytest.approx(expected, abs=1e-7)
    assert float(penalty(KL_PER_DIM, jnp.int32(step))) == pytest.approx(3.5 * expected, abs=1e-6)
  plain = objectives.make_kl_penalty(beta=2.0)
  assert float(plain.weight(0)) == 2.0 and float(plain.penalty(KL_PER_DIM, 0)) == 7.0


def test_capacity_target_rises_to_capacity_max_then_holds():
  """gamma * |KL - C(t)|, C(t) = C_max * min(1, t / capacity_steps): C(0) = 0."""
  pen = objectives.make_kl_penalty(capacity_max=5.0, capacity_steps=100, capacity_gamma=10.0)
  for step, capacity in [(0, 0.0), (50, 2.5), (100, 5.0), (1000, 5.0)]:
    assert float(pen.penalty(KL_PER_DIM, step)) == pytest.approx(10.0 * abs(3.5 - capacity))


def test_capacity_gradient_sign_flips_when_kl_crosses_the_target():
  pen = objectives.make_kl_penalty(capacity_max=5.0, capacity_steps=100, capacity_gamma=10.0)
  grad = jax.grad(pen.penalty)
  np.testing.assert_allclose(grad(KL_PER_DIM, 0), [10.0, 10.0])      # KL 3.5 > C = 0: push down
  np.testing.assert_allclose(grad(KL_PER_DIM, 100), [-10.0, -10.0])  # KL 3.5 < C = 5: push up
  np.testing.assert_allclose(grad(KL_PER_DIM * 2, 100), [10.0, 10.0])  # KL 7 > C = 5


def test_free_bits_floor_each_dimension():
  """sum_d max(KL_d, lambda): a dimension below the floor gets no gradient."""
  pen = objectives.make_kl_penalty(beta=2.0, free_bits=0.5)
  kl = jnp.array([0.1, 2.0])
  assert float(pen.penalty(kl, 0)) == pytest.approx(2.0 * (0.5 + 2.0))
  np.testing.assert_allclose(jax.grad(pen.penalty)(kl, 0), [0.0, 2.0])
  warm = objectives.make_kl_penalty(beta=2.0, free_bits=0.5, warmup_steps=10)
  assert float(warm.penalty(kl, 5)) == pytest.approx(1.0 * (0.5 + 2.0))


def _params_with_kl_below_and_above():
  """Params whose posterior for X has KL_0 < 0.1 and KL_1 > 1 (set via the head biases),
  either side of a 0.5-nat floor."""
  params = MODEL.init(jax.random.PRNGKey(0))
  q = MODEL.posterior(params, X)
  head = params["encoder"]["head"]
  target_mean, target_log_var = jnp.array([0.2, 1.5]), jnp.array([-0.1, -1.0])
  head["mean"]["bias"] = head["mean"]["bias"] + target_mean - q.mean
  pre_clip = lambda v: nets.LOG_VAR_BOUND * jnp.arctanh(v / nets.LOG_VAR_BOUND)  # noqa: E731
  head["log_var"]["bias"] = head["log_var"]["bias"] + pre_clip(target_log_var) - pre_clip(q.log_var)
  kl = MODEL.kl_per_dim(params, X, MODEL.posterior(params, X))
  assert float(kl[0]) < 0.1 and float(kl[1]) > 1.0
  return params


def _kl_per_dim(params):
  return MODEL.kl_per_dim(params, X, MODEL.posterior(params, X))


def test_free_bits_stop_the_kl_gradient_of_a_dimension_below_the_floor():
  """Through the encoder: the below-floor dimension's head biases get no KL gradient,
  the above-floor one's gets the plain KL gradient; the whole encoder gradient is
  that of KL_1 alone."""
  params = _params_with_kl_below_and_above()
  free = objectives.make_kl_penalty(free_bits=0.5)
  plain = objectives.make_kl_penalty()
  g_free = jax.jit(jax.grad(lambda p: free.penalty(_kl_per_dim(p), 0)))(params)["encoder"]
  g_plain = jax.jit(jax.grad(lambda p: plain.penalty(_kl_per_dim(p), 0)))(params)["encoder"]
  for name in ("mean", "log_var"):
    free_bias, plain_bias = g_free["head"][name]["bias"], g_plain["head"][name]["bias"]
    assert float(free_bias[0]) == 0.0 and abs(float(plain_bias[0])) > 1e-2
    assert abs(float(free_bias[1])) > 0.1
    np.testing.assert_allclose(free_bias[1], plain_bias[1], rtol=1e-6)
  g_above = jax.jit(jax.grad(lambda p: _kl_per_dim(p)[1]))(params)["encoder"]
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
                         g_free, g_above)


def test_the_estimator_subtracts_the_free_bits_penalty():
  """Same key: the pathwise ELBO's gradient with free bits differs from the plain one
  by exactly the KL part, and its loss is recon + sum_d max(KL_d, lambda)."""
  params = _params_with_kl_below_and_above()
  key = jax.random.PRNGKey(3)
  free_est = estimators.make_estimator("elbo", kl_penalty=objectives.make_kl_penalty(free_bits=0.5))
  plain_est = estimators.make_estimator("elbo")
  surrogate = lambda est: lambda p: est.per_example(MODEL, p, X, key=key)[0]  # noqa: E731
  diff = jax.tree_util.tree_map(jnp.subtract, jax.jit(jax.grad(surrogate(free_est)))(params),
                                jax.jit(jax.grad(surrogate(plain_est)))(params))
  kl_diff = jax.jit(jax.grad(lambda p: jnp.sum(_kl_per_dim(p)) - _kl_per_dim(p)[1]))(params)  # KL_0
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                         diff, kl_diff)
  _, metrics = free_est.per_example(MODEL, params, X, key=key)
  kl = _kl_per_dim(params)
  np.testing.assert_allclose(metrics["loss"], metrics["recon"] + 0.5 + kl[1], rtol=1e-6)
  np.testing.assert_allclose(metrics["kl"], jnp.sum(kl), rtol=1e-6)  # reported: the true KL


def _generic_params():
  params = MODEL.init(jax.random.PRNGKey(1))
  return jax.tree_util.tree_map(lambda p: p + 0.3, params)


@pytest.mark.parametrize("analytic_kl", [True, False])
def test_the_estimator_warms_the_kl_weight_up_with_the_step(analytic_kl):
  """loss = recon + beta(step) * KL: recon alone at step 0, the full ELBO from step 100."""
  est = estimators.make_estimator("elbo", analytic_kl=analytic_kl,
                                  kl_penalty=objectives.make_kl_penalty(warmup_steps=100))
  params, key = _generic_params(), jax.random.PRNGKey(2)
  terms = objectives.sample_terms(MODEL, params, X, key=key)  # the same draw as the estimator
  kl = terms.kl if analytic_kl else jnp.mean(terms.log_qz_x - terms.log_pz)
  assert abs(float(kl)) > 0.1
  for step, weight in [(0, 0.0), (50, 0.5), (100, 1.0), (400, 1.0)]:
    _, metrics = est.per_example(MODEL, params, X, key=key, step=step)
    np.testing.assert_allclose(metrics["loss"], metrics["recon"] + weight * kl, rtol=1e-6,
                               atol=1e-6)


def test_the_batch_loss_passes_a_traced_step_to_the_penalty():
  est = estimators.make_estimator("elbo", kl_penalty=objectives.make_kl_penalty(warmup_steps=100))
  loss_fn = jax.jit(objectives.make_batch_loss(MODEL, est.per_example))
  params, batch = _generic_params(), jnp.stack([X, 1.0 - X])
  key = jax.random.PRNGKey(4)
  for step, weight in [(0, 0.0), (25, 0.25), (100, 1.0)]:
    _, metrics = loss_fn(params, batch, key=key, step=jnp.int32(step))
    assert float(metrics["kl"]) > 0.1
    np.testing.assert_allclose(metrics["loss"], metrics["recon"] + weight * metrics["kl"],
                               rtol=1e-6)


def test_the_estimator_applies_capacity_control():
  pen = objectives.make_kl_penalty(capacity_max=5.0, capacity_steps=100, capacity_gamma=10.0)
  est = estimators.make_estimator("elbo", kl_penalty=pen)
  params, key = _generic_params(), jax.random.PRNGKey(2)
  for step, capacity in [(0, 0.0), (100, 5.0)]:
    _, metrics = est.per_example(MODEL, params, X, key=key, step=step)
    expected = metrics["recon"] + 10.0 * jnp.abs(metrics["kl"] - capacity)
    np.testing.assert_allclose(metrics["loss"], expected, rtol=1e-6)


def test_capacity_with_free_bits_is_rejected():
  with pytest.raises(ValueError, match="alternatives"):
    objectives.make_kl_penalty(capacity_max=5.0, free_bits=1.0)


@pytest.mark.parametrize("setting", ["beta", "warmup_steps", "free_bits", "capacity_max",
                                     "capacity_steps", "capacity_gamma"])
def test_negative_settings_are_rejected(setting):
  objectives.make_kl_penalty(**{setting: 1})  # the same setting, non-negative, is accepted
  with pytest.raises(ValueError, match=">= 0"):
    objectives.make_kl_penalty(**{setting: -1})


@pytest.mark.parametrize("settings", [dict(estimator="stl"), dict(analytic_kl=False),
                                      dict(estimator="score_function")])
def test_floors_and_capacity_refuse_a_monte_carlo_kl(settings):
  for penalty in (objectives.make_kl_penalty(free_bits=1.0),
                  objectives.make_kl_penalty(capacity_max=5.0, capacity_steps=10)):
    with pytest.raises(ValueError, match="need the closed-form KL"):
      estimators.make_estimator("elbo", kl_penalty=penalty, **settings)
  estimators.make_estimator("elbo", kl_penalty=objectives.make_kl_penalty(warmup_steps=5),
                            **settings)

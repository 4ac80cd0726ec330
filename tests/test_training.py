"""The compiled step and chunk runner: no retracing, donation, skipping bad updates."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vaejax import estimators, models, objectives, optim, training


def _setup(objective="elbo", n=64, batch=16, lr=1e-2):
  model = models.make_vae(architecture="mlp", image_shape=(4, 4, 1), latent_dim=2, hidden=(8,))
  loss_fn = objectives.make_batch_loss(model, estimators.make_estimator(objective).per_example)
  opt = optax.adam(lr)
  state = training.create_train_state(model.init(jax.random.PRNGKey(0)), opt,
                                      key=jax.random.PRNGKey(1))
  data = (jax.random.uniform(jax.random.PRNGKey(2), (n, 4, 4, 1)) < 0.3).astype(jnp.uint8)
  step = training.make_train_step(loss_fn, opt, training.make_preprocess(1, False))
  return state, data, step, loss_fn, batch


def test_train_step_compiles_once_and_lowers_the_loss():
  state, data, step, loss_fn, batch = _setup()
  traced_step = jax.jit(chex.assert_max_traces(step, n=1), donate_argnums=0)
  x = data[:batch]
  before = float(loss_fn(state.params, x.astype(jnp.float32), key=jax.random.PRNGKey(3))[0])
  for _ in range(60):
    state, metrics = traced_step(state, x)
  after = float(loss_fn(state.params, x.astype(jnp.float32), key=jax.random.PRNGKey(3))[0])
  assert int(state.step) == 60 and after < before - 1.0, (before, after)


def test_chunk_runner_compiles_once_for_every_chunk_length_and_position():
  state, data, step, _, batch = _setup()
  chunk = jax.jit(chex.assert_max_traces(training.make_train_chunk(step, batch), n=1),
                  donate_argnums=0)
  perm = jnp.arange(len(data))
  for first, num in [(0, 1), (1, 3), (0, 4), (2, 2)]:
    state, sums = chunk(state, data, perm, np.int32(first), np.int32(num))
  assert int(state.step) == 10
  assert set(sums) >= {"loss", "recon", "kl", "neg_elbo", "skipped"}


def test_chunk_equals_the_same_steps_one_by_one():
  state, data, step, _, batch = _setup()
  perm = jax.random.permutation(jax.random.PRNGKey(4), len(data))
  chunk = jax.jit(training.make_train_chunk(step, batch))
  s_chunk, sums = chunk(state, data, perm, np.int32(0), np.int32(4))
  s_loop, losses = state, []
  for i in range(4):
    s_loop, m = jax.jit(step)(s_loop, data[perm[i * batch:(i + 1) * batch]])
    losses.append(m["loss"])
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                         s_chunk.params, s_loop.params)
  np.testing.assert_allclose(sums["loss"], np.sum(losses), rtol=1e-5)


@pytest.mark.parametrize("opt", [optax.adam(1e-2), optim.skippable_adam(1e-2)],
                         ids=["select", "skippable_adam"])
def test_non_finite_update_is_skipped_and_counted(opt):
  state, data, _, loss_fn, batch = _setup()

  def poisoned(params, x, *, key, example_offset=0, step=0):  # NaN whenever the batch holds a 2
    loss, metrics = loss_fn(params, jnp.minimum(x, 1.0), key=key)
    bad = jnp.any(x > 1.0)
    return jnp.where(bad, jnp.nan, loss), dict(metrics, loss=jnp.where(bad, jnp.nan, loss))

  step = jax.jit(training.make_train_step(poisoned, opt, training.make_preprocess(1, False)))
  good, bad = data[:batch], data[:batch].at[0, 0, 0, 0].set(2)
  state, _ = step(state, good)
  params_before = state.params
  for i in range(3):
    state, m = step(state, bad)
    assert float(m["skipped"]) == 1.0
  jax.tree_util.tree_map(np.testing.assert_array_equal, state.params, params_before)
  assert int(state.skipped_total) == 3 and int(state.skipped_consecutive) == 3
  state, m = step(state, good)
  assert float(m["skipped"]) == 0.0 and int(state.skipped_consecutive) == 0
  assert int(state.skipped_total) == 3 and int(state.step) == 5


@pytest.mark.parametrize("poison, safe", [
    (None, True), (1e15, True), (1e20, False), (np.inf, False), (-np.inf, False),
    (np.nan, False)])
def test_safe_to_apply_sees_non_finite_and_overflowing_elements(poison, safe):
  tree = {"a": jnp.ones((3, 4)), "b": [jnp.full((1000,), -2.5), jnp.float32(7.0)]}
  if poison is not None:
    tree["b"][0] = tree["b"][0].at[417].set(poison)
  assert bool(training._safe_to_apply(tree)) is safe
  # +inf in one leaf and -inf in another: a plain sum would give NaN here by luck,
  # squares give inf; either way the check must not let them cancel.
  opposed = {"a": tree["a"].at[0, 0].set(np.inf), "b": tree["b"][0].at[0].set(-np.inf)}
  assert not bool(training._safe_to_apply(opposed))


@pytest.mark.parametrize("opt", [optax.adam(1e-2), optim.skippable_adam(1e-2)],
                         ids=["select", "skippable_adam"])
def test_gradient_that_would_overflow_adams_second_moment_is_skipped(opt):
  # A finite gradient of 1e20 squares to inf in float32: applied, it would set
  # Adam's second moment to inf and freeze that coordinate for good.
  state, data, _, loss_fn, batch = _setup()
  state = state.replace(opt_state=opt.init(state.params))

  def huge_gradient(params, x, *, key, example_offset=0, step=0):
    loss, metrics = loss_fn(params, x, key=key)
    first = jax.tree_util.tree_leaves(params)[0].ravel()[0]
    # Adds 0 to the loss and 1e20 to one gradient element, whatever the param's value.
    loss = loss + 1e20 * (first - jax.lax.stop_gradient(first))
    return loss, dict(metrics, loss=loss)

  x = data[:batch].astype(jnp.float32)
  raw_grads = jax.grad(lambda p: huge_gradient(p, x, key=jax.random.PRNGKey(0))[0])(state.params)
  first_grad = jax.tree_util.tree_leaves(raw_grads)[0]
  assert bool(jnp.all(jnp.isfinite(first_grad))) and float(jnp.max(jnp.abs(first_grad))) > 1e19
  _, unguarded = optax.adam(1e-2).update(raw_grads, optax.adam(1e-2).init(state.params))
  assert not bool(jnp.all(jnp.isfinite(jax.tree_util.tree_leaves(unguarded[0].nu)[0])))

  step = jax.jit(training.make_train_step(huge_gradient, opt, training.make_preprocess(1, False)))
  new_state, m = step(state, data[:batch])
  assert abs(float(m["loss"])) < 1e4  # skipped for the gradient, not for the loss
  assert float(m["skipped"]) == 1.0
  jax.tree_util.tree_map(np.testing.assert_array_equal, new_state.params, state.params)
  jax.tree_util.tree_map(np.testing.assert_array_equal, new_state.opt_state, state.opt_state)


@pytest.mark.parametrize("opt", [optax.adam(1e-2), optim.skippable_adam(1e-2)],
                         ids=["select", "skippable_adam"])
def test_update_with_finite_loss_but_non_finite_gradient_is_skipped(opt):
  state, data, _, loss_fn, batch = _setup()

  @jax.custom_vjp
  def nan_gradient(v):  # value 0, gradient NaN wherever a cotangent arrives
    return 0.0 * v

  nan_gradient.defvjp(lambda v: (0.0 * v, None),
                      lambda _, g: (jnp.where(g != 0, jnp.nan, 0.0),))

  def poisoned(params, x, *, key, example_offset=0, step=0):
    loss, metrics = loss_fn(params, jnp.minimum(x, 1.0), key=key)
    first = jax.tree_util.tree_leaves(params)[0]
    loss = loss + jnp.where(jnp.any(x > 1.0), nan_gradient(jnp.sum(first)), 0.0)
    return loss, dict(metrics, loss=loss)

  step = jax.jit(training.make_train_step(poisoned, opt, training.make_preprocess(1, False)))
  bad = data[:batch].at[0, 0, 0, 0].set(2)
  new_state, m = step(state, bad)
  assert np.isfinite(float(m["loss"])) and float(m["skipped"]) == 1.0
  jax.tree_util.tree_map(np.testing.assert_array_equal, new_state.params, state.params)


def test_dynamic_binarisation_is_per_example_and_keyed():
  pre = training.make_preprocess(255, True)
  gray = jnp.full((4, 2, 2, 1), 128, jnp.uint8)
  key = jax.random.PRNGKey(0)
  a, b = pre(gray, key=key), pre(gray, key=key)
  np.testing.assert_array_equal(a, b)
  assert set(np.unique(a)) <= {0.0, 1.0}
  np.testing.assert_array_equal(pre(gray[2:], key=key, example_offset=2), a[2:])


def test_chunk_stops_early_after_consecutive_skips():
  state, data, _, loss_fn, batch = _setup()
  opt = optax.adam(1e-2)
  nan_loss = lambda p, x, *, key, example_offset=0, step=0: (  # noqa: E731
      jnp.float32(jnp.nan), {"loss": jnp.float32(jnp.nan)})
  step = training.make_train_step(nan_loss, opt, training.make_preprocess(1, False))
  chunk = jax.jit(training.make_train_chunk(step, batch, max_consecutive_skips=3))
  state, sums = chunk(state, data, jnp.arange(len(data)), np.int32(0), np.int32(4))
  assert int(state.step) == 3 and float(sums["skipped"]) == 3.0
  assert float(sums["loss"]) == 0.0  # skipped steps add nothing to the metric sums

"""skippable_adam: optax.adam's state and updates, and an exact no-op when skipped."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vaejax import optim

PARAMS = {"w": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4), "b": jnp.array([0.5, -0.25])}
SCHEDULES = {"constant": 1e-2,
             "piecewise": optax.piecewise_constant_schedule(1e-2, {2: 0.5, 4: 0.1})}


# Tolerances: a few float32 ulps of the moment terms (~0.1); XLA may contract
# a * b + c into one FMA in one program and not the other.


def _grads(i):
  return jax.tree_util.tree_map(lambda p: jnp.cos(3.0 * p + i), PARAMS)


@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_state_and_updates_match_optax_adam(schedule):
  lr = SCHEDULES[schedule]
  ours, ref = optim.skippable_adam(lr, b1=0.8, b2=0.99, eps=1e-4), optax.adam(lr, b1=0.8, b2=0.99, eps=1e-4)
  s_ours, s_ref = ours.init(PARAMS), ref.init(PARAMS)
  assert jax.tree_util.tree_structure(s_ours) == jax.tree_util.tree_structure(s_ref)
  update = jax.jit(lambda g, s: ours.update(g, s, apply=jnp.bool_(True)))
  for i in range(6):
    u_ours, s_ours = update(_grads(i), s_ours)
    u_ref, s_ref = ref.update(_grads(i), s_ref)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
                           (u_ours, s_ours), (u_ref, s_ref))


@pytest.mark.parametrize("schedule", list(SCHEDULES))
@pytest.mark.parametrize("first_step_skipped", [True, False])
def test_a_skipped_step_is_an_exact_no_op_even_with_nan_gradients(schedule, first_step_skipped):
  ours, ref = optim.skippable_adam(SCHEDULES[schedule]), optax.adam(SCHEDULES[schedule])
  update = jax.jit(lambda g, s, a: ours.update(g, s, apply=a))
  poisoned = jax.tree_util.tree_map(lambda g: g.at[0].set(jnp.nan), _grads(99))
  state, ref_state = ours.init(PARAMS), ref.init(PARAMS)
  plan = ([False] if first_step_skipped else []) + [True, False, True, True, False, True]
  applied = 0
  for apply in plan:
    before = state
    updates, state = update(_grads(applied) if apply else poisoned, state, jnp.bool_(apply))
    if apply:
      ref_updates, ref_state = ref.update(_grads(applied), ref_state)
      applied += 1
      jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
                             updates, ref_updates)
    else:
      for u in jax.tree_util.tree_leaves(updates):
        np.testing.assert_array_equal(u, 0.0)
      jax.tree_util.tree_map(np.testing.assert_array_equal, state, before)
  # Skipped steps advanced neither Adam's count nor the schedule's.
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
                         state, ref_state)

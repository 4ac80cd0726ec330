"""Adam whose update can be skipped in place, for the train step's non-finite guard.

`training.make_train_step` skips an update whose loss or gradient is not finite
(or large enough to overflow Adam's second moment).
For a generic optax transformation it does so by selecting, per element, between
the new and the old params and moments; XLA:CPU then keeps copies of the old
moments and recomputes the update in the select fusions, which costs a third of
a small-batch step (benchmarks/NOTES.md). `skippable_adam` instead takes the
decision as a scalar gate inside Adam's arithmetic, so each buffer is read and
written once, and a skipped step leaves everything as it was.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Union

import jax
import jax.numpy as jnp
import optax

Schedule = Callable[[jax.Array], jax.Array]


def safe_to_apply(tree) -> jax.Array:
  """[] bool: the sum of squares of every element of every (float) leaf is finite.

  That is, the tree's L2 norm is below ~1.84e19 = sqrt(float32 max): False for any
  inf or NaN, and for any single value above ~1.84e19, whose square would
  overflow Adam's second moment to inf and zero that coordinate's updates for
  the rest of the run without any error. (A tree of all-smaller values whose
  norm still passes 1.84e19, an RMS of ~1.6e16 over the reference model's 1.4M
  gradients, is skipped too.) Squares are taken in float32, so this holds for
  float32 and bfloat16 leaves. One float reduction: XLA:CPU vectorises it, about
  6x faster than and-reducing isfinite (benchmarks/NOTES.md), and this check
  runs over every gradient each step.
  """
  leaves = jax.tree_util.tree_leaves(tree)
  return jnp.isfinite(sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in leaves))


class SkippableTransformation(NamedTuple):
  """init(params) -> state; update(grads, state, params=None, *, apply) -> (updates, state).

  apply: [] bool. False gives zero updates and the state unchanged.
  """
  init: Callable[[Any], Any]
  update: Callable[..., tuple[Any, Any]]


def skippable_adam(learning_rate: Union[float, Schedule], *, b1: float = 0.9, b2: float = 0.999,
                   eps: float = 1e-8) -> SkippableTransformation:
  """optax.adam(learning_rate, b1=b1, b2=b2, eps=eps) with a skippable update.

  Same state pytree as optax.adam (so checkpoints of either restore into the
  other) and, when applied, the same arithmetic: moments (1-b) g^k + b m,
  bias-corrected with the step count, update -lr(count) m_hat / (sqrt(v_hat) + eps).
  A skipped step advances neither Adam's count nor the schedule's.
  """
  reference = optax.adam(learning_rate, b1=b1, b2=b2, eps=eps)
  scheduled = callable(learning_rate)

  def update(grads, state, params=None, *, apply: jax.Array):
    del params
    apply = jnp.asarray(apply, bool)
    adam_state, lr_state = state
    # Scalar gates: (new weight, old weight) of each moment is (1 - b, b) when
    # applied and (0, 1) when skipped, which keeps the old moment exactly.
    new1, old1 = jnp.where(apply, 1 - b1, 0.0), jnp.where(apply, b1, 1.0)
    new2, old2 = jnp.where(apply, 1 - b2, 0.0), jnp.where(apply, b2, 1.0)
    applied = apply.astype(jnp.int32)
    count = adam_state.count + applied
    correction1 = (1 - b1 ** count).astype(jnp.float32)
    correction2 = (1 - b2 ** count).astype(jnp.float32)
    if scheduled:
      step_size = -learning_rate(lr_state.count)
      lr_state = optax.ScaleByScheduleState(count=lr_state.count + applied)
    else:
      step_size = -learning_rate

    def leaf(g, m, v):
      g = jnp.where(apply, g, 0.0)  # a skipped gradient may hold NaN/Inf
      m = new1 * g + old1 * m
      v = new2 * g ** 2 + old2 * v
      u = (m / correction1) / (jnp.sqrt(v / correction2) + eps) * step_size
      # where, not a product: with count 0 (first step skipped) u is 0/0.
      return jnp.where(apply, u, 0.0), m, v

    out = jax.tree_util.tree_map(leaf, grads, adam_state.mu, adam_state.nu)
    treedef = jax.tree_util.tree_structure(grads)
    updates, mu, nu = (jax.tree_util.tree_unflatten(treedef, list(x))
                       for x in zip(*treedef.flatten_up_to(out)))
    return updates, (optax.ScaleByAdamState(count=count, mu=mu, nu=nu), lr_state)

  return SkippableTransformation(reference.init, update)

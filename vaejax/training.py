"""Train state, the compiled train step and the many-steps-per-dispatch runner.

One jitted call runs a whole chunk of steps on device: batches are gathered
from a data set that lives on device as uint8, converted per batch
(`vaejax.preprocess`), and the state is donated. Metrics are summed on device;
the host reads them once per chunk.
"""
from __future__ import annotations

from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import optax

from vaejax import optim, phases
from vaejax.models.base import STATS, UpdateState
# Public here too (callers build a step and its preprocessing together).
from vaejax.preprocess import GREY_MODALITIES, make_preprocess  # noqa: F401

Params = Any
LossFn = Callable[..., tuple[jax.Array, dict[str, jax.Array]]]
# fold_in(step key, 2) keys a model's state update; split(step key) keys noise and binarisation.
STATE_KEY_PURPOSE = 2


@flax.struct.dataclass
class TrainState:
  """Everything a run needs to continue bit-for-bit.

  step: [] int32, optimiser steps taken (skipped ones included).
  key: raw uint32 [2] key; step t draws its noise from fold_in(key, t).
  skipped_total / skipped_consecutive: [] int32 counts of non-finite updates.
  """
  step: jax.Array
  params: Params
  opt_state: optax.OptState
  key: jax.Array
  skipped_total: jax.Array
  skipped_consecutive: jax.Array


def create_train_state(params: Params, optimizer: optax.GradientTransformation, *,
                       key: jax.Array) -> TrainState:
  # Distinct buffers per leaf: the state is donated, and XLA refuses to donate one
  # buffer twice.
  zero = lambda: jnp.zeros((), jnp.int32)  # noqa: E731
  state = TrainState(step=zero(), params=params, opt_state=optimizer.init(params),
                     key=jnp.asarray(key), skipped_total=zero(), skipped_consecutive=zero())
  return jax.tree_util.tree_map(jnp.copy, state)


# The guard's check (optim.safe_to_apply), looked up here at call time so benchmarks
# can swap it.
_safe_to_apply = optim.safe_to_apply


def _step_inputs(state: TrainState, batch, example_offset, preprocess):
  """(noise key, preprocessed batch) of the step: both keys from fold_in(state.key, state.step)."""
  noise_key, binarize_key = jax.random.split(jax.random.fold_in(state.key, state.step))
  return noise_key, preprocess(batch, key=binarize_key, example_offset=example_offset)


def _keep_if(ok: jax.Array, new, old):
  """new where ok, else old, leaf by leaf: an elementwise select, not lax.cond (it fuses
  into the update loop, where a cond would copy every parameter and moment buffer)."""
  return jax.tree_util.tree_map(lambda n, o: jnp.where(ok, n, o), new, old)


def make_gradient(loss_fn: LossFn, preprocess):
  """gradient(state, batch, example_offset=0) -> ((loss, metrics), grads): the train
  step's noise and binarisation keys (from fold_in(state.key, state.step)), its
  preprocessing, and the gradient of loss_fn at state.params."""
  def gradient(state: TrainState, batch, example_offset=0):
    noise_key, x = _step_inputs(state, batch, example_offset, preprocess)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    return grad_fn(state.params, x, key=noise_key, example_offset=example_offset,
                   step=state.step)
  return gradient


def make_train_step(loss_fn: LossFn, optimizer: optax.GradientTransformation, preprocess,
                    *, axis_name: str | None = None, update_state: UpdateState | None = None):
  """Returns train_step(state, batch, example_offset=0, active=None) -> (state, metrics).

  batch: the raw examples this device sees (uint8 images, or a pytree of
  arrays with a uint8 "image" leaf). With `axis_name` set (inside
  pmap or shard_map), gradients and metrics are averaged over that axis. An
  update whose loss or gradient is not finite is skipped on device and
  counted; the step counter advances either way. (Finite gradients give finite
  Adam updates; an optimizer that can overflow finite params, such as SGD at
  an absurd learning rate, yields a non-finite loss on the next step, which
  is then skipped.)

  active: [] bool or None. False leaves the state as it is (step counter
  included) and counts no skip: a stopped replica of a replicated run.

  update_state: a model's non-gradient update (`models.base.UpdateState`, e.g.
  the VQ-VAE's EMA codebook). The loss's metrics then carry per-example
  statistics under objectives.STATS ([B, ...] leaves, not averaged); they are
  gathered over `axis_name` into the global batch, in the single-device
  order, so every device computes the same update. update_state(params, stats,
  key=, step=) -> (new values of some top-level param groups, batch-level
  metrics) runs on the pre-step params and is applied when the step is.

  A `phases.PhasedOptimizer` makes this a multi-phase step: loss_fn is then
  {phase name: batch loss}, the phases run in order (`phases.phased_update`) and
  the non-finite guard keeps or discards all of them together.
  """
  phased = isinstance(optimizer, phases.PhasedOptimizer)
  if phased and update_state is not None:
    raise ValueError("a phased step (phases.PhasedOptimizer) takes no update_state")
  gradient = make_gradient(loss_fn, preprocess)

  def phased_step(state: TrainState, batch, example_offset, active):
    """Every phase in order; the whole step kept or discarded on `ok`."""
    noise_key, x = _step_inputs(state, batch, example_offset, preprocess)
    new_params, new_opt_state, metrics, safe = phases.phased_update(
        loss_fn, optimizer, state.params, state.opt_state, x, key=noise_key,
        example_offset=example_offset, step=state.step, axis_name=axis_name)
    ok = safe if active is None else safe & active
    return (_keep_if(ok, new_params, state.params), _keep_if(ok, new_opt_state, state.opt_state),
            metrics, safe, {}, ok)

  def gradient_step(state: TrainState, batch, example_offset, active):
    (loss, metrics), grads = gradient(state, batch, example_offset)
    metrics = dict(metrics)
    stats = metrics.pop(STATS, None)
    if axis_name is not None:
      grads, metrics = jax.lax.pmean((grads, metrics), axis_name)
      if stats is not None:
        stats = jax.lax.all_gather(stats, axis_name, tiled=True)
    state_updates = {}
    if update_state is not None:
      state_key = jax.random.fold_in(jax.random.fold_in(state.key, state.step), STATE_KEY_PURPOSE)
      state_updates, batch_metrics = update_state(state.params, stats, key=state_key,
                                                  step=state.step)
      metrics.update(batch_metrics)
    safe = _safe_to_apply((metrics["loss"], grads))
    ok = safe if active is None else safe & active
    if isinstance(optimizer, optim.SkippableTransformation):
      # The optimizer gates itself: zero updates and an unchanged state when not ok.
      updates, opt_state = optimizer.update(grads, state.opt_state, state.params, apply=ok)
      params = optax.apply_updates(state.params, updates)
    else:
      updates, new_opt_state = optimizer.update(grads, state.opt_state, state.params)
      new_params = optax.apply_updates(state.params, updates)
      params = _keep_if(ok, new_params, state.params)
      opt_state = _keep_if(ok, new_opt_state, state.opt_state)
    return params, opt_state, metrics, safe, state_updates, ok

  def train_step(state: TrainState, batch, example_offset=0, active=None):
    step_fn = phased_step if phased else gradient_step
    params, opt_state, metrics, safe, state_updates, ok = step_fn(state, batch, example_offset,
                                                                  active)
    if state_updates:
      params = {**params, **{name: _keep_if(ok, new, state.params[name])
                             for name, new in state_updates.items()}}
    skipped = 1 - safe.astype(jnp.int32)
    if active is None:
      advanced, consecutive = 1, (state.skipped_consecutive + 1) * skipped
    else:
      advanced = active.astype(jnp.int32)
      skipped = skipped * advanced
      consecutive = jnp.where(active, (state.skipped_consecutive + 1) * skipped,
                              state.skipped_consecutive)
    metrics = dict(metrics, skipped=skipped.astype(jnp.float32))
    return state.replace(
        step=state.step + advanced, params=params, opt_state=opt_state,
        skipped_total=state.skipped_total + skipped,
        skipped_consecutive=consecutive), metrics

  return train_step


def replicate_train_step(make_step: Callable[[Any], Callable], hyperparams: dict, *,
                         max_consecutive_skips: int | None = None):
  """The train step of R independent models over a leading replica axis.

  make_step(hyperparams_r) -> train_step(state, batch, example_offset, active)
  (`make_train_step`'s signature) builds one replica's step from its
  hyperparameters, {name: [] traced scalar}; hyperparams holds [R] arrays.
  Returns step(states, batches, example_offset=0) -> (states, metrics) with
  states, batches and metrics carrying the replica axis: one vmapped program.
  A replica with `max_consecutive_skips` skipped updates in a row is stopped
  (active=False: its state stays as it was) while the others train on.
  """
  def step(states, batches, example_offset=0):
    if max_consecutive_skips is None:
      active = jnp.ones_like(states.skipped_consecutive, bool)
    else:
      active = states.skipped_consecutive < max_consecutive_skips
    one = lambda s, b, h, a: make_step(h)(s, b, example_offset, a)  # noqa: E731
    return jax.vmap(one)(states, batches, hyperparams, active)
  return step


def make_train_chunk(train_step, batch_size: int, *, local_batch_size: int | None = None,
                     device_index: Callable[[], jax.Array] | None = None,
                     max_consecutive_skips: int | None = None,
                     constrain_batch: Callable[[jax.Array], jax.Array] | None = None,
                     replicated: bool = False):
  """chunk(state, data, perm, first_batch, num_steps) -> (state, metric sums).

  Runs up to `num_steps` steps on device; step i trains on the examples
  perm[(first_batch + i) * batch_size :][:batch_size] of `data` (a pytree of
  [N, ...] arrays on device: uint8 images, labels, ...); the caller keeps first_batch + num_steps <= len(perm) // batch_size
  (slices past the end would be clamped by dynamic_slice, not wrapped).
  `num_steps` is a traced scalar and the loop a `lax.while_loop`, so
  every chunk length shares one compile. The loop ends early once
  `max_consecutive_skips` updates in a row were skipped (the run diverged); the
  caller reads how many steps ran from `state.step`. The sums run over steps
  whose update was applied; sums["skipped"] counts the others. Under pmap,
  `device_index` returns this device's index and each device takes its
  `local_batch_size` slice of the global batch. `constrain_batch` (the sharding
  path) annotates each gathered array, e.g. to split it over a device mesh.

  replicated: train_step is `replicate_train_step`'s; state carries a leading
  replica axis R, perm is [R, N] (each replica's own data order), each step
  gathers [R, local batch, ...], and the loop runs while any replica is active.
  """
  local = local_batch_size or batch_size

  def chunk(state, data, perm, first_batch, num_steps):
    offset = 0 if device_index is None else device_index() * local

    def batch_at(i):
      start = (first_batch + i) * batch_size + offset
      if replicated:
        idx = jax.vmap(lambda p: jax.lax.dynamic_slice_in_dim(p, start, local))(perm)
      else:
        idx = jax.lax.dynamic_slice_in_dim(perm, start, local)
      take = lambda leaf: jnp.take(leaf, idx, axis=0)  # noqa: E731
      if constrain_batch is not None:
        take = lambda leaf: constrain_batch(jnp.take(leaf, idx, axis=0))  # noqa: E731
      return jax.tree_util.tree_map(take, data), offset

    metric_shapes = jax.eval_shape(train_step, state, *batch_at(0))[1]
    sums = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), metric_shapes)

    def going(carry):
      i, state, _ = carry
      more = i < num_steps
      if max_consecutive_skips is not None:
        more &= jnp.any(state.skipped_consecutive < max_consecutive_skips)
      return more

    def body(carry):
      i, state, sums = carry
      new_state, metrics = train_step(state, *batch_at(i))
      # A skipped step's metrics are NaN/Inf: add only applied steps' values (a
      # stopped replica's step counter does not move).
      applied = (metrics["skipped"] == 0) & (new_state.step > state.step)
      state = new_state
      metrics = {k: v if k == "skipped" else jnp.where(applied, v, 0.0) for k, v in metrics.items()}
      return i + 1, state, jax.tree_util.tree_map(jnp.add, sums, metrics)

    _, state, sums = jax.lax.while_loop(going, body, (jnp.zeros((), jnp.int32), state, sums))
    return state, sums

  return chunk

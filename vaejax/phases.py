"""Multi-phase updates: several losses, each over its own params groups, applied
one after the other inside ONE compiled train step.

The adversarial autoencoder (Makhzani et al. 2015, Sec. 2) trains each batch in
phases: reconstruction (encoder and decoder), then regularisation, itself two
updates: the discriminator, then the encoder as generator against the freshly
updated discriminator. A model declares its phases (`models.base.Phase`: name,
params groups, per-example objective); `training.make_train_step` runs them when
its optimizer is a `PhasedOptimizer`, so the chunk runner, the non-finite guard,
pmap, sharding, replicas and checkpoints need no per-model code.

Each phase has its own optimizer and optimizer state (its own learning rate, as
in the paper), over its groups only: a phase's gradient is taken with respect to
those groups with every other group held fixed, so it cannot reach parameters it
does not own, and a group trained by two phases (the AAE's encoder) keeps two
Adam states.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import optax

from vaejax import optim

LossFn = Callable[..., tuple[jax.Array, dict[str, jax.Array]]]


class PhasedOptimizer(NamedTuple):
  """((name, groups, transformation), ...) in the order the phases run.

  init(params) -> {name: transformation.init(params restricted to groups)}: the
  train state's opt_state, a pytree that checkpoints like any other.
  """
  phases: tuple[tuple[str, tuple[str, ...], optax.GradientTransformation], ...]

  def init(self, params) -> dict[str, Any]:
    return {name: opt.init(select(params, groups)) for name, groups, opt in self.phases}


def select(params: dict, groups) -> dict:
  """The top-level params groups in `groups`."""
  return {g: params[g] for g in groups}


def phased_update(losses: dict[str, LossFn], optimizer: PhasedOptimizer, params: dict,
                  opt_state: dict, x, *, key: jax.Array, example_offset, step: jax.Array,
                  axis_name: str | None = None):
  """Runs every phase in order on the batch x; returns (params, opt_state,
  metrics, safe).

  losses[name](params, x, *, key, example_offset, step) -> (loss, metrics) is
  phase `name`'s batch loss (`objectives.make_batch_loss` of its objective).
  Phase i draws its noise from fold_in(key, i) and sees the params the phases
  before it produced. With `axis_name`, each phase's gradient and metrics are
  averaged over that axis before its update. metrics: every phase's metrics,
  its "loss" renamed "<name>_loss" except the first phase's, which stays "loss"
  (the model's main objective, e.g. the AAE's reconstruction). safe: [] bool, every
  phase's loss and gradient passed `optim.safe_to_apply`; the caller keeps or
  discards the whole step on it.
  """
  metrics, safe, opt_state = {}, True, dict(opt_state)
  for i, (name, groups, opt) in enumerate(optimizer.phases):
    held = {k: v for k, v in params.items() if k not in groups}

    def loss_of(trained, i=i, name=name, held=held):
      return losses[name]({**held, **trained}, x, key=jax.random.fold_in(key, i),
                          example_offset=example_offset, step=step)

    trained = select(params, groups)
    (loss, phase_metrics), grads = jax.value_and_grad(loss_of, has_aux=True)(trained)
    phase_metrics = dict(phase_metrics)
    if axis_name is not None:
      grads, phase_metrics = jax.lax.pmean((grads, phase_metrics), axis_name)
    safe = safe & optim.safe_to_apply((phase_metrics["loss"], grads))
    updates, opt_state[name] = opt.update(grads, opt_state[name], trained)
    params = {**params, **optax.apply_updates(trained, updates)}
    phase_loss = phase_metrics.pop("loss")
    metrics.update(phase_metrics)
    metrics["loss" if i == 0 else f"{name}_loss"] = phase_loss
  return params, opt_state, metrics, safe

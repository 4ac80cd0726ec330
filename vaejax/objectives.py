"""Objectives, written for ONE example and vmapped over the batch late.

`sample_terms` draws K reparameterised samples z_k ~ q(z|x) and returns the
per-sample terms log p(x|z_k), log q(z_k|x), log p(z_k) ([K] each) plus the
closed-form KL, for any model following `vaejax.models.base.LatentVariableModel`.
The bounds below reduce those terms; `make_kl_penalty` gives the KL term of
beta-VAE variants (warm-up, capacity control, free bits); `make_batch_loss`
vmaps a per-example estimator (`vaejax.estimators`) over a batch of example
pytrees and averages (the only reduction over examples). Bounds are
maximised; losses are negatives.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from vaejax import distributions
from vaejax.models import LatentVariableModel, Params
from vaejax.models.base import BATCH, STATS

Metrics = dict[str, jax.Array]
PerExampleObjective = Callable[..., tuple[jax.Array, Metrics]]


class ElboTerms(NamedTuple):
  log_px_z: jax.Array  # [K]
  log_qz_x: jax.Array  # [K]
  log_pz: jax.Array    # [K]
  kl: jax.Array        # [] closed-form KL(q(z|x) || p(z))


def draw(q: distributions.DiagGaussian, *, key: jax.Array, num_samples: int) -> jax.Array:
  """K reparameterised samples z_k = mu + sigma * eps_k: [K, D]."""
  return jax.vmap(lambda k: q.sample(key=k))(jax.random.split(key, num_samples))


def log_terms(model: LatentVariableModel, params: Params, x, z: jax.Array,
              q: distributions.DiagGaussian) -> tuple[jax.Array, jax.Array, jax.Array]:
  """log p(x|z_k), log q(z_k|x), log p(z_k) for one example and z [K, D]: [K] each.

  `q` is passed in so that estimators can evaluate log q with their own
  stop-gradients (on z, or on the variational parameters).
  """
  log_px_z = over_samples(lambda z_k: model.log_likelihood(params, x, z_k), z)
  log_pz = over_samples(lambda z_k: model.log_prior(params, x, z_k), z)
  return log_px_z, over_samples(q.log_prob, z), log_pz


def over_samples(fn: Callable[[jax.Array], jax.Array], z: jax.Array) -> jax.Array:
  """[fn(z_k) for each k], stacked, for z [K, ...] and fn returning an array: vmap,
  except that K = 1 calls fn once.

  Same values either way. The single-sample case matters for speed: under the
  batch vmap a unit sample axis gives each decoder weight-gradient matmul two
  contracting axes (batch and sample), which XLA:CPU lays out with a transpose
  copy per layer (benchmarks/NOTES.md).
  """
  if z.shape[0] == 1:
    return jnp.expand_dims(fn(z[0]), 0)
  return jax.vmap(fn)(z)


def sample_terms(model: LatentVariableModel, params: Params, x, *, key: jax.Array,
                 num_samples: int = 1) -> ElboTerms:
  """K-sample terms for one example x (a pytree), all differentiable (pathwise)."""
  q = model.posterior(params, x)
  z = draw(q, key=key, num_samples=num_samples)
  log_px_z, log_qz_x, log_pz = log_terms(model, params, x, z, q)
  return ElboTerms(log_px_z, log_qz_x, log_pz, kl_term(model, params, x, q, log_qz_x, log_pz))


def has_closed_form_kl(model: LatentVariableModel) -> bool:
  """Whether model.kl_per_dim gives KL(q(z|x) || p(z)) in closed form (a hierarchical
  VAE's does not)."""
  return getattr(model, "has_closed_form_kl", True)


def has_conditional_kl(model: LatentVariableModel) -> bool:
  """Whether the model gives the KL per unit in closed form given a draw z of the
  layers above (`conditional_kl_per_dim`: a top-down hierarchical q, the ladder VAE)."""
  return hasattr(model, "conditional_kl_per_dim")


def analytic_kl_per_dim(model: LatentVariableModel, params: Params, x, q,
                        z: jax.Array) -> jax.Array:
  """The KL per latent unit in closed form: model.kl_per_dim(q), or for a top-down
  hierarchical q the mean over the K draws z [K, D] of model.conditional_kl_per_dim
  (unbiased, and differentiable through the draws): [D] nats. Raises ValueError for
  a model with neither."""
  if has_closed_form_kl(model):
    return model.kl_per_dim(params, x, q)
  if has_conditional_kl(model):
    return jnp.mean(over_samples(lambda z_k: model.conditional_kl_per_dim(params, x, z_k), z),
                    axis=0)
  raise ValueError(f"{type(model).__name__} has no closed-form KL: use analytic_kl=False "
                   f"(the Monte-Carlo KL)")


def kl_term(model: LatentVariableModel, params: Params, x, q, log_qz_x: jax.Array,
            log_pz: jax.Array, kl_per_dim: jax.Array | None = None) -> jax.Array:
  """KL(q(z|x) || p(z)): the sum of `kl_per_dim` when given, closed-form when the model
  has it, else the Monte-Carlo estimate mean_k (log q(z_k|x) - log p(z_k)) from the K
  samples' terms: []."""
  if kl_per_dim is not None:
    return jnp.sum(kl_per_dim)
  if has_closed_form_kl(model):
    return jnp.sum(model.kl_per_dim(params, x, q))
  return jnp.mean(log_qz_x - log_pz)


def elbo_bound(terms: ElboTerms, *, beta: float = 1.0, analytic_kl: bool = True) -> jax.Array:
  """(beta-)ELBO: mean_k log p(x|z_k) - beta * KL, KL closed-form or Monte Carlo."""
  if analytic_kl:
    kl = terms.kl
  else:
    kl = jnp.mean(terms.log_qz_x - terms.log_pz)
  return jnp.mean(terms.log_px_z) - beta * kl


def log_mean_exp(log_w: jax.Array) -> jax.Array:
  """log (1/K) sum_k exp(log_w_k) for log_w [K], computed stably."""
  return jax.nn.logsumexp(log_w) - math.log(log_w.shape[0])


def iwae_bound(terms: ElboTerms) -> jax.Array:
  """log (1/K) sum_k p(x, z_k) / q(z_k|x): equals the ELBO (Monte-Carlo KL) at K = 1."""
  return log_mean_exp(terms.log_px_z + terms.log_pz - terms.log_qz_x)


def example_keys(key: jax.Array, num_examples: int, offset: jax.Array | int = 0) -> jax.Array:
  """Per-example keys fold_in(key, global index): the same noise for example i
  however the global batch is split over devices."""
  idx = jnp.arange(num_examples, dtype=jnp.uint32) + jnp.asarray(offset, jnp.uint32)
  return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, idx)


def batch_size_of(batch) -> int:
  """The leading (example) axis of a batch pytree."""
  return jax.tree_util.tree_leaves(batch)[0].shape[0]


class KLPenalty(NamedTuple):
  """The KL term an ELBO subtracts, as a function of the training step.

  penalty(kl_per_dim [D], step) -> [] (closed-form KL per latent dimension);
  weight(step) -> [] the beta multiplying a Monte-Carlo KL (warm-up only);
  needs_closed_form: True for free bits and capacity, which a Monte-Carlo KL cannot serve.
  """
  penalty: Callable[[jax.Array, jax.Array], jax.Array]
  weight: Callable[[jax.Array], jax.Array]
  needs_closed_form: bool = False


WARMUP_SHAPES = ("linear", "sigmoid")
# The sigmoid warm-up's steepness: the logistic runs over [-6, 6] on the warm-up.
_SIGMOID_SPAN = 6.0


def make_kl_penalty(*, beta: float = 1.0, warmup_steps: int = 0, free_bits: float = 0.0,
                    capacity_max: float = 0.0, capacity_steps: int = 0,
                    capacity_gamma: float = 1000.0, warmup_shape: str = "linear") -> KLPenalty:
  """The KL term of the (beta-)ELBO and its training-time variants, per example:

    plain      beta * KL
    warm-up    beta(t) * KL, beta(t) = beta * r(t / warmup_steps), annealed from 0
               to beta (Bowman et al. 2016; Sonderby et al. 2016): r(u) = min(1, u)
               ('linear'), or ('sigmoid', Bowman et al.'s logistic schedule) the
               logistic s(12 u - 6) rescaled to run exactly from 0 at u = 0 to 1 at
               u >= 1
    free bits  beta(t) * sum_d max(KL_d, free_bits): a dimension below its floor of
               `free_bits` nats gets no KL gradient (Kingma et al. 2016, who floor
               the minibatch-mean KL; here each example's, the per-example form)
    capacity   capacity_gamma * |KL - C(t)|, C(t) = capacity_max * min(1, t /
               capacity_steps) nats (Burgess et al. 2018); replaces beta

  Raises ValueError for negative settings, capacity combined with free bits, or an
  unknown warmup_shape.
  beta and warmup_steps may be traced scalars (a replicated run's per-replica
  values, `training.replicate_train_step`); the other settings are static.
  """
  static = [v for v in (beta, warmup_steps) if not isinstance(v, jax.Array)]
  if min(static + [free_bits, capacity_max, capacity_steps, capacity_gamma]) < 0:
    raise ValueError("KL penalty settings must be >= 0")
  if capacity_max > 0 and free_bits > 0:
    raise ValueError("capacity control and free bits are alternatives; set one of them")
  if warmup_shape not in WARMUP_SHAPES:
    raise ValueError(f"unknown warmup_shape {warmup_shape!r}; valid: {list(WARMUP_SHAPES)}")

  def ramp(step, steps):
    if isinstance(steps, jax.Array):  # traced: 0 means no warm-up, as below
      fraction = jnp.asarray(step, jnp.float32) / jnp.maximum(steps, 1).astype(jnp.float32)
      return jnp.where(steps > 0, jnp.minimum(1.0, fraction), 1.0)
    return jnp.minimum(1.0, jnp.asarray(step, jnp.float32) / steps) if steps else 1.0

  def sigmoid(fraction):
    low, high = jax.nn.sigmoid(-_SIGMOID_SPAN), jax.nn.sigmoid(_SIGMOID_SPAN)
    return (jax.nn.sigmoid(_SIGMOID_SPAN * (2.0 * fraction - 1.0)) - low) / (high - low)

  def weight(step):
    if isinstance(warmup_steps, jax.Array) or warmup_steps:
      fraction = ramp(step, warmup_steps)
      return beta * (sigmoid(fraction) if warmup_shape == "sigmoid" else fraction)
    return beta

  def penalty(kl_per_dim, step):
    if capacity_max > 0:
      capacity = capacity_max * ramp(step, capacity_steps)
      return capacity_gamma * jnp.abs(jnp.sum(kl_per_dim) - capacity)
    if free_bits > 0:
      kl_per_dim = jnp.maximum(kl_per_dim, free_bits)
    return weight(step) * jnp.sum(kl_per_dim)

  return KLPenalty(penalty, weight, bool(free_bits > 0 or capacity_max > 0))


def make_batch_loss(model: LatentVariableModel, per_example: PerExampleObjective, *,
                    axis_name: str | None = None):
  """loss(params, batch, *, key, example_offset=0, step=0) -> (-mean surrogate, mean metrics).

  per_example(model, params, x, *, key, step) -> (surrogate, metrics) is an
  estimator (`vaejax.estimators`); the gradient of the returned loss is minus
  its batch mean. batch: a pytree of [B, ...] arrays (an image batch
  [B, H, W, C] float in [0, 1], or {"image": ..., "label": [B]}). The estimator
  is vmapped over examples; the mean over the batch is the one reduction.
  metrics["loss"] is minus the objective itself, whatever the surrogate.
  `step` drives KL schedules (warm-up, capacity). Statistics under STATS stay
  per example ([B, ...]): the model's update_state reduces them.

  Outputs under BATCH go to model.batch_objective (models.base), whose
  surrogate is added to the mean and whose value to metrics["loss"] (negated).
  Under pmap (`axis_name`) they are first all-gathered into the global batch,
  so every device computes the same batch term; the all-gather's transpose sums
  each device's cotangent, so after the train step's pmean the gradient is the
  single-device one.
  """
  def one(params, x, key, step):
    return per_example(model, params, x, key=key, step=step)

  def loss(params: Params, batch, *, key: jax.Array, example_offset=0, step=0):
    keys = example_keys(key, batch_size_of(batch), example_offset)
    surrogate, metrics = jax.vmap(one, in_axes=(None, 0, 0, None))(params, batch, keys, step)
    stats = metrics.pop(STATS, None)
    outputs = metrics.pop(BATCH, None)
    metrics = jax.tree_util.tree_map(jnp.mean, metrics)
    if stats is not None:
      metrics[STATS] = stats
    surrogate = jnp.mean(surrogate)
    if outputs is not None:
      if axis_name is not None:
        outputs = jax.lax.all_gather(outputs, axis_name, tiled=True)
      batch_surrogate, batch_metrics = model.batch_objective(params, outputs, step=step)
      surrogate = surrogate + batch_surrogate
      metrics.update(batch_metrics, loss=metrics["loss"] - batch_surrogate)
    return -surrogate, metrics

  return loss

"""Objectives, written for ONE example and vmapped over the batch late.

`sample_terms` draws K reparameterised samples z_k ~ q(z|x) and returns the
per-sample terms log p(x|z_k), log q(z_k|x), log p(z_k) ([K] each) plus the
closed-form KL. The bounds below reduce those terms; `make_batch_loss` vmaps
a per-example estimator (`vaejax.estimators`) over a batch and averages (the
only reduction over examples). Bounds are maximised; losses are negatives.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from vaejax import distributions
from vaejax.models import VAE, Params

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


def log_terms(model: VAE, params: Params, x: jax.Array, z: jax.Array,
              q: distributions.DiagGaussian) -> tuple[jax.Array, jax.Array, jax.Array]:
  """log p(x|z_k), log q(z_k|x), log p(z_k) for one example and z [K, D]: [K] each.

  `q` is passed in so that estimators can evaluate log q with their own
  stop-gradients (on z, or on the variational parameters).
  """
  log_px_z = over_samples(lambda z_k: model.log_likelihood(params, x, z_k), z)
  return log_px_z, over_samples(q.log_prob, z), over_samples(model.prior().log_prob, z)


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


def sample_terms(model: VAE, params: Params, x: jax.Array, *, key: jax.Array,
                 num_samples: int = 1) -> ElboTerms:
  """K-sample terms for one example x [H, W, C], all differentiable (pathwise)."""
  q = model.posterior(params, x)
  z = draw(q, key=key, num_samples=num_samples)
  return ElboTerms(*log_terms(model, params, x, z, q), kl=q.kl_to_standard_normal())


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


def make_batch_loss(model: VAE, per_example: PerExampleObjective):
  """loss(params, batch, *, key, example_offset=0) -> (-mean surrogate, mean metrics).

  per_example(model, params, x, *, key) -> (surrogate, metrics) is an estimator
  (`vaejax.estimators`); the gradient of the returned loss is minus its batch
  mean. batch: [B, H, W, C] float in [0, 1]. The estimator is vmapped over
  examples; the mean over the batch is the one reduction. metrics["loss"] is
  minus the bound itself, whatever the surrogate.
  """
  def one(params, x, key):
    return per_example(model, params, x, key=key)

  def loss(params: Params, batch: jax.Array, *, key: jax.Array, example_offset=0):
    keys = example_keys(key, batch.shape[0], example_offset)
    surrogate, metrics = jax.vmap(one, in_axes=(None, 0, 0))(params, batch, keys)
    return -jnp.mean(surrogate), jax.tree_util.tree_map(jnp.mean, metrics)

  return loss

"""Objectives, written for ONE example and vmapped over the batch late.

`sample_terms` draws K reparameterised samples z_k ~ q(z|x) and returns the
per-sample terms log p(x|z_k), log q(z_k|x), log p(z_k) ([K] each) plus the
closed-form KL. The bounds below reduce those terms; `make_batch_loss` vmaps
a per-example objective over a batch and averages (the only reduction over
examples). Every objective is maximised; losses are their negatives.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from vaejax import distributions
from vaejax.models import VAE, Params

OBJECTIVES = ("elbo", "iwae", "ae")
ESTIMATORS = ("pathwise", "stl")
Metrics = dict[str, jax.Array]
PerExampleObjective = Callable[..., tuple[jax.Array, Metrics]]


class ElboTerms(NamedTuple):
  log_px_z: jax.Array  # [K]
  log_qz_x: jax.Array  # [K]
  log_pz: jax.Array    # [K]
  kl: jax.Array        # [] closed-form KL(q(z|x) || p(z))


def sample_terms(model: VAE, params: Params, x: jax.Array, *, key: jax.Array,
                 num_samples: int = 1, stop_grad_q: bool = False) -> ElboTerms:
  """K-sample terms for one example x [H, W, C].

  stop_grad_q: evaluate log q(z|x) with the variational parameters held fixed
    (the "sticking the landing" estimator): the pathwise dependence through z
    stays, the score term, zero in expectation, is dropped.
  """
  q = model.posterior(params, x)
  z = jax.vmap(lambda k: q.sample(key=k))(jax.random.split(key, num_samples))  # [K, D]
  q_for_density = jax.tree_util.tree_map(jax.lax.stop_gradient, q) if stop_grad_q else q
  log_px_z = jax.vmap(model.log_likelihood, in_axes=(None, None, 0))(params, x, z)
  return ElboTerms(log_px_z=log_px_z,
                   log_qz_x=jax.vmap(q_for_density.log_prob)(z),
                   log_pz=jax.vmap(model.prior().log_prob)(z),
                   kl=q.kl_to_standard_normal())


def elbo_bound(terms: ElboTerms, *, beta: float = 1.0, analytic_kl: bool = True) -> jax.Array:
  """(beta-)ELBO: mean_k log p(x|z_k) - beta * KL, KL closed-form or Monte Carlo."""
  if analytic_kl:
    kl = terms.kl
  else:
    kl = jnp.mean(terms.log_qz_x - terms.log_pz)
  return jnp.mean(terms.log_px_z) - beta * kl


def iwae_bound(terms: ElboTerms) -> jax.Array:
  """log (1/K) sum_k p(x, z_k) / q(z_k|x): equals the ELBO (Monte-Carlo KL) at K = 1."""
  log_w = terms.log_px_z + terms.log_pz - terms.log_qz_x
  return jax.nn.logsumexp(log_w) - math.log(log_w.shape[0])


def make_objective(name: str, *, beta: float = 1.0, num_samples: int = 1,
                   analytic_kl: bool = True, estimator: str = "pathwise") -> PerExampleObjective:
  """Returns objective(model, params, x, *, key) -> (value to maximise, metrics).

  name: 'elbo' (beta-weighted), 'iwae' (K-sample bound) or 'ae' (deterministic
  autoencoder: z = posterior mean, value log p(x|z)). estimator: 'pathwise'
  (reparameterisation) or 'stl' (sticking the landing; forces a Monte-Carlo KL).
  Metrics are per-example scalars in nats.
  """
  if name not in OBJECTIVES:
    raise ValueError(f"unknown objective {name!r}; valid: {list(OBJECTIVES)}")
  if estimator not in ESTIMATORS:
    raise ValueError(f"unknown estimator {estimator!r}; valid: {list(ESTIMATORS)}")
  stl = estimator == "stl"

  def objective(model: VAE, params: Params, x: jax.Array, *, key: jax.Array):
    if name == "ae":
      recon = -model.log_likelihood(params, x, model.posterior(params, x).mean)
      return -recon, {"loss": recon, "recon": recon}
    terms = sample_terms(model, params, x, key=key, num_samples=num_samples, stop_grad_q=stl)
    # Reported metrics use the analytic KL and beta = 1 so runs compare in nats.
    recon = -jnp.mean(terms.log_px_z)
    metrics = {"recon": recon, "kl": terms.kl, "neg_elbo": recon + terms.kl}
    if name == "elbo":
      value = elbo_bound(terms, beta=beta, analytic_kl=analytic_kl and not stl)
    else:
      value = iwae_bound(terms)
      metrics["neg_iwae"] = -value
    metrics["loss"] = -value
    return value, metrics

  return objective


def example_keys(key: jax.Array, num_examples: int, offset: jax.Array | int = 0) -> jax.Array:
  """Per-example keys fold_in(key, global index): the same noise for example i
  however the global batch is split over devices."""
  idx = jnp.arange(num_examples, dtype=jnp.uint32) + jnp.asarray(offset, jnp.uint32)
  return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, idx)


def make_batch_loss(model: VAE, objective: PerExampleObjective):
  """loss(params, batch, *, key, example_offset=0) -> (mean loss, mean metrics).

  batch: [B, H, W, C] float in [0, 1]. The objective is vmapped over examples;
  the mean over the batch is the one reduction.
  """
  def per_example(params, x, key):
    return objective(model, params, x, key=key)

  def loss(params: Params, batch: jax.Array, *, key: jax.Array, example_offset=0):
    keys = example_keys(key, batch.shape[0], example_offset)
    _, metrics = jax.vmap(per_example, in_axes=(None, 0, 0))(params, batch, keys)
    metrics = jax.tree_util.tree_map(jnp.mean, metrics)
    return metrics["loss"], metrics

  return loss

"""Evaluation of trained models over whole data sets kept on device.

`evaluate_dataset` averages any estimator's metrics (ELBO, IWAE-K) over a data
set; `importance_log_likelihood` estimates log p(x) per example with k
importance samples from q(z|x) (k = 5000 is the literature's standard), in
chunks of samples so memory stays bounded; `latent_statistics` gives the
active units (Burda et al. 2015) and the KL per latent dimension.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from vaejax.models import LatentVariableModel, Params
from vaejax.objectives import (BATCH, STATS, Metrics, PerExampleObjective, batch_size_of,
                               example_keys, has_closed_form_kl, log_terms)


@functools.partial(jax.jit, static_argnames=("model", "objective", "batch_size"))
def evaluate_dataset(model: LatentVariableModel, objective: PerExampleObjective, params: Params,
                     images, *, key: jax.Array, batch_size: int) -> Metrics:
  """Mean per-example metrics over a whole data set kept on device.

  images: the data set's examples, [N, H, W, C] float in [0, 1] or a pytree of
  [N, ...] arrays ({"image": ..., "label": ...}). Runs `lax.map` over
  fixed-size chunks (padded, padding masked out) so memory stays bounded and
  one compile serves.
  """
  n = batch_size_of(images)
  chunks, valid = _padded_batches(images, batch_size)
  keys = example_keys(key, valid.shape[0]).reshape(valid_shape(chunks) + (-1,))

  def chunk_metrics(args):
    xs, ks = args
    _, m = jax.vmap(lambda x, k: objective(model, params, x, key=k))(xs, ks)
    m.pop(STATS, None)  # a model's training statistics, not metrics
    m.pop(BATCH, None)  # a batch term's inputs: whole-split metrics come from dataset_metrics
    return m

  per_example = jax.lax.map(chunk_metrics, (chunks, keys))
  return jax.tree_util.tree_map(
      lambda m: jnp.sum(jnp.where(valid, m.reshape(-1), 0.0)) / n, per_example)


def _padded_batches(examples, batch_size: int):
  """Pytree of [N, ...] -> (pytree of [num_batches, batch_size, ...] zero-padded,
  validity mask [num_batches * batch_size])."""
  n = batch_size_of(examples)
  num_batches = -(-n // batch_size)
  pad = num_batches * batch_size - n

  def pad_leaf(a):
    a = jnp.asarray(a)
    padded = jnp.concatenate([a, jnp.zeros((pad,) + a.shape[1:], a.dtype)])
    return padded.reshape((num_batches, batch_size) + a.shape[1:])

  return jax.tree_util.tree_map(pad_leaf, examples), jnp.arange(num_batches * batch_size) < n


@functools.partial(jax.jit, static_argnames=("model", "num_samples", "chunk_size", "batch_size"))
def importance_log_likelihood(model: LatentVariableModel, params: Params, images, *,
                              key: jax.Array, num_samples: int = 5000, chunk_size: int = 500,
                              batch_size: int = 100) -> jax.Array:
  """log p(x) ~= log (1/k) sum_i p(x, z_i) / q(z_i|x), z_i ~ q(z|x): [N] nats.

  For a conditional model this is log p(x|c) (a CVAE on quadrants: the
  log-likelihood of the missing pixels given the observed ones). images: [N,
  H, W, C] float in [0, 1], or a pytree of examples. Sample i of example n uses the key
  fold_in(fold_in(key, n), i), so the estimate does not depend on chunk_size
  or batch_size; a running logsumexp over chunks of `chunk_size` samples keeps
  memory at batch_size * chunk_size decoder outputs.
  """
  if num_samples % chunk_size:
    raise ValueError(f"num_samples={num_samples} must be a multiple of chunk_size={chunk_size}")
  batches, valid = _padded_batches(images, batch_size)
  keys = example_keys(key, valid.shape[0]).reshape(valid_shape(batches) + (-1,))

  def one_example(x, example_key):
    q = model.posterior(params, x)

    def add_chunk(running, start):
      sample_keys = example_keys(example_key, chunk_size, start)
      z = jax.vmap(lambda k: q.sample(key=k))(sample_keys)
      log_px_z, log_qz, log_pz = log_terms(model, params, x, z, q)
      return jnp.logaddexp(running, jax.nn.logsumexp(log_px_z + log_pz - log_qz)), None

    starts = jnp.arange(0, num_samples, chunk_size, dtype=jnp.uint32)
    total, _ = jax.lax.scan(add_chunk, jnp.float32(-jnp.inf), starts)
    return total - math.log(num_samples)

  per_batch = jax.lax.map(lambda args: jax.vmap(one_example)(*args), (batches, keys))
  return per_batch.reshape(-1)[: batch_size_of(images)]


def valid_shape(batches) -> tuple[int, int]:
  """(num_batches, batch_size) of a padded batch pytree."""
  return jax.tree_util.tree_leaves(batches)[0].shape[:2]


@functools.partial(jax.jit, static_argnames=("model", "batch_size"))
def latent_statistics(model: LatentVariableModel, params: Params, images, *,
                      batch_size: int = 500) -> dict[str, jax.Array]:
  """Posterior statistics over a data set.

  Returns activity [latent_dim] (Cov_x(E_q[z_u]), Burda et al.'s criterion:
  unit u is active when it exceeds 0.01; for a hierarchical posterior E_q is
  taken along the mean path), kl_per_dim [latent_dim] (mean over x of
  KL(q(z_u|x) || p(z_u)); only for models with a closed-form KL) and
  posterior_means [N, latent_dim].
  """
  batches, valid = _padded_batches(images, batch_size)
  closed_form = has_closed_form_kl(model)

  def stats(x):
    q = model.posterior(params, x)
    return q.mean, (model.kl_per_dim(params, x, q) if closed_form else jnp.zeros(()))

  means, kls = jax.lax.map(jax.vmap(stats), batches)
  n = batch_size_of(images)
  means = means.reshape(-1, means.shape[-1])[:n]
  out = {"activity": jnp.var(means, axis=0), "posterior_means": means}
  if closed_form:  # a hierarchical posterior has no per-dimension closed-form KL
    out["kl_per_dim"] = jnp.mean(kls.reshape(-1, kls.shape[-1])[:n], axis=0)
  return out


@functools.partial(jax.jit, static_argnames=("model", "batch_size"))
def layer_statistics(model: LatentVariableModel, params: Params, images, *, key: jax.Array,
                     batch_size: int = 500) -> dict[str, jax.Array]:
  """Per stochastic layer of a hierarchical model (one with `latent_dims` and
  `layer_kls`): kl [L] nats, the mean over x of one draw z ~ q(z|x) of
  log q(z_l | z_{l-1}) - log p(z_l | z_{l+1}) (they sum to the Monte-Carlo KL),
  and active_units [L], the units of each layer whose Cov_x(E_q[z_u]) > 0.01
  (Burda et al.; E_q along the mean path)."""
  batches, valid = _padded_batches(images, batch_size)
  keys = example_keys(key, valid.shape[0]).reshape(valid_shape(batches) + (-1,))

  def stats(x, k):
    q = model.posterior(params, x)
    return q.mean, model.layer_kls(params, x, q.sample(key=k))

  means, kls = jax.lax.map(lambda args: jax.vmap(stats)(*args), (batches, keys))
  n = batch_size_of(images)
  means = means.reshape(-1, means.shape[-1])[:n]
  kls = kls.reshape(-1, kls.shape[-1])[:n]
  active = (jnp.var(means, axis=0) > 0.01).astype(jnp.int32)
  bounds = [0, *np.cumsum(model.latent_dims).tolist()]
  return {"kl": jnp.mean(kls, axis=0),
          "active_units": jnp.stack([jnp.sum(active[a:b]) for a, b in zip(bounds, bounds[1:])])}


def parzen_log_likelihood(samples: jax.Array, data: jax.Array, sigmas, *,
                          batch_size: int = 500) -> jax.Array:
  """Parzen-window (Gaussian kernel density) log-likelihood of each data point
  under a model's samples, for each bandwidth (Breuleux et al. 2011; the GAN and
  AAE papers' MNIST number): log (1/S) sum_s N(x; samples_s, sigma^2 I).

  samples [S, D], data [N, D] (N divisible by batch_size, or N <= batch_size),
  sigmas [M] -> [M, N] nats. The squared distances are computed once per data
  batch for every sigma. A weak measure in high dimension (Theis et al. 2016):
  it rewards blurry samples and ranks models unlike their true likelihood.
  """
  samples, data = jnp.asarray(samples, jnp.float32), jnp.asarray(data, jnp.float32)
  sigmas = jnp.asarray(sigmas, jnp.float32)
  num, dim = data.shape
  batch_size = min(batch_size, num)
  if num % batch_size:
    raise ValueError(f"{num} data points do not split into batches of {batch_size}")
  sample_sq = jnp.sum(jnp.square(samples), -1)

  @jax.jit
  def batch(x):
    cross = jnp.matmul(x, samples.T, precision=jax.lax.Precision.HIGHEST)  # not TF32 on GPU
    sq = jnp.maximum(jnp.sum(x * x, -1)[:, None] + sample_sq[None, :] - 2.0 * cross, 0.0)
    log_kernel = -sq[None] / (2.0 * jnp.square(sigmas)[:, None, None])  # [M, B, S]
    return (jax.nn.logsumexp(log_kernel, axis=-1) - math.log(samples.shape[0])
            - 0.5 * dim * jnp.log(2.0 * math.pi * jnp.square(sigmas))[:, None])

  return jnp.concatenate([batch(x) for x in data.reshape(-1, batch_size, dim)], axis=1)


@functools.partial(jax.jit, static_argnames=("model", "batch_size"))
def collapse_metrics(model: LatentVariableModel, params: Params, images, *, key: jax.Array,
                     batch_size: int = 500) -> dict[str, jax.Array]:
  """Signs of posterior collapse over a data set, for a diagonal-Gaussian q(z|x):

  active_units: the units u with Cov_x(E_q[z_u]) > 0.01 (Burda et al. 2015);
  mutual_information: I(x; z) in nats under the encoder's joint q(x, z) =
    p_data(x) q(z|x), E_x E_q[log q(z|x) - log q(z)] with the aggregate posterior
    q(z) = (1/N) sum_n q(z|x_n) over the N examples, one z per example (Hoffman &
    Johnson 2016; He et al. 2019 compute it so). It lies in [0, log N] up to the
    Monte-Carlo error; 0 when q(z|x) ignores x.
  kl: E_x KL(q(z|x) || N(0, I)) in nats, which bounds the mutual information above.
  """
  batches, valid = _padded_batches(images, batch_size)
  n = batch_size_of(images)
  def moments(x):
    q = model.posterior(params, x)  # once: for a sequence model it is a whole RNN pass
    return q.mean, q.log_var

  means, log_vars = jax.lax.map(jax.vmap(moments), batches)
  means = means.reshape(-1, means.shape[-1])[:n]
  log_vars = log_vars.reshape(-1, log_vars.shape[-1])[:n]
  z = means + jnp.exp(0.5 * log_vars) * jax.random.normal(key, means.shape)

  def log_q(z_row):  # log q(z_row | x_m) for every m: [N]
    return jnp.sum(-0.5 * (jnp.square(z_row - means) * jnp.exp(-log_vars) + log_vars
                           + math.log(2.0 * math.pi)), axis=-1)

  def per_example(args):
    z_row, index = args
    log_qs = log_q(z_row)
    return log_qs[index] - (jax.nn.logsumexp(log_qs) - math.log(n))

  information = jax.lax.map(per_example, (z, jnp.arange(n)), batch_size=batch_size)
  kl = 0.5 * jnp.sum(jnp.square(means) + jnp.exp(log_vars) - 1.0 - log_vars, axis=-1)
  return {"active_units": jnp.sum(jnp.var(means, axis=0) > 0.01),
          "mutual_information": jnp.mean(information), "kl": jnp.mean(kl)}

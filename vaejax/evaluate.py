"""Evaluation of trained models over whole data sets kept on device."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from vaejax.models import VAE, Params
from vaejax.objectives import Metrics, PerExampleObjective, example_keys


@functools.partial(jax.jit, static_argnames=("model", "objective", "batch_size"))
def evaluate_dataset(model: VAE, objective: PerExampleObjective, params: Params,
                     images: jax.Array, *, key: jax.Array, batch_size: int) -> Metrics:
  """Mean per-example metrics over a whole data set kept on device.

  images: [N, H, W, C] float in [0, 1]. Runs `lax.map` over fixed-size chunks
  (padded, padding masked out) so memory stays bounded and one compile serves.
  """
  n = images.shape[0]
  num_chunks = -(-n // batch_size)
  pad = num_chunks * batch_size - n
  padded = jnp.concatenate([images, jnp.zeros((pad,) + images.shape[1:], images.dtype)])
  chunks = padded.reshape((num_chunks, batch_size) + images.shape[1:])
  keys = example_keys(key, num_chunks * batch_size).reshape(num_chunks, batch_size, -1)

  def chunk_metrics(args):
    xs, ks = args
    _, m = jax.vmap(lambda x, k: objective(model, params, x, key=k))(xs, ks)
    return m

  per_example = jax.lax.map(chunk_metrics, (chunks, keys))
  valid = (jnp.arange(num_chunks * batch_size) < n).astype(jnp.float32)
  return jax.tree_util.tree_map(
      lambda m: jnp.sum(m.reshape(-1) * valid) / n, per_example)

"""Gradient-estimator diagnostics at fixed params: variance, SNR and bias.

`gradient_statistics` draws `num_draws` independent gradient estimates (one
key each) in a single jitted call, scanning over blocks of draws vmapped
together, and keeps running sums (shifted by a reference to keep float32 sums
accurate) instead of the draws themselves, so memory stays at a few gradients.
Per parameter group (top-level keys of params, e.g. encoder / decoder) it
reports, averaged over that group's coordinates:

  variance   Var[g_i]
  snr        |E[g_i]| / std[g_i]             (Rainforth et al. 2018)
  bias_l2    || E[g] - reference ||_2        (when a reference is given)
  t_rms      sqrt(mean_i t_i^2), t_i = (E[g_i] - ref_i) / (std[g_i] / sqrt(N));
             about 1 for an unbiased estimator, growing like sqrt(N) otherwise.
"""
from __future__ import annotations

import functools
from typing import Callable, Optional

import jax
import jax.numpy as jnp

GradFn = Callable[..., object]  # grad_fn(params, *, key) -> gradient pytree


@functools.partial(jax.jit, static_argnames=("grad_fn", "num_draws", "block"))
def gradient_moments(grad_fn: GradFn, params, *, key: jax.Array, num_draws: int,
                     shift=None, block: int = 16):
  """(mean, variance) pytrees of `num_draws` gradient estimates at `params`.

  shift: a pytree near the mean (default: one extra draw), subtracted before
  summing so that float32 sums of squares keep their precision.
  """
  if num_draws % block:
    raise ValueError(f"num_draws={num_draws} must be a multiple of block={block}")
  keys = jax.random.split(key, num_draws + 1)
  if shift is None:
    shift = grad_fn(params, key=keys[-1])
  draw = jax.vmap(lambda k: grad_fn(params, key=k))

  def accumulate(sums, block_keys):
    d = jax.tree_util.tree_map(lambda g, s: g - s, draw(block_keys), shift)
    s1, s2 = sums
    return (jax.tree_util.tree_map(lambda a, x: a + jnp.sum(x, 0), s1, d),
            jax.tree_util.tree_map(lambda a, x: a + jnp.sum(x * x, 0), s2, d)), None

  zeros = jax.tree_util.tree_map(jnp.zeros_like, shift)
  (s1, s2), _ = jax.lax.scan(accumulate, (zeros, zeros),
                             keys[:-1].reshape((num_draws // block, block) + keys.shape[1:]))
  n = num_draws
  mean = jax.tree_util.tree_map(lambda a, s: s + a / n, s1, shift)
  var = jax.tree_util.tree_map(lambda a, b: jnp.maximum(b / n - (a / n) ** 2, 0.0) * n / (n - 1),
                               s1, s2)
  return mean, var


def gradient_statistics(grad_fn: GradFn, params, *, key: jax.Array, num_draws: int,
                        reference=None, groups: Optional[tuple[str, ...]] = None,
                        block: int = 16) -> dict[str, dict[str, float]]:
  """Per-group variance, SNR and (with `reference`) bias of an estimator; see module doc."""
  mean, var = gradient_moments(grad_fn, params, key=key, num_draws=num_draws,
                               shift=reference, block=block)
  groups = groups or tuple(mean)
  out = {}
  for group in groups:
    m = jnp.concatenate([x.ravel() for x in jax.tree_util.tree_leaves(mean[group])])
    v = jnp.concatenate([x.ravel() for x in jax.tree_util.tree_leaves(var[group])])
    std = jnp.sqrt(v)
    stats = {"variance": float(jnp.mean(v)),  # host sync: diagnostics are read on the host
             "snr": float(jnp.mean(jnp.abs(m) / jnp.maximum(std, 1e-30)))}
    if reference is not None:
      r = jnp.concatenate([x.ravel() for x in jax.tree_util.tree_leaves(reference[group])])
      t = (m - r) / jnp.maximum(std / jnp.sqrt(num_draws), 1e-30)
      stats["bias_l2"] = float(jnp.linalg.norm(m - r))
      stats["t_rms"] = float(jnp.sqrt(jnp.mean(t * t)))
    out[group] = stats
  return out

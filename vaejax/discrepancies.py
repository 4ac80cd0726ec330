"""Sample-based distances between two distributions in latent space.

An adversarial or Wasserstein autoencoder matches its aggregate posterior q(z)
to a prior known only through samples, so the match is measured on samples:

  mmd                 squared maximum mean discrepancy, the unbiased U-statistic
                      (Gretton et al. 2012) with the inverse multiquadratic kernel
                      the WAE uses (Tolstikhin et al. 2018)
  sliced_wasserstein  the sliced 2-Wasserstein distance (Rabin et al. 2011;
                      Kolouri et al. 2019): the root mean square over random
                      directions of the 1-D W2 between the projected samples,
                      computed by sorting

Inputs are sample matrices x [N, D], y [M, D]; both functions are pure and jittable.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

# The WAE paper's kernel widths: C = 2 * D * sigma^2 * s for these s (sigma = 1, the
# prior's scale), summed, so no single width has to be tuned.
IMQ_SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


def imq_kernel(x: jax.Array, y: jax.Array, *, scales: Sequence[float] = IMQ_SCALES,
               prior_variance: float = 1.0) -> jax.Array:
  """k(x_i, y_j) = sum_s C_s / (C_s + ||x_i - y_j||^2), C_s = 2 D prior_variance s.
  x [N, D], y [M, D] -> [N, M]."""
  dim = x.shape[-1]
  # Full float32 products: a TF32 matmul (GPU default) would blur small distances and
  # the exact diagonal k(x_i, x_i) that mmd removes.
  cross = jnp.matmul(x, y.T, precision=jax.lax.Precision.HIGHEST)
  sq = jnp.sum(x * x, -1)[:, None] + jnp.sum(y * y, -1)[None, :] - 2.0 * cross
  sq = jnp.maximum(sq, 0.0)  # cancellation can make a tiny distance negative
  return sum(c / (c + sq) for c in (2.0 * dim * prior_variance * s for s in scales))


def _kernel_sum(x, y, block_size, **kernel_args) -> jax.Array:
  """sum_ij k(x_i, y_j) in blocks of x's rows (a [block, M] matrix at a time)."""
  n = x.shape[0]
  if block_size is None or n <= block_size:
    return jnp.sum(imq_kernel(x, y, **kernel_args))
  if n % block_size:
    raise ValueError(f"{n} samples do not split into blocks of {block_size}")
  blocks = x.reshape(n // block_size, block_size, x.shape[-1])
  return jnp.sum(jax.lax.map(lambda b: jnp.sum(imq_kernel(b, y, **kernel_args)), blocks))


def mmd(x: jax.Array, y: jax.Array, *, scales: Sequence[float] = IMQ_SCALES,
        prior_variance: float = 1.0, block_size: int | None = None) -> jax.Array:
  """Unbiased estimate of MMD^2(P, Q) from x ~ P [N, D] and y ~ Q [M, D]: [].

  1/(N(N-1)) sum_{i!=j} k(x_i, x_j) + 1/(M(M-1)) sum_{i!=j} k(y_i, y_j)
  - 2/(NM) sum_ij k(x_i, y_j), with `imq_kernel`. Zero in expectation when P = Q
  (so an estimate can be slightly negative); differentiable in x and y.
  block_size: evaluate the kernel matrices that many rows at a time (memory
  O(block_size * M) instead of O(N * M)). Raises ValueError for fewer than two
  samples on either side.
  """
  n, m = x.shape[0], y.shape[0]
  if n < 2 or m < 2:
    raise ValueError(f"mmd needs at least two samples on each side, got {n} and {m}")
  args = dict(scales=scales, prior_variance=prior_variance)
  # k(x_i, x_i) = number of scales: the diagonal is removed exactly.
  diagonal = float(len(scales))
  xx = (_kernel_sum(x, x, block_size, **args) - n * diagonal) / (n * (n - 1))
  yy = (_kernel_sum(y, y, block_size, **args) - m * diagonal) / (m * (m - 1))
  xy = _kernel_sum(x, y, block_size, **args) / (n * m)
  return xx + yy - 2.0 * xy


def sliced_wasserstein(x: jax.Array, y: jax.Array, *, key: jax.Array,
                       num_projections: int = 100) -> jax.Array:
  """Sliced 2-Wasserstein distance between the empirical distributions of x and y,
  each [N, D] (equal sizes): sqrt(mean_theta W2^2(theta^T x, theta^T y)) over
  `num_projections` directions uniform on the sphere: [], in latent units.

  In one dimension the directions are +-1 and this is W2 itself; between
  N(m1, s1^2) and N(m2, s2^2) it tends to sqrt((m1 - m2)^2 + (s1 - s2)^2).
  Raises ValueError for unequal sample counts.
  """
  if x.shape != y.shape:
    raise ValueError(f"sliced_wasserstein needs samples of equal shape, got {x.shape} "
                     f"and {y.shape}")
  theta = jax.random.normal(key, (x.shape[-1], num_projections))
  theta = theta / jnp.linalg.norm(theta, axis=0, keepdims=True)
  px, py = jnp.sort(x @ theta, axis=0), jnp.sort(y @ theta, axis=0)  # [N, L]
  return jnp.sqrt(jnp.mean(jnp.square(px - py)))

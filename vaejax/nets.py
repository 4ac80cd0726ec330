"""Flax Linen encoders and decoders, applied to ONE example (no batch axis).

Images are [H, W, C]. Encoders return the posterior's (mean, log_var), each
[latent_dim]; decoders map z [latent_dim] to per-pixel likelihood parameters
[H, W, C]. `dtype` is the compute dtype of every layer (bfloat16 for the fast
mode); parameters stay float32 and outputs are returned as float32, so
log-densities and reductions run in full precision. Parameters are plain pytrees: call `init` and
`apply` as pure functions; the modules hold no state.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu, "tanh": jnp.tanh, "elu": nn.elu, "gelu": nn.gelu, "swish": nn.swish,
}
# exp(LOG_VAR_BOUND) must not overflow float32 (max ~ e^88) anywhere downstream,
# including exp(-log_var) in log-densities; e^30 leaves wide margins while being
# far outside any variance a trained encoder uses.
LOG_VAR_BOUND = 30.0


def soft_clip(x: jax.Array, bound: float) -> jax.Array:
  """Smoothly limits x to (-bound, bound): identity near 0, gradient never zero."""
  return bound * jnp.tanh(x / bound)


def _activation(name: str):
  if name not in ACTIVATIONS:
    raise ValueError(f"unknown activation {name!r}; valid: {sorted(ACTIVATIONS)}")
  return ACTIVATIONS[name]


class GaussianHead(nn.Module):
  """Dense layers to (mean, log_var) of a diagonal Gaussian, log_var bounded."""

  latent_dim: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, h):
    mean = nn.Dense(self.latent_dim, dtype=self.dtype, name="mean")(h).astype(jnp.float32)
    log_var = nn.Dense(self.latent_dim, dtype=self.dtype, name="log_var")(h)
    return mean, soft_clip(log_var.astype(jnp.float32), LOG_VAR_BOUND)


class MLPEncoder(nn.Module):
  """[H, W, C] image -> flatten -> hidden Dense layers -> (mean, log_var) [latent_dim]."""

  hidden: Sequence[int]
  latent_dim: int
  activation: str = "relu"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    act = _activation(self.activation)
    h = x.reshape(x.shape[:-3] + (-1,))
    for i, width in enumerate(self.hidden):
      h = act(nn.Dense(width, dtype=self.dtype, name=f"hidden_{i}")(h))
    return GaussianHead(self.latent_dim, self.dtype, name="head")(h)


class MLPDecoder(nn.Module):
  """z [latent_dim] -> hidden Dense layers -> [H, W, C] likelihood parameters."""

  hidden: Sequence[int]
  image_shape: Sequence[int]
  activation: str = "relu"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z):
    act = _activation(self.activation)
    h = z
    for i, width in enumerate(self.hidden):
      h = act(nn.Dense(width, dtype=self.dtype, name=f"hidden_{i}")(h))
    height, width, channels = self.image_shape
    out = nn.Dense(height * width * channels, dtype=self.dtype, name="out")(h)
    return out.astype(jnp.float32).reshape(z.shape[:-1] + (height, width, channels))


class ConvEncoder(nn.Module):
  """Two stride-2 3x3 convolutions (H -> H/4), a Dense layer, then (mean, log_var).

  Works for 28x28x1 (MNIST) and 32x32x3 (CIFAR/SVHN-sized) inputs.
  """

  latent_dim: int
  features: Sequence[int] = (32, 64)
  hidden: Sequence[int] = (256,)
  activation: str = "relu"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    act = _activation(self.activation)
    h = x
    for i, feat in enumerate(self.features):
      h = act(nn.Conv(feat, (3, 3), strides=(2, 2), dtype=self.dtype, name=f"conv_{i}")(h))
    h = h.reshape(h.shape[:-3] + (-1,))
    for i, width in enumerate(self.hidden):
      h = act(nn.Dense(width, dtype=self.dtype, name=f"hidden_{i}")(h))
    return GaussianHead(self.latent_dim, self.dtype, name="head")(h)


class ConvDecoder(nn.Module):
  """Mirror of ConvEncoder: Dense to an (H/4, W/4) grid, two stride-2 transposed convs."""

  image_shape: Sequence[int]
  features: Sequence[int] = (64, 32)
  hidden: Sequence[int] = (256,)
  activation: str = "relu"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z):
    act = _activation(self.activation)
    height, width, channels = self.image_shape
    if height % 4 or width % 4:
      raise ValueError(f"ConvDecoder needs H and W divisible by 4, got {self.image_shape}")
    h = z
    for i, w in enumerate(self.hidden):
      h = act(nn.Dense(w, dtype=self.dtype, name=f"hidden_{i}")(h))
    grid = (height // 4, width // 4, self.features[0])
    h = act(nn.Dense(grid[0] * grid[1] * grid[2], dtype=self.dtype, name="to_grid")(h))
    h = h.reshape(z.shape[:-1] + grid)
    for i, feat in enumerate(self.features):
      h = act(nn.ConvTranspose(feat, (3, 3), strides=(2, 2), dtype=self.dtype,
                               name=f"deconv_{i}")(h))
    return nn.Conv(channels, (3, 3), dtype=self.dtype, name="out")(h).astype(jnp.float32)

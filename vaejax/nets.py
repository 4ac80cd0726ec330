"""Flax Linen encoders and decoders, applied to ONE example (no batch axis).

Images are [H, W, C]. Encoders return the posterior's (mean, log_var), each
[latent_dim]; decoders map z [latent_dim] to per-pixel likelihood parameters
[H, W, C]. A conditional model (CVAE) passes condition features [F] as a second
argument, appended to the encoder's flattened features and to the decoder's z. `dtype` is the compute dtype of every layer (bfloat16 for the fast
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
    "linear": lambda h: h,  # identity: a linear autoencoder (recovers the PCA subspace)
}
# exp(LOG_VAR_BOUND) must not overflow float32 (max ~ e^88) anywhere downstream,
# including exp(-log_var) in log-densities; e^30 leaves wide margins while being
# far outside any variance a trained encoder uses.
LOG_VAR_BOUND = 30.0


def soft_clip(x: jax.Array, bound: float) -> jax.Array:
  """Smoothly limits x to (-bound, bound): identity near 0, gradient never zero."""
  return bound * jnp.tanh(x / bound)


def activation_fn(name: str):
  """The activation called `name` (a key of ACTIVATIONS); ValueError naming the valid ones."""
  if name not in ACTIVATIONS:
    raise ValueError(f"unknown activation {name!r}; valid: {sorted(ACTIVATIONS)}")
  return ACTIVATIONS[name]


def _with_condition(h: jax.Array, condition) -> jax.Array:
  """h [..., F], with the condition features [..., F_c] appended when given (CVAE)."""
  if condition is None:
    return h
  return jnp.concatenate([h, condition.astype(h.dtype)], axis=-1)


class AffineParams(nn.Module):
  """The kernel [in, features] and bias [features] of an nn.Dense (same names,
  initialisers and init values), returned instead of applied."""

  features: int

  @nn.compact
  def __call__(self, in_features: int):
    kernel = self.param("kernel", nn.initializers.lecun_normal(), (in_features, self.features))
    return kernel, self.param("bias", nn.initializers.zeros_init(), (self.features,))


class GaussianHead(nn.Module):
  """Dense layers to (mean, log_var) of a diagonal Gaussian, log_var bounded.

  Parameters as two nn.Dense layers "mean" and "log_var"; applied as one
  matmul with their kernels side by side ([in, 2 * latent_dim]), which XLA:CPU
  runs faster than two narrow ones (benchmarks/NOTES.md).
  """

  latent_dim: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, h):
    mean_kernel, mean_bias = AffineParams(self.latent_dim, name="mean")(h.shape[-1])
    log_var_kernel, log_var_bias = AffineParams(self.latent_dim, name="log_var")(h.shape[-1])
    kernel = jnp.concatenate([mean_kernel, log_var_kernel], axis=1).astype(self.dtype)
    bias = jnp.concatenate([mean_bias, log_var_bias]).astype(self.dtype)
    out = (h.astype(self.dtype) @ kernel + bias).astype(jnp.float32)
    mean, log_var = jnp.split(out, 2, axis=-1)
    return mean, soft_clip(log_var, LOG_VAR_BOUND)


class MLPEncoder(nn.Module):
  """[H, W, C] image -> flatten -> hidden Dense layers -> (mean, log_var) [latent_dim]."""

  hidden: Sequence[int]
  latent_dim: int
  activation: str = "relu"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, condition=None):
    act = activation_fn(self.activation)
    h = _with_condition(x.reshape(x.shape[:-3] + (-1,)), condition)
    for i, width in enumerate(self.hidden):
      h = act(nn.Dense(width, dtype=self.dtype, name=f"hidden_{i}")(h))
    return GaussianHead(self.latent_dim, self.dtype, name="head")(h)


class ConditionalGaussian(nn.Module):
  """Condition features c [F] -> hidden Dense layers -> (mean, log_var) [latent_dim]:
  a learned prior p(z|c) (the CVAE's prior network, Sohn et al. 2015)."""

  hidden: Sequence[int]
  latent_dim: int
  activation: str = "relu"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, c):
    act = activation_fn(self.activation)
    h = c
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
  def __call__(self, z, condition=None):
    act = activation_fn(self.activation)
    h = _with_condition(z, condition)
    for i, width in enumerate(self.hidden):
      h = act(nn.Dense(width, dtype=self.dtype, name=f"hidden_{i}")(h))
    height, width, channels = self.image_shape
    out = nn.Dense(height * width * channels, dtype=self.dtype, name="out")(h)
    return out.astype(jnp.float32).reshape(z.shape[:-1] + (height, width, channels))


class MLPDiscriminator(nn.Module):
  """z [latent_dim] (and condition features, e.g. a one-hot label) -> hidden Dense
  layers -> one logit []: the AAE's discriminator, D(z) = sigmoid(logit) the
  probability that z is a prior draw."""

  hidden: Sequence[int]
  activation: str = "relu"

  @nn.compact
  def __call__(self, z, condition=None):
    act = activation_fn(self.activation)
    h = _with_condition(z, condition)
    for i, width in enumerate(self.hidden):
      h = act(nn.Dense(width, name=f"hidden_{i}")(h))
    return nn.Dense(1, name="logit")(h)[..., 0]


class PatchConv(nn.Module):
  """A k x k 'SAME' convolution over [..., H, W, C] as k*k shifted (strided)
  slices concatenated on the channel axis, then one matmul.

  Same parameters (kernel [k, k, C, features], bias [features]), initialisers
  and output as nn.Conv(features, (k, k), strides=(s, s)). On XLA:CPU the
  gradients of nn.Conv's convolutions (weight gradients with the batch as the
  contraction, input gradients of strided convs) run at a few GFLOP/s, while
  here every FLOP is in a matmul and the slices' gradients are pads
  (benchmarks/NOTES.md). Costs k*k times the activation memory for the patches.
  """

  features: int
  kernel_size: int = 3
  strides: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    k, s = self.kernel_size, self.strides
    height, width, channels = x.shape[-3:]
    kernel = self.param("kernel", nn.initializers.lecun_normal(), (k, k, channels, self.features))
    bias = self.param("bias", nn.initializers.zeros, (self.features,))
    out_h, out_w = -(-height // s), -(-width // s)
    pad_h = max((out_h - 1) * s + k - height, 0)
    pad_w = max((out_w - 1) * s + k - width, 0)
    x = jnp.pad(x.astype(self.dtype), [(0, 0)] * (x.ndim - 3)
                + [(pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)])
    patches = jnp.concatenate(
        [x[..., i:i + (out_h - 1) * s + 1:s, j:j + (out_w - 1) * s + 1:s, :]
         for i in range(k) for j in range(k)], axis=-1)  # [..., out_h, out_w, k*k*C]
    kernel = kernel.reshape(k * k * channels, self.features).astype(self.dtype)
    return patches @ kernel + bias.astype(self.dtype)


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
  def __call__(self, x, condition=None):
    act = activation_fn(self.activation)
    h = x
    for i, feat in enumerate(self.features):
      h = act(PatchConv(feat, 3, 2, dtype=self.dtype, name=f"conv_{i}")(h))
    h = _with_condition(h.reshape(h.shape[:-3] + (-1,)), condition)
    for i, width in enumerate(self.hidden):
      h = act(nn.Dense(width, dtype=self.dtype, name=f"hidden_{i}")(h))
    return GaussianHead(self.latent_dim, self.dtype, name="head")(h)


def depth_to_space(h: jax.Array, block: int) -> jax.Array:
  """[..., H, W, C * block^2] -> [..., H * block, W * block, C] (pixel shuffle)."""
  *lead, height, width, depth = h.shape
  c = depth // (block * block)
  h = h.reshape(*lead, height, width, block, block, c)
  h = jnp.swapaxes(h, -4, -3)  # [..., H, block, W, block, C]
  return h.reshape(*lead, height * block, width * block, c)


class ConvDecoder(nn.Module):
  """Mirror of ConvEncoder: Dense to an (H/4, W/4, features[0]) grid, then two
  2x upsamplings to features[1:] + (C,) channels, the last giving the logits.

  Each upsampling is a sub-pixel convolution (Shi et al. 2016): a stride-1 3x3
  conv to 4x the channels, then depth_to_space. A stride-2 ConvTranspose is the
  textbook choice, but XLA:CPU runs its input-dilated convolution ~20x slower
  (benchmarks/NOTES.md), and the sub-pixel form keeps every conv at the lower
  resolution. Convolutions are PatchConv (matmuls), for the same reason.
  """

  image_shape: Sequence[int]
  features: Sequence[int] = (64, 32)
  hidden: Sequence[int] = (256,)
  activation: str = "relu"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z, condition=None):
    act = activation_fn(self.activation)
    height, width, channels = self.image_shape
    if height % 4 or width % 4:
      raise ValueError(f"ConvDecoder needs H and W divisible by 4, got {self.image_shape}")
    h = _with_condition(z, condition)
    for i, w in enumerate(self.hidden):
      h = act(nn.Dense(w, dtype=self.dtype, name=f"hidden_{i}")(h))
    grid = (height // 4, width // 4, self.features[0])
    h = act(nn.Dense(grid[0] * grid[1] * grid[2], dtype=self.dtype, name="to_grid")(h))
    h = h.reshape(z.shape[:-1] + grid)
    widths = tuple(self.features[1:]) + (channels,)
    if len(widths) != 2:
      raise ValueError(f"ConvDecoder needs two feature sizes (one per upsampling), got {self.features}")
    for i, feat in enumerate(widths):
      h = depth_to_space(PatchConv(4 * feat, 3, dtype=self.dtype, name=f"upsample_{i}")(h), 2)
      if i < len(widths) - 1:
        h = act(h)
    return h.astype(jnp.float32)

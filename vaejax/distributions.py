"""Distributions used by the models, written for ONE example.

Every log-density sums over the event axes of a single example and returns a
scalar; batch and importance-sample axes are added by `jax.vmap` higher up.
Randomness always comes from an explicit `key` keyword argument.
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

Array = jax.Array
_LOG_2PI = math.log(2.0 * math.pi)


class DiagGaussian(NamedTuple):
  """Diagonal Gaussian over the last axis. `mean`, `log_var`: [D]."""

  mean: Array
  log_var: Array

  @property
  def scale(self) -> Array:
    return jnp.exp(0.5 * self.log_var)

  def sample(self, *, key: Array) -> Array:
    """Reparameterised draw z = mu + sigma * eps, eps ~ N(0, I). Returns [D]."""
    eps = jax.random.normal(key, self.mean.shape, self.mean.dtype)
    return self.mean + self.scale * eps

  def log_prob(self, z: Array) -> Array:
    """log N(z; mean, diag(exp(log_var))) summed over the last axis. z: [D] -> []."""
    sq = jnp.square(z - self.mean) * jnp.exp(-self.log_var)
    return -0.5 * jnp.sum(sq + self.log_var + _LOG_2PI, axis=-1)

  def entropy(self) -> Array:
    """Differential entropy, summed over the last axis: []."""
    return 0.5 * jnp.sum(1.0 + _LOG_2PI + self.log_var, axis=-1)

  def kl_per_dim(self, other: "DiagGaussian") -> Array:
    """Closed-form KL(self || other) per dimension: [D], each >= 0."""
    var_ratio = jnp.exp(self.log_var - other.log_var)
    mahalanobis = jnp.square(self.mean - other.mean) * jnp.exp(-other.log_var)
    per_dim = 0.5 * (var_ratio + mahalanobis - 1.0 - (self.log_var - other.log_var))
    # Each term is >= 0 mathematically; rounding can give -1e-8, which must not
    # surface as a "negative KL" in metrics.
    return jnp.maximum(per_dim, 0.0)

  def kl(self, other: "DiagGaussian") -> Array:
    """Closed-form KL(self || other), summed over the last axis: [] and >= 0."""
    return jnp.sum(self.kl_per_dim(other), axis=-1)

  def precision_weighted(self, other: "DiagGaussian") -> "DiagGaussian":
    """The normalised product N(mean_a, var_a) N(mean_b, var_b) / Z: precisions add,
    var = 1 / (1/var_a + 1/var_b), and the mean is the precision-weighted average,
    mean = var (mean_a / var_a + mean_b / var_b) (the ladder VAE's merge of a
    bottom-up and a top-down Gaussian, Sonderby et al. 2016). Computed in log-variance
    space (logaddexp, sigmoid weights), so no precision overflows."""
    log_var = -jnp.logaddexp(-self.log_var, -other.log_var)
    weight = jax.nn.sigmoid(other.log_var - self.log_var)  # var_b / (var_a + var_b)
    return DiagGaussian(weight * self.mean + (1.0 - weight) * other.mean, log_var)

  def kl_to_standard_normal_per_dim(self) -> Array:
    """Closed-form KL(self || N(0, I)) per dimension: [D], each >= 0."""
    per_dim = 0.5 * (jnp.exp(self.log_var) + jnp.square(self.mean) - 1.0 - self.log_var)
    return jnp.maximum(per_dim, 0.0)

  def kl_to_standard_normal(self) -> Array:
    """Closed-form KL(self || N(0, I)): []."""
    return jnp.sum(self.kl_to_standard_normal_per_dim(), axis=-1)


class Categorical(NamedTuple):
  """Independent categoricals at P positions. `logits`: [P, K] (unnormalised)."""

  logits: Array

  def sample(self, *, key: Array) -> Array:
    """One class per position: [P] int32."""
    return jax.random.categorical(key, self.logits, axis=-1).astype(jnp.int32)

  def log_prob(self, z: Array) -> Array:
    """sum_p log softmax(logits_p)[z_p] for z [P] int: []."""
    log_p = jax.nn.log_softmax(self.logits, axis=-1)
    return jnp.sum(jnp.take_along_axis(log_p, z[:, None].astype(jnp.int32), axis=-1))


class PointMass(NamedTuple):
  """q(z|x) = delta(z - value), a deterministic posterior (the VQ-VAE's nearest
  codes, int32; a deterministic AAE's code, float). `value`: [P]."""

  value: Array

  @property
  def mean(self) -> Array:
    return self.value

  def sample(self, *, key: Array) -> Array:
    del key  # no randomness: every draw is the value
    return self.value

  def log_prob(self, z: Array) -> Array:
    """0 at the value, -inf elsewhere (a probability mass): []."""
    return jnp.where(jnp.all(z == self.value), 0.0, -jnp.inf).astype(jnp.float32)


def standard_normal(latent_dim: int, dtype=jnp.float32) -> DiagGaussian:
  """N(0, I) in `latent_dim` dimensions, the usual prior p(z)."""
  zeros = jnp.zeros((latent_dim,), dtype)
  return DiagGaussian(zeros, zeros)


def bernoulli_log_prob(logits: Array, x: Array) -> Array:
  """log Bernoulli(x; sigmoid(logits)) summed over all axes of one example.

  Written as x * l - softplus(l), which is finite for any finite logit (the
  naive x log p + (1-x) log(1-p) is -inf once sigmoid saturates). x may be
  fractional in [0, 1] (continuous Bernoulli without its normaliser, i.e. BCE).
  """
  return jnp.sum(bernoulli_log_density(logits, x))


def _softplus_and_sigmoid(logits: Array) -> tuple[Array, Array]:
  # One exp(-|l|) serves both: softplus = max(l, 0) + log1p(e), sigmoid = (1 or e) / (1 + e).
  e = jnp.exp(-jnp.abs(logits))
  return jnp.maximum(logits, 0.0) + jnp.log1p(e), jnp.where(logits >= 0, 1.0, e) / (1.0 + e)


@jax.custom_jvp
def bernoulli_log_density(logits: Array, x: Array) -> Array:
  """Elementwise x * l - softplus(l), with d/dl = x - sigmoid(l) and d/dx = l.

  The custom JVP takes the sigmoid from the forward pass's exp(-|l|) instead
  of a second exp in the backward pass (JAX's softplus rule), and the reverse
  pass keeps x - sigmoid(l) as its one residual: 5% of a batch-1024
  reference-model step on XLA:CPU (benchmarks/NOTES.md).
  """
  return x * logits - _softplus_and_sigmoid(logits)[0]


@functools.partial(bernoulli_log_density.defjvp, symbolic_zeros=True)
def _bernoulli_log_density_jvp(primals, tangents):
  logits, x = primals
  logits_dot, x_dot = tangents
  softplus, sigmoid = _softplus_and_sigmoid(logits)
  value = x * logits - softplus
  tangent = jnp.zeros_like(value)
  if not isinstance(logits_dot, SymbolicZero):
    tangent = (x - sigmoid) * logits_dot
  if not isinstance(x_dot, SymbolicZero):
    tangent = tangent + logits * x_dot
  return value, tangent


def gaussian_log_prob(mean: Array, log_scale: Array, x: Array) -> Array:
  """log N(x; mean, exp(log_scale)^2) summed over all axes of one example.

  `log_scale` broadcasts against `mean` (a scalar for a shared learned scale).
  """
  z = (x - mean) * jnp.exp(-log_scale)
  return jnp.sum(-0.5 * jnp.square(z) - log_scale - 0.5 * _LOG_2PI)


def _series_cutoff(dtype) -> float:
  # Closed forms below cancel 1/l terms, so their derivatives lose ~eps/l^2;
  # the truncated series err ~l^7. 3 eps^(1/8) balances them: 0.41 in float32,
  # 0.033 in float64.
  return 3.0 * float(jnp.finfo(dtype).eps) ** 0.125


def continuous_bernoulli_log_norm(logits: Array) -> Array:
  """Elementwise log C(lambda) of the continuous Bernoulli, lambda = sigmoid(l).

  C(lambda) = 2 artanh(1 - 2 lambda) / (1 - 2 lambda) (Loaiza-Ganem &
  Cunningham 2019, "The continuous Bernoulli"), i.e. log(l / tanh(l / 2)): even,
  log 2 at l = 0, ~log|l| for large |l|. Value and gradient are finite for every
  finite l. logits: any shape -> same shape.
  """
  l = jnp.asarray(logits, jnp.result_type(logits, 1.0))
  a = jnp.abs(l)
  near = a < _series_cutoff(l.dtype)
  # Double where: each branch only sees inputs where it is finite, so the
  # masked-out branch cannot put 0 * inf = NaN into the gradient.
  a_far = jnp.where(near, 1.0, a)
  # log(a / tanh(a / 2)) with tanh(a / 2) = (1 - e^-a) / (1 + e^-a): no overflow.
  e = jnp.exp(-a_far)
  far = jnp.log(a_far) + jnp.log1p(e) - jnp.log(-jnp.expm1(-a_far))
  s = jnp.square(jnp.where(near, l, 0.0))
  series = math.log(2.0) + s * (1 / 12 + s * (-7 / 1440 + s * (31 / 90720)))
  return jnp.where(near, series, far)


def continuous_bernoulli_log_prob(logits: Array, x: Array) -> Array:
  """log CB(x; sigmoid(logits)) summed over all axes of one example, x in [0, 1].

  The Bernoulli log-density (BCE) plus the normaliser log C(lambda) that makes it
  a density on [0, 1] (Loaiza-Ganem & Cunningham 2019).
  """
  return jnp.sum(bernoulli_log_density(logits, x) + continuous_bernoulli_log_norm(logits))


def continuous_bernoulli_mean(logits: Array) -> Array:
  """Elementwise E[x] = lambda / (2 lambda - 1) + 1 / (2 artanh(1 - 2 lambda)).

  In logits 1 / (1 - e^-l) - 1 / l: 1/2 at l = 0, -> 1 - 1/l as l -> inf, and
  mean(-l) = 1 - mean(l). lambda is not the mean; use this for reconstructions.
  logits: any shape -> same shape.
  """
  l = jnp.asarray(logits, jnp.result_type(logits, 1.0))
  a = jnp.abs(l)
  near = a < _series_cutoff(l.dtype)
  a_far = jnp.where(near, 1.0, a)
  # t = mean(-a) = 1/a - 1/(e^a - 1), with 1/(e^a - 1) = e^-a / (1 - e^-a) so
  # nothing overflows; 1 - t for l >= 0 keeps small means (l << 0) accurate.
  t = 1.0 / a_far - jnp.exp(-a_far) / -jnp.expm1(-a_far)
  far = jnp.where(l >= 0, 1.0 - t, t)
  z = jnp.where(near, l, 0.0)
  s = jnp.square(z)
  series = 0.5 + z * (1 / 12 + s * (-1 / 720 + s * (1 / 30240)))
  return jnp.where(near, series, far)

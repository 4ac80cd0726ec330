"""A VAE as a pair of pure functions over a params pytree.

`VAE` ties an encoder, a decoder, a likelihood and the N(0, I) prior together
and exposes the per-example terms every objective needs, each for ONE example:
`posterior(params, x)` -> q(z|x), `log_likelihood(params, x, z)` -> log p(x|z),
`prior()` -> p(z). Params are {'encoder': ..., 'decoder': ..., 'likelihood': ...}.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vaejax import distributions, nets

Params = Any
LIKELIHOODS = ("bernoulli", "gaussian_fixed", "gaussian_learned")
ARCHITECTURES = ("mlp", "conv")
COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@dataclasses.dataclass(frozen=True)
class VAE:
  """Encoder q(z|x), decoder p(x|z) and prior p(z) = N(0, I).

  Attributes:
    encoder: module mapping one image [H, W, C] to (mean, log_var) [latent_dim].
    decoder: module mapping z [latent_dim] to [H, W, C] likelihood parameters.
    likelihood: 'bernoulli' (decoder gives logits), 'gaussian_fixed' (decoder
      gives means, scale `gaussian_scale`) or 'gaussian_learned' (one learned
      log-scale shared by all pixels, starting at log(gaussian_scale)).
    latent_dim: dimension of z.
    image_shape: (H, W, C) of one example.
  """

  encoder: nn.Module
  decoder: nn.Module
  likelihood: str
  latent_dim: int
  image_shape: tuple[int, int, int]
  gaussian_scale: float = 1.0

  def init(self, key: jax.Array) -> Params:
    enc_key, dec_key = jax.random.split(key)
    x = jnp.zeros(self.image_shape, jnp.float32)
    z = jnp.zeros((self.latent_dim,), jnp.float32)
    lik = {}
    if self.likelihood == "gaussian_learned":
      lik = {"log_scale": jnp.log(jnp.asarray(self.gaussian_scale, jnp.float32))}
    return {"encoder": self.encoder.init(enc_key, x)["params"],
            "decoder": self.decoder.init(dec_key, z)["params"],
            "likelihood": lik}

  def prior(self) -> distributions.DiagGaussian:
    return distributions.standard_normal(self.latent_dim)

  def posterior(self, params: Params, x: jax.Array) -> distributions.DiagGaussian:
    """q(z|x) for one image x [H, W, C]."""
    mean, log_var = self.encoder.apply({"params": params["encoder"]}, x)
    return distributions.DiagGaussian(mean, log_var)

  def decode(self, params: Params, z: jax.Array) -> jax.Array:
    """Likelihood parameters [H, W, C] (logits or means) for one z [latent_dim]."""
    return self.decoder.apply({"params": params["decoder"]}, z)

  def log_likelihood(self, params: Params, x: jax.Array, z: jax.Array) -> jax.Array:
    """log p(x|z) for one example: x [H, W, C], z [latent_dim] -> []."""
    out = self.decode(params, z)
    if self.likelihood == "bernoulli":
      return distributions.bernoulli_log_prob(out, x)
    return distributions.gaussian_log_prob(out, self._log_scale(params), x)

  def mean_image(self, params: Params, z: jax.Array) -> jax.Array:
    """E[x|z] in [0, 1] for pictures: sigmoid(logits) or the clipped Gaussian mean."""
    out = self.decode(params, z)
    if self.likelihood == "bernoulli":
      return jax.nn.sigmoid(out)
    return jnp.clip(out, 0.0, 1.0)

  def _log_scale(self, params: Params) -> jax.Array:
    if self.likelihood == "gaussian_learned":
      return params["likelihood"]["log_scale"]
    return jnp.log(jnp.asarray(self.gaussian_scale, jnp.float32))


def make_vae(*, architecture: str, image_shape: Sequence[int], latent_dim: int,
             hidden: Sequence[int], likelihood: str = "bernoulli",
             activation: str = "relu", gaussian_scale: float = 1.0,
             compute_dtype: str = "float32") -> VAE:
  """Builds a VAE by name; the decoder mirrors the encoder's hidden widths.

  compute_dtype: 'float32', or 'bfloat16' for layers computed in bfloat16 with
  float32 parameters, float32 accumulation and float32 log-densities.
  """
  if architecture not in ARCHITECTURES:
    raise ValueError(f"unknown architecture {architecture!r}; valid: {list(ARCHITECTURES)}")
  if likelihood not in LIKELIHOODS:
    raise ValueError(f"unknown likelihood {likelihood!r}; valid: {list(LIKELIHOODS)}")
  if compute_dtype not in COMPUTE_DTYPES:
    raise ValueError(f"unknown compute dtype {compute_dtype!r}; valid: {list(COMPUTE_DTYPES)}")
  dtype = COMPUTE_DTYPES[compute_dtype]
  image_shape = tuple(int(d) for d in image_shape)
  hidden = tuple(int(h) for h in hidden)
  if architecture == "mlp":
    encoder = nets.MLPEncoder(hidden, latent_dim, activation, dtype)
    decoder = nets.MLPDecoder(hidden[::-1], image_shape, activation, dtype)
  else:
    encoder = nets.ConvEncoder(latent_dim, hidden=hidden, activation=activation, dtype=dtype)
    decoder = nets.ConvDecoder(image_shape, hidden=hidden[::-1], activation=activation,
                               dtype=dtype)
  return VAE(encoder, decoder, likelihood, int(latent_dim), image_shape, float(gaussian_scale))

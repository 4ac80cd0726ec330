"""The Gaussian-latent VAE (Kingma & Welling 2014), optionally conditional.

`VAE` ties an encoder q(z|x[, c]), a decoder p(x|z[, c]), a likelihood and a
prior: N(0, I), or a learned conditional p(z|c) (Sohn et al. 2015). Without a
`condition` it is the plain VAE; `vaejax.models.cvae` supplies conditions.
Params: {"encoder", "decoder", "likelihood"} (+ "prior" when learned).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional, Protocol, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vaejax import distributions, latent_priors, nets
from vaejax.models.base import (LIKELIHOODS, Example, Params, image_of, log_density, mean_of,
                                decoder_with_output_bias)

ARCHITECTURES = ("mlp", "conv")
COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


class Condition(Protocol):
  """What a conditional model conditions on, derived from one example.

  features(x) -> [num_features] float (fed to encoder, decoder and prior);
  target_mask: [H, W, C] of 0/1 (pixels the likelihood scores) or None (all);
  observed_image(x) -> [H, W, C] the image with unobserved pixels zeroed.
  """
  num_features: int
  target_mask: Optional[Any]

  def features(self, x: Example) -> jax.Array: ...


@dataclasses.dataclass(frozen=True)
class VAE:
  """Encoder q(z|x), decoder p(x|z) and prior p(z) (see the module docstring).

  Attributes:
    encoder: module mapping one image [H, W, C] (and condition features) to
      (mean, log_var) [latent_dim].
    decoder: module mapping z [latent_dim] (and condition features) to
      [H, W, C] likelihood parameters.
    likelihood: one of base.LIKELIHOODS. 'bernoulli' (decoder gives logits; for
      0/1 pixels), 'continuous_bernoulli' (logits; grey pixels in [0, 1],
      Loaiza-Ganem & Cunningham 2019), 'bernoulli_grey' (BCE on grey pixels: not
      a normalised likelihood), 'gaussian_fixed' (means, scale `gaussian_scale`)
      or 'gaussian_learned' (one learned log-scale shared by all pixels).
    latent_dim: dimension of z.
    image_shape: (H, W, C) of one example.
    condition: None for the unconditional VAE, else a `Condition`. With
      latent_dim = 0 (encoder None) a conditional model is the deterministic
      predictor p(x|c) that Sohn et al. compare against (their "NN baseline"):
      q and p(z) are zero-dimensional, every bound equals log p(x|c) exactly.
    prior_net: None for p(z) = N(0, I), else a module mapping condition
      features to (mean, log_var) of p(z|c).
    latent_prior: None, or a fixed prior of `vaejax.latent_priors` (e.g. the
      2-D mixture of 10 Gaussians, Makhzani et al.'s VAE baseline), whose KL
      has no closed form.
  """

  encoder: Optional[nn.Module]
  decoder: nn.Module
  likelihood: str
  latent_dim: int
  image_shape: tuple[int, int, int]
  gaussian_scale: float = 1.0
  condition: Optional[Condition] = None
  prior_net: Optional[nn.Module] = None
  inference_groups: tuple[str, ...] = ("encoder",)
  latent_prior: Optional[Any] = None

  @property
  def has_closed_form_kl(self) -> bool:
    """False with a `latent_priors` prior (the mixture): the bounds use the Monte-Carlo KL."""
    return self.latent_prior is None

  def init(self, key: jax.Array) -> Params:
    enc_key, dec_key, prior_key = jax.random.split(key, 3)
    x = jnp.zeros(self.image_shape, jnp.float32)
    z = jnp.zeros((self.latent_dim,), jnp.float32)
    c = () if self.condition is None else (jnp.zeros((self.condition.num_features,)),)
    lik = {}
    if self.likelihood == "gaussian_learned":
      lik = {"log_scale": jnp.log(jnp.asarray(self.gaussian_scale, jnp.float32))}
    encoder = {} if self.encoder is None else self.encoder.init(enc_key, x, *c)["params"]
    params = {"encoder": encoder,
              "decoder": self.decoder.init(dec_key, z, *c)["params"],
              "likelihood": lik}
    if self.prior_net is not None:
      params["prior"] = self.prior_net.init(prior_key, *c)["params"]
    return params

  def with_output_bias(self, params: Params, bias) -> Params:
    """params with the decoder's output bias set to `bias` [H, W, C] (logits for a
    Bernoulli likelihood). Raises ValueError for a convolutional decoder."""
    return {**params, "decoder": decoder_with_output_bias(params["decoder"], bias)}

  def _condition(self, x: Example) -> tuple:
    return () if self.condition is None else (self.condition.features(x),)

  def prior(self, params: Params, x: Example = None) -> distributions.DiagGaussian:
    """p(z) = N(0, I), the fixed latent_prior, or the learned p(z|c) for example x."""
    if self.latent_prior is not None:
      return latent_priors.GivenLabel(self.latent_prior, None)
    if self.prior_net is None:
      return distributions.standard_normal(self.latent_dim)
    mean, log_var = self.prior_net.apply({"params": params["prior"]}, *self._condition(x))
    return distributions.DiagGaussian(mean, log_var)

  def log_prior(self, params: Params, x: Example, z: jax.Array) -> jax.Array:
    """log p(z) (or log p(z|c)) for z [latent_dim]: []."""
    return self.prior(params, x).log_prob(z)

  def posterior(self, params: Params, x: Example) -> distributions.DiagGaussian:
    """q(z|x) (or q(z|x, c)) for one example."""
    if self.encoder is None:  # a zero-dimensional latent
      return distributions.DiagGaussian(jnp.zeros((0,)), jnp.zeros((0,)))
    mean, log_var = self.encoder.apply({"params": params["encoder"]}, image_of(x),
                                       *self._condition(x))
    return distributions.DiagGaussian(mean, log_var)

  def kl_per_dim(self, params: Params, x: Example, q: distributions.DiagGaussian) -> jax.Array:
    """Closed-form KL(q(z|x) || p(z)) per latent dimension: [latent_dim], each >= 0.
    Raises ValueError with a latent_prior (no closed form)."""
    if self.latent_prior is not None:
      raise ValueError("the KL to a mixture prior has no closed form: use analytic_kl=False")
    if self.prior_net is None:
      return q.kl_to_standard_normal_per_dim()
    return q.kl_per_dim(self.prior(params, x))

  def decode(self, params: Params, z: jax.Array, x: Example = None) -> jax.Array:
    """Likelihood parameters [H, W, C] (logits or means) for one z [latent_dim]; a
    conditional model takes its condition from the example x."""
    return self.decoder.apply({"params": params["decoder"]}, z, *self._condition(x))

  def log_likelihood(self, params: Params, x: Example, z: jax.Array) -> jax.Array:
    """log p(x|z) for one example and z [latent_dim] -> [] nats (over the target pixels)."""
    mask = None if self.condition is None else self.condition.target_mask
    return log_density(self.likelihood, self.decode(params, z, x), self._log_scale(params),
                       image_of(x), mask)

  def mean_image(self, params: Params, x: Example, z: jax.Array) -> jax.Array:
    """E[x|z] in [0, 1] for pictures: [H, W, C]."""
    return mean_of(self.likelihood, self.decode(params, z, x))

  def _log_scale(self, params: Params) -> jax.Array:
    if self.likelihood == "gaussian_learned":
      return params["likelihood"]["log_scale"]
    return jnp.log(jnp.asarray(self.gaussian_scale, jnp.float32))


def check_choices(*, architecture: str, likelihood: str, compute_dtype: str) -> None:
  if architecture not in ARCHITECTURES:
    raise ValueError(f"unknown architecture {architecture!r}; valid: {list(ARCHITECTURES)}")
  if likelihood not in LIKELIHOODS:
    raise ValueError(f"unknown likelihood {likelihood!r}; valid: {list(LIKELIHOODS)}")
  if compute_dtype not in COMPUTE_DTYPES:
    raise ValueError(f"unknown compute dtype {compute_dtype!r}; valid: {list(COMPUTE_DTYPES)}")


def make_nets(*, architecture: str, image_shape: Sequence[int], latent_dim: int,
              hidden: Sequence[int], activation: str, compute_dtype: str):
  """(encoder, decoder) by name; the decoder mirrors the encoder's hidden widths."""
  dtype = COMPUTE_DTYPES[compute_dtype]
  hidden = tuple(int(h) for h in hidden)
  if architecture == "mlp":
    return (nets.MLPEncoder(hidden, latent_dim, activation, dtype),
            nets.MLPDecoder(hidden[::-1], tuple(image_shape), activation, dtype))
  return (nets.ConvEncoder(latent_dim, hidden=hidden, activation=activation, dtype=dtype),
          nets.ConvDecoder(tuple(image_shape), hidden=hidden[::-1], activation=activation,
                           dtype=dtype))


def make_vae(*, architecture: str, image_shape: Sequence[int], latent_dim: int,
             hidden: Sequence[int], likelihood: str = "bernoulli",
             activation: str = "relu", gaussian_scale: float = 1.0,
             compute_dtype: str = "float32", latent_prior: str = "gaussian") -> VAE:
  """Builds a VAE by name; the decoder mirrors the encoder's hidden widths.

  compute_dtype: 'float32', or 'bfloat16' for layers computed in bfloat16 with
  float32 parameters, float32 accumulation and float32 log-densities.
  latent_prior: a `vaejax.latent_priors` name; 'gaussian' is N(0, I) with its
  closed-form KL, 'mixture2d' the 10-Gaussian mixture (Monte-Carlo KL).
  Raises ValueError for an unknown architecture, likelihood, dtype or prior, and
  for the swiss roll (no density: a VAE needs log p(z)).
  """
  check_choices(architecture=architecture, likelihood=likelihood, compute_dtype=compute_dtype)
  image_shape = tuple(int(d) for d in image_shape)
  encoder, decoder = make_nets(architecture=architecture, image_shape=image_shape,
                               latent_dim=latent_dim, hidden=hidden, activation=activation,
                               compute_dtype=compute_dtype)
  prior = None
  if latent_prior != "gaussian":
    prior = latent_priors.make_latent_prior(latent_prior, latent_dim)
    if not prior.has_density:
      raise ValueError(f"latent prior {latent_prior!r} has no density, which a VAE's KL needs")
  return VAE(encoder, decoder, likelihood, int(latent_dim), image_shape, float(gaussian_scale),
             latent_prior=prior)

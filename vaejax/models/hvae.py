"""Hierarchical VAEs with stacked Gaussian stochastic layers (Burda et al. 2015).

Inference is bottom-up, q(z1|x) q(z2|z1) ... q(zL|z_{L-1}); the generative model
is top-down, p(zL) p(z_{L-1}|zL) ... p(z1|z2) p(x|z1), with p(zL) = N(0, I).
Every conditional is a diagonal Gaussian from an MLP (Burda et al.'s two-layer
model: tanh layers of 200, 200 between x and z1 (100 units) and of 100, 100
between z1 and z2 (50 units)). A latent z is the concatenation [z1, ..., zL]:
[sum(latent_dims)].

The posterior is a `LayeredPosterior`, recomputed from (params, x) and z, so an
estimator that stops the variational parameters (STL, DReG) keeps the path
derivative through every layer (Bauer & Mnih 2021 discuss why stopping the
sampled means and scales, right for one layer, is wrong here). There is no
closed-form KL: the bounds use the Monte-Carlo KL (analytic_kl=False).
Params: {"encoder": {"layer_1", ..., "layer_L"}, "decoder": {"x", "layer_1", ...,
"layer_{L-1}"}, "likelihood": {}}; decoder["layer_l"] gives p(z_l | z_{l+1}).
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from vaejax import distributions, nets
from vaejax.models.base import (LIKELIHOODS, Example, Params, image_of, log_density, mean_of,
                                decoder_with_output_bias)


class ModelPytree:
  """A dataclass whose first field, `model`, is static and whose other fields are
  the pytree's children (register subclasses with register_pytree_node_class)."""

  def tree_flatten(self):
    return tuple(getattr(self, f.name) for f in dataclasses.fields(self)[1:]), self.model

  @classmethod
  def tree_unflatten(cls, model, children):
    return cls(model, *children)


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True)
class LayeredPosterior(ModelPytree):
  """q(z1|x) q(z2|z1) ... q(zL|z_{L-1}) of one example.

  A pytree whose leaves are the encoder params and the example (the model is
  static), so `tree_map(stop_gradient, q)` is the same q at stopped parameters:
  its log_prob(z) still differentiates through z, including through z1 into
  q(z2|z1)'s mean and scale.
  """
  model: "HierarchicalVAE"
  params: Params  # the encoder's params
  x: Example

  def _layer(self, l: int, below: jax.Array) -> distributions.DiagGaussian:
    """q(z_l | z_{l-1}) (l = 1: q(z1|x)), l = 1..L."""
    mean, log_var = self.model.encoders[l - 1].apply({"params": self.params[f"layer_{l}"]},
                                                     below)
    return distributions.DiagGaussian(mean, log_var)

  def _walk(self, pick):
    """Ancestral pass: the layers and the z_l that pick(layer, l) chooses."""
    below, layers, zs = image_of(self.x), [], []
    for l in range(1, len(self.model.latent_dims) + 1):
      q = self._layer(l, below)
      below = pick(q, l)
      layers.append(q)
      zs.append(below)
    return layers, jnp.concatenate(zs)

  def sample(self, *, key: jax.Array) -> jax.Array:
    """z = [z1, ..., zL] drawn layer by layer, reparameterised: [latent_dim]."""
    keys = jax.random.split(key, len(self.model.latent_dims))
    return self._walk(lambda q, l: q.sample(key=keys[l - 1]))[1]

  def log_prob(self, z: jax.Array) -> jax.Array:
    """log q(z|x) = sum_l log q(z_l | z_{l-1}) for z [latent_dim]: []."""
    parts = self.model.split(z)
    below, total = image_of(self.x), 0.0
    for l, z_l in enumerate(parts, start=1):
      total = total + self._layer(l, below).log_prob(z_l)
      below = z_l
    return total

  @property
  def mean(self) -> jax.Array:
    """The means along the mean path, z_l = E[z_l | z_{l-1} = its mean]: [latent_dim]."""
    return self._walk(lambda q, l: q.mean)[1]

  @property
  def log_var(self) -> jax.Array:
    """log-variances of each q(z_l | z_{l-1}) along the mean path: [latent_dim]."""
    layers, _ = self._walk(lambda q, l: q.mean)
    return jnp.concatenate([q.log_var for q in layers])


@dataclasses.dataclass(frozen=True)
class HierarchicalVAE:
  """Stacked Gaussian layers (see the module docstring).

  Attributes:
    encoders: L modules; encoders[0] maps an image [H, W, C] to (mean, log_var)
      of z1, encoders[l] maps z_l to those of z_{l+1}.
    priors: L - 1 modules; priors[l - 1] maps z_{l+1} to (mean, log_var) of z_l.
    decoder: maps z1 to [H, W, C] likelihood parameters.
    likelihood, image_shape, gaussian_scale: as for `vae.VAE`.
    latent_dims: units per stochastic layer, bottom first (100, 50).
  """

  encoders: tuple
  priors: tuple
  decoder: object
  likelihood: str
  latent_dims: tuple[int, ...]
  image_shape: tuple[int, int, int]
  gaussian_scale: float = 1.0
  inference_groups: tuple[str, ...] = ("encoder",)
  has_closed_form_kl: bool = False

  @property
  def latent_dim(self) -> int:
    return int(sum(self.latent_dims))

  def split(self, z: jax.Array) -> list[jax.Array]:
    """[z1, ..., zL] from z [latent_dim]."""
    return jnp.split(z, np.cumsum(self.latent_dims)[:-1].tolist())

  def init(self, key: jax.Array) -> Params:
    keys = iter(jax.random.split(key, 2 * len(self.latent_dims) + 1))
    below = jnp.zeros(self.image_shape, jnp.float32)
    encoder = {}
    for l, (net, dim) in enumerate(zip(self.encoders, self.latent_dims), start=1):
      encoder[f"layer_{l}"] = net.init(next(keys), below)["params"]
      below = jnp.zeros((dim,), jnp.float32)
    return {"encoder": encoder, "decoder": self.init_decoder(keys), "likelihood": {}}

  def init_decoder(self, keys) -> Params:
    """The generative networks' params, drawing keys from the iterator `keys`."""
    decoder = {"x": self.decoder.init(next(keys), jnp.zeros((self.latent_dims[0],)))["params"]}
    for l, net in enumerate(self.priors, start=1):
      decoder[f"layer_{l}"] = net.init(next(keys), jnp.zeros((self.latent_dims[l],)))["params"]
    return decoder

  def with_output_bias(self, params: Params, bias) -> Params:
    """params with p(x|z1)'s output bias set to `bias` [H, W, C] (logits). Raises
    ValueError when p(x|z1) has no output layer of one bias per pixel."""
    decoder = {**params["decoder"], "x": decoder_with_output_bias(params["decoder"]["x"], bias)}
    return {**params, "decoder": decoder}

  def posterior(self, params: Params, x: Example) -> LayeredPosterior:
    return LayeredPosterior(self, params["encoder"], x)

  def prior(self, params: Params, x: Example = None) -> "LayeredPrior":
    return LayeredPrior(self, params["decoder"])

  def log_prior(self, params: Params, x: Example, z: jax.Array) -> jax.Array:
    """log p(z) = log N(zL; 0, I) + sum_{l<L} log p(z_l | z_{l+1}): []."""
    return self.prior(params).log_prob(z)

  def log_likelihood(self, params: Params, x: Example, z: jax.Array) -> jax.Array:
    """log p(x | z1) in nats (z1 is the bottom layer of z): []."""
    out = self.decoder.apply({"params": params["decoder"]["x"]}, self.split(z)[0])
    return log_density(self.likelihood, out, jnp.log(jnp.float32(self.gaussian_scale)),
                       image_of(x))

  def kl_per_dim(self, params: Params, x: Example, q) -> jax.Array:
    raise ValueError("a hierarchical VAE has no closed-form KL: use the Monte-Carlo KL "
                     "(analytic_kl=False)")

  def layer_kls(self, params: Params, x: Example, z: jax.Array) -> jax.Array:
    """log q(z_l | z_{l-1}) - log p(z_l | z_{l+1}) for each layer l at z ~ q(z|x):
    [L] nats. Its mean over z ~ q is the KL each layer contributes (the classic
    failure: a top layer at ~0, inactive); the sum is log q(z|x) - log p(z)."""
    q, p = self.posterior(params, x), self.prior(params, x)
    parts, below, kls = self.split(z), image_of(x), []
    for l, z_l in enumerate(parts, start=1):
      log_p = (distributions.standard_normal(self.latent_dims[-1]).log_prob(z_l)
               if l == len(parts) else p._layer(l, parts[l]).log_prob(z_l))
      kls.append(q._layer(l, below).log_prob(z_l) - log_p)
      below = z_l
    return jnp.stack(kls)

  def mean_image(self, params: Params, x: Example, z: jax.Array) -> jax.Array:
    """E[x|z1] in [0, 1]: [H, W, C]."""
    return mean_of(self.likelihood,
                   self.decoder.apply({"params": params["decoder"]["x"]}, self.split(z)[0]))


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True)
class LayeredPrior(ModelPytree):
  """p(zL) p(z_{L-1}|zL) ... p(z1|z2): sample top-down, log_prob of z [latent_dim]."""
  model: HierarchicalVAE
  params: Params  # the decoder's params

  def _layer(self, l: int, above: jax.Array) -> distributions.DiagGaussian:
    mean, log_var = self.model.priors[l - 1].apply({"params": self.params[f"layer_{l}"]}, above)
    return distributions.DiagGaussian(mean, log_var)

  def sample(self, *, key: jax.Array) -> jax.Array:
    dims = self.model.latent_dims
    keys = jax.random.split(key, len(dims))
    z = [distributions.standard_normal(dims[-1]).sample(key=keys[-1])]
    for l in range(len(dims) - 1, 0, -1):
      z.insert(0, self._layer(l, z[0]).sample(key=keys[l - 1]))
    return jnp.concatenate(z)

  def log_prob(self, z: jax.Array) -> jax.Array:
    parts = self.model.split(z)
    total = distributions.standard_normal(self.model.latent_dims[-1]).log_prob(parts[-1])
    for l in range(1, len(parts)):
      total = total + self._layer(l, parts[l]).log_prob(parts[l - 1])
    return total


def make_hvae(*, image_shape: Sequence[int], latent_dims: Sequence[int],
              hidden: Sequence[Sequence[int]], likelihood: str = "bernoulli",
              activation: str = "tanh", gaussian_scale: float = 1.0) -> HierarchicalVAE:
  """A hierarchical VAE; hidden[l] are the deterministic widths between stochastic
  layer l and l + 1 (layer 0 is x), used bottom-up in q and mirrored top-down in p.

  Raises ValueError for an unknown likelihood or mismatched lengths.
  """
  if likelihood not in LIKELIHOODS or likelihood == "gaussian_learned":
    raise ValueError(f"likelihood {likelihood!r} is not available for a hierarchical VAE; "
                     f"valid: {[l for l in LIKELIHOODS if l != 'gaussian_learned']}")
  latent_dims = tuple(int(d) for d in latent_dims)
  hidden = tuple(tuple(int(w) for w in h) for h in hidden)
  if len(hidden) != len(latent_dims) or not latent_dims or min(latent_dims) < 1:
    raise ValueError(f"a hierarchical VAE needs one hidden tuple per stochastic layer and "
                     f"layers of >= 1 unit: latent_dims={latent_dims}, hidden={hidden}")
  image_shape = tuple(int(d) for d in image_shape)
  encoders = tuple(nets.MLPEncoder(hidden[0], latent_dims[0], activation)
                   if l == 0 else nets.ConditionalGaussian(hidden[l], latent_dims[l], activation)
                   for l in range(len(latent_dims)))
  priors = tuple(nets.ConditionalGaussian(hidden[l][::-1], latent_dims[l - 1], activation)
                 for l in range(1, len(latent_dims)))
  decoder = nets.MLPDecoder(hidden[0][::-1], image_shape, activation)
  return HierarchicalVAE(encoders, priors, decoder, likelihood, latent_dims, image_shape,
                         float(gaussian_scale))

"""The ladder VAE (Sonderby et al. 2016): top-down inference that shares the
generative model's top-down Gaussians.

Generative model as in `hvae`: p(zL) = N(0, I), p(z_l | z_{l+1}) ... p(x | z1).
Inference first runs a deterministic bottom-up pass d_1 = f_1(x), d_l = f_l(d_{l-1})
with a Gaussian N(mu_hat_l, var_hat_l) read off each d_l, then samples top-down:

  q(zL | x)             = N(mu_hat_L, var_hat_L)
  q(z_l | z_{l+1}, x)   = N(mu_hat_l, var_hat_l) * p(z_l | z_{l+1}), normalised:
                          the precision-weighted merge (precisions add).

So q depends on the decoder's prior networks as well as the encoder. The posterior
pytree holds both (and the example): `tree_map(stop_gradient, q)` stops every
variational parameter, shared ones included, and z keeps its path derivative into
the shared prior networks. That is what makes STL and DReG right here: for a
parameter of both p and q, DReG's surrogate gives sum_k w_k grad log p(x, z_k) at
fixed z (its generative role) plus sum_k w_k^2 d log w_k / d z_k dz_k/dtheta (its
variational role), the decomposition of Bauer & Mnih 2021 ("Generalized doubly
reparameterized gradient estimators"); tested against the pathwise IWAE gradient.
RWS is refused in config: its wake-phase q update would also move the shared prior.

No batch norm (Sonderby et al. used it; its running statistics would be state the
train step does not carry). KL warm-up is `config.kl_warmup_steps`. There is no
closed-form KL(q(z|x) || p(z)), but q(z_l | z_{l+1}, x) and p(z_l | z_{l+1}) are
Gaussians given the same z_{l+1}, so their KL per unit is closed-form at a draw
of the layers above (`conditional_kl_per_dim`); its mean over the draw is the KL.
`analytic_kl=True` trains the ELBO with it, which is what free bits (per unit)
need. Params: {"encoder": {"layer_1",
..., "layer_L"}, "decoder": {"x", "layer_1", ..., "layer_{L-1}"}, "likelihood": {}},
the decoder as in `hvae`; encoder["layer_l"] is f_l and its Gaussian head.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vaejax import distributions, nets
from vaejax.models import hvae
from vaejax.models.base import Example, Params, image_of


class LadderUp(nn.Module):
  """One bottom-up rung: h [F] (an image is flattened) -> Dense layers -> d [hidden[-1]],
  and the rung's Gaussian (mean, log_var) [latent_dim] read off d."""

  hidden: Sequence[int]
  latent_dim: int
  activation: str = "tanh"

  @nn.compact
  def __call__(self, h):
    act = nets.activation_fn(self.activation)
    for i, width in enumerate(self.hidden):
      h = act(nn.Dense(width, name=f"hidden_{i}")(h))
    return (h, *nets.GaussianHead(self.latent_dim, name="head")(h))


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True)
class LadderPosterior(hvae.ModelPytree):
  """q(zL | x) q(z_{L-1} | zL, x) ... q(z1 | z2, x) of one example (module docstring)."""
  model: "LadderVAE"
  params: Params  # {"encoder": ..., "decoder": ...}: q uses the prior networks too
  x: Example

  def bottom_up(self) -> list[distributions.DiagGaussian]:
    """N(mu_hat_l, var_hat_l) for l = 1..L (bottom first), from the deterministic pass."""
    h, out = image_of(self.x).reshape(-1), []
    for l, net in enumerate(self.model.encoders, start=1):
      h, mean, log_var = net.apply({"params": self.params["encoder"][f"layer_{l}"]}, h)
      out.append(distributions.DiagGaussian(mean, log_var))
    return out

  def _pair(self, up: list, l: int, above) -> tuple[distributions.DiagGaussian, ...]:
    """(q(z_l | z_{l+1}, x), p(z_l | z_{l+1})): for l = L the top rung alone and N(0, I),
    else the rung's merge with the prior, and the prior."""
    if l == len(up):
      return up[-1], distributions.standard_normal(self.model.latent_dims[-1])
    prior = hvae.LayeredPrior(self.model, self.params["decoder"])._layer(l, above)
    return up[l - 1].precision_weighted(prior), prior

  def _layer(self, up: list, l: int, above) -> distributions.DiagGaussian:
    return self._pair(up, l, above)[0]

  def _walk(self, pick):
    """Top-down pass: the layers (bottom first) and z = [z1, ..., zL] that pick chose."""
    up = self.bottom_up()
    layers, zs, above = [], [], None
    for l in range(len(up), 0, -1):
      q = self._layer(up, l, above)
      above = pick(q, l)
      layers.insert(0, q)
      zs.insert(0, above)
    return layers, jnp.concatenate(zs)

  def sample(self, *, key: jax.Array) -> jax.Array:
    """z = [z1, ..., zL] drawn top-down, reparameterised: [latent_dim]."""
    keys = jax.random.split(key, len(self.model.latent_dims))
    return self._walk(lambda q, l: q.sample(key=keys[l - 1]))[1]

  def layer_log_probs(self, z: jax.Array) -> jax.Array:
    """log q(z_l | z_{l+1}, x) for each layer l, bottom first: [L]."""
    up, parts = self.bottom_up(), self.model.split(z)
    above = lambda l: parts[l] if l < len(parts) else None  # noqa: E731  (z_{l+1})
    return jnp.stack([self._layer(up, l, above(l)).log_prob(parts[l - 1])
                      for l in range(1, len(parts) + 1)])

  def log_prob(self, z: jax.Array) -> jax.Array:
    """log q(z|x) for z [latent_dim]: []."""
    return jnp.sum(self.layer_log_probs(z))

  def conditional_kl_per_dim(self, z: jax.Array) -> jax.Array:
    """KL(q(z_l | z_{l+1}, x) || p(z_l | z_{l+1})) per unit, in closed form, with each
    z_{l+1} taken from z (z_l itself is not read; the top layer against N(0, I)):
    [latent_dim] nats, bottom layer first. q and p condition on the same z_{l+1},
    so its mean over z ~ q(z|x) is KL(q(z|x) || p(z)) (the chain rule of KL)."""
    up, parts = self.bottom_up(), self.model.split(z)
    pairs = [self._pair(up, l, parts[l] if l < len(parts) else None)
             for l in range(1, len(parts) + 1)]
    return jnp.concatenate([q.kl_per_dim(p) for q, p in pairs])

  @property
  def mean(self) -> jax.Array:
    """Means along the mean path (each layer's mean given the means above): [latent_dim]."""
    return self._walk(lambda q, l: q.mean)[1]

  @property
  def log_var(self) -> jax.Array:
    """log-variances of each q(z_l | z_{l+1}, x) along the mean path: [latent_dim]."""
    return jnp.concatenate([q.log_var for q in self._walk(lambda q, l: q.mean)[0]])


@dataclasses.dataclass(frozen=True)
class LadderVAE(hvae.HierarchicalVAE):
  """`hvae.HierarchicalVAE`'s generative model with ladder inference: encoders are
  `LadderUp` rungs; everything about p (prior, likelihood, pictures) is inherited."""

  def init(self, key: jax.Array) -> Params:
    keys = iter(jax.random.split(key, 2 * len(self.latent_dims) + 1))
    h = jnp.zeros((math.prod(self.image_shape),), jnp.float32)
    encoder = {}
    for l, net in enumerate(self.encoders, start=1):
      encoder[f"layer_{l}"] = net.init(next(keys), h)["params"]
      h = jnp.zeros((net.hidden[-1],), jnp.float32)
    return {"encoder": encoder, "decoder": self.init_decoder(keys), "likelihood": {}}

  def posterior(self, params: Params, x: Example) -> LadderPosterior:
    return LadderPosterior(self, {"encoder": params["encoder"], "decoder": params["decoder"]}, x)

  def conditional_kl_per_dim(self, params: Params, x: Example, z: jax.Array) -> jax.Array:
    """The analytic KL per unit given the layers above (LadderPosterior's): [latent_dim]
    nats at z [latent_dim] ~ q(z|x). With analytic_kl=True the pathwise ELBO uses its
    mean over the K draws in place of the Monte-Carlo KL, as Sonderby et al. do, and
    free bits and capacity control apply per unit (objectives.make_kl_penalty), to
    that draw's KL: below the top layer a floor acts on a draw-dependent value, and
    E max(KL_d, L) >= max(E KL_d, L). STL keeps the Monte-Carlo KL in its objective;
    its logged kl is then this one."""
    return self.posterior(params, x).conditional_kl_per_dim(z)

  def layer_kls(self, params: Params, x: Example, z: jax.Array) -> jax.Array:
    """log q(z_l | z_{l+1}, x) - log p(z_l | z_{l+1}) per layer at z ~ q(z|x): [L] nats
    (the top layer against N(0, I)); the sum is log q(z|x) - log p(z)."""
    parts, prior = self.split(z), self.prior(params, x)
    log_p = [prior._layer(l, parts[l]).log_prob(parts[l - 1]) for l in range(1, len(parts))]
    log_p.append(distributions.standard_normal(self.latent_dims[-1]).log_prob(parts[-1]))
    return self.posterior(params, x).layer_log_probs(z) - jnp.stack(log_p)


def make_ladder_vae(*, image_shape: Sequence[int], latent_dims: Sequence[int],
                    hidden: Sequence[Sequence[int]], likelihood: str = "bernoulli",
                    activation: str = "tanh", gaussian_scale: float = 1.0) -> LadderVAE:
  """A ladder VAE; hidden[l] are the widths of bottom-up rung l + 1 (from x, or from
  the rung below, to d_{l+1}), mirrored top-down in p as in `hvae.make_hvae`.

  Raises ValueError for an unknown likelihood, mismatched lengths or an empty rung.
  """
  base = hvae.make_hvae(image_shape=image_shape, latent_dims=latent_dims, hidden=hidden,
                        likelihood=likelihood, activation=activation, gaussian_scale=gaussian_scale)
  hidden = tuple(tuple(int(w) for w in h) for h in hidden)
  if any(not h for h in hidden):
    raise ValueError(f"every ladder rung needs >= 1 deterministic layer: hidden={hidden}")
  rungs = tuple(LadderUp(h, d, activation) for h, d in zip(hidden, base.latent_dims))
  return LadderVAE(rungs, base.priors, base.decoder, base.likelihood, base.latent_dims,
                   base.image_shape, base.gaussian_scale)

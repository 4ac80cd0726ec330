"""Priors p(z) that an autoencoder's aggregate posterior is matched to.

The adversarial autoencoder (Makhzani et al. 2015) needs only samples of its
prior, so the prior can be any distribution; these are the paper's three:

  gaussian     N(0, I) in latent_dim dimensions
  mixture2d    10 Gaussians on a circle in 2-D (radius 4, sd 0.5 each), weight 1/10
  swissroll2d  a swiss roll in 2-D: a spiral of 1.5 turns with Gaussian jitter

Each prior samples with an explicit key, optionally given a class label (the
supervised AAE sends digit c to mixture component c, or to the c-th tenth of the
roll); `mixture2d` and `gaussian` also have a log-density, the swiss roll none.
Pure pytrees of static settings: they pass through jit and vmap.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional

import jax
import jax.numpy as jnp

PRIORS = ("gaussian", "mixture2d", "swissroll2d")
NUM_COMPONENTS = 10


class NoDensityError(ValueError):
  """The prior is known only through samples (the swiss roll)."""


@dataclasses.dataclass(frozen=True)
class Gaussian:
  """N(0, I) in `dim` dimensions; a label, if given, is ignored."""
  dim: int
  has_density = True

  def sample(self, *, key: jax.Array, label: Optional[jax.Array] = None) -> jax.Array:
    """[dim]."""
    del label
    return jax.random.normal(key, (self.dim,))

  def log_prob(self, z: jax.Array, label: Optional[jax.Array] = None) -> jax.Array:
    """log N(z; 0, I) for z [dim]: [] nats."""
    del label
    return -0.5 * jnp.sum(jnp.square(z)) - 0.5 * self.dim * math.log(2 * math.pi)


@dataclasses.dataclass(frozen=True)
class Mixture2D:
  """An equal-weight mixture of `num_components` isotropic Gaussians (sd `scale`)
  whose means sit evenly on a circle of `radius` in 2-D."""
  num_components: int = NUM_COMPONENTS
  radius: float = 4.0
  scale: float = 0.5
  dim = 2
  has_density = True

  @property
  def means(self) -> jax.Array:
    """[num_components, 2]; component k at angle 2 pi k / num_components."""
    angle = 2 * jnp.pi * jnp.arange(self.num_components) / self.num_components
    return self.radius * jnp.stack([jnp.cos(angle), jnp.sin(angle)], -1)

  def sample(self, *, key: jax.Array, label: Optional[jax.Array] = None) -> jax.Array:
    """[2]: from component `label` when given, else from a uniformly drawn one."""
    pick, noise = jax.random.split(key)
    if label is None:
      label = jax.random.randint(pick, (), 0, self.num_components)
    return self.means[label] + self.scale * jax.random.normal(noise, (2,))

  def component_log_probs(self, z: jax.Array) -> jax.Array:
    """log N(z; mean_k, scale^2 I) for each component: [num_components]."""
    sq = jnp.sum(jnp.square(z - self.means), -1)
    return -0.5 * sq / self.scale ** 2 - 2 * math.log(self.scale) - math.log(2 * math.pi)

  def log_prob(self, z: jax.Array, label: Optional[jax.Array] = None) -> jax.Array:
    """log p(z) (log p(z | component = label) when given) for z [2]: []."""
    per_component = self.component_log_probs(z)
    if label is not None:
      return per_component[label]
    return jax.nn.logsumexp(per_component) - math.log(self.num_components)

  def component(self, z: jax.Array) -> jax.Array:
    """The nearest mean's index for z [..., 2]: [...] int32."""
    sq = jnp.sum(jnp.square(z[..., None, :] - self.means), -1)
    return jnp.argmin(sq, -1).astype(jnp.int32)


@dataclasses.dataclass(frozen=True)
class SwissRoll2D:
  """t ~ U(0, 1) (U(c/10, (c+1)/10) given label c), angle a = pi (1 + 3 t),
  z = (a / pi) (cos a, sin a) + jitter * N(0, I): a spiral from radius 1 to 4."""
  jitter: float = 0.1
  num_segments: int = NUM_COMPONENTS
  dim = 2
  has_density = False

  def sample(self, *, key: jax.Array, label: Optional[jax.Array] = None) -> jax.Array:
    """[2]."""
    position, noise = jax.random.split(key)
    t = jax.random.uniform(position)
    if label is not None:
      t = (label + t) / self.num_segments
    angle = jnp.pi * (1.0 + 3.0 * t)
    return angle / jnp.pi * jnp.stack([jnp.cos(angle), jnp.sin(angle)]) + (
        self.jitter * jax.random.normal(noise, (2,)))

  def log_prob(self, z: jax.Array, label: Optional[jax.Array] = None) -> jax.Array:
    raise NoDensityError("the swiss-roll prior has no closed-form density; it is known "
                         "through samples only")


def make_latent_prior(name: str, latent_dim: int):
  """The prior `name` (one of PRIORS) over z [latent_dim].

  Raises ValueError for an unknown name, or a 2-D prior with latent_dim != 2.
  """
  if name not in PRIORS:
    raise ValueError(f"unknown latent prior {name!r}; valid: {list(PRIORS)}")
  if name == "gaussian":
    return Gaussian(int(latent_dim))
  if latent_dim != 2:
    raise ValueError(f"latent prior {name!r} lives in 2-D; latent_dim={latent_dim}")
  return Mixture2D() if name == "mixture2d" else SwissRoll2D()


@dataclasses.dataclass(frozen=True)
class GivenLabel:
  """A prior conditioned on one example's class (the supervised AAE's p(z | c)):
  sample(key=) and log_prob(z) as the protocol's prior(params, x) returns them."""
  prior: object
  label: Optional[jax.Array]

  def sample(self, *, key: jax.Array) -> jax.Array:
    return self.prior.sample(key=key, label=self.label)

  def log_prob(self, z: jax.Array) -> jax.Array:
    return self.prior.log_prob(z, self.label)

"""The conditional VAE (Sohn, Lee & Yan 2015): q(z|x, c), p(x|z, c), p(z) or p(z|c).

A condition turns one example into features c and says which pixels the
likelihood scores:

  label      c = one-hot class label [num_classes]; every pixel is scored
             (class-conditioned generation; the example needs "label").
  quadrants  c = the observed quadrants of the image (others zeroed) [H*W*C];
             only the missing pixels are scored: Sohn et al.'s image completion,
             log p(x_missing | x_observed) (observed: 1 = bottom-left, 2 = left
             half, 3 = all but bottom-right, as in the Pyro reproduction).

With prior='learned' a prior network gives p(z|c) (params["prior"]); the
generative model is then p(z|c) p(x|z, c) and q(z|x, c) proposes for it.
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from vaejax import nets
from vaejax.models.base import Example, image_of
from vaejax.models.vae import VAE, COMPUTE_DTYPES, check_choices, make_nets

CONDITIONS = ("label", "quadrants")
PRIORS = ("standard_normal", "learned")
NUM_CLASSES = 10


@dataclasses.dataclass(frozen=True)
class LabelCondition:
  """c = one_hot(label) [num_classes]; the likelihood scores every pixel."""
  num_classes: int = NUM_CLASSES
  target_mask: Optional[np.ndarray] = None

  @property
  def num_features(self) -> int:
    return self.num_classes

  def features(self, x: Example) -> jax.Array:
    return jax.nn.one_hot(x["label"], self.num_classes, dtype=jnp.float32)


def observed_quadrants_mask(image_shape: Sequence[int], num_observed: int) -> np.ndarray:
  """[H, W, C] float32 of 1 where the pixel is observed: 1 -> bottom-left quadrant,
  2 -> left half, 3 -> all but the bottom-right quadrant."""
  if num_observed not in (1, 2, 3):
    raise ValueError(f"num_observed quadrants must be 1, 2 or 3, got {num_observed}")
  h, w, c = image_shape
  mask = np.zeros((h, w, c), np.float32)
  mask[h // 2:, : w // 2] = 1.0
  if num_observed >= 2:
    mask[:, : w // 2] = 1.0
  if num_observed == 3:
    mask[: h // 2, :] = 1.0
  return mask


@dataclasses.dataclass(frozen=True, eq=False)
class QuadrantCondition:
  """c = the observed quadrants, flattened [H*W*C]; the likelihood scores the rest.

  eq=False: the masks are arrays; a model is a static jit argument, hashed by identity.
  """
  observed_mask: np.ndarray  # [H, W, C], 1 = observed

  @property
  def num_features(self) -> int:
    return int(self.observed_mask.size)

  @property
  def target_mask(self) -> np.ndarray:
    return 1.0 - self.observed_mask

  def features(self, x: Example) -> jax.Array:
    return (image_of(x) * self.observed_mask).reshape(-1)


def make_cvae(*, architecture: str, image_shape: Sequence[int], latent_dim: int,
              hidden: Sequence[int], likelihood: str = "bernoulli", activation: str = "relu",
              gaussian_scale: float = 1.0, compute_dtype: str = "float32",
              condition: str = "label", observed_quadrants: int = 1,
              prior: str = "standard_normal", num_classes: int = NUM_CLASSES) -> VAE:
  """A CVAE by name (see the module docstring); the nets are the VAE's, with the
  condition features appended to the encoder's features and to z. The learned
  prior network has the encoder's hidden widths. latent_dim = 0 gives the
  deterministic baseline network p(x|c) (no encoder, no prior).

  Raises ValueError for an unknown condition, prior, architecture or likelihood.
  """
  check_choices(architecture=architecture, likelihood=likelihood, compute_dtype=compute_dtype)
  if condition not in CONDITIONS:
    raise ValueError(f"unknown condition {condition!r}; valid: {list(CONDITIONS)}")
  if prior not in PRIORS:
    raise ValueError(f"unknown prior {prior!r}; valid: {list(PRIORS)}")
  image_shape = tuple(int(d) for d in image_shape)
  if condition == "label":
    cond = LabelCondition(num_classes)
  else:
    cond = QuadrantCondition(observed_quadrants_mask(image_shape, observed_quadrants))
  encoder, decoder = make_nets(architecture=architecture, image_shape=image_shape,
                               latent_dim=max(latent_dim, 1), hidden=hidden, activation=activation,
                               compute_dtype=compute_dtype)
  if latent_dim == 0:  # the deterministic NN baseline p(x|c): no latent to infer or draw
    return VAE(None, decoder, likelihood, 0, image_shape, float(gaussian_scale), condition=cond)
  prior_net = None
  if prior == "learned":
    prior_net = nets.ConditionalGaussian(tuple(int(h) for h in hidden), latent_dim, activation,
                                         COMPUTE_DTYPES[compute_dtype])
  return VAE(encoder, decoder, likelihood, int(latent_dim), image_shape, float(gaussian_scale),
             condition=cond, prior_net=prior_net)

"""Joint posteriors built from per-modality Gaussian experts, for ONE example.

A multimodal VAE encodes each observed modality m into a Gaussian expert
q_m(z|x_m) and combines the experts of the modalities present (a mask) into one
posterior q(z|X):

  product_of_experts   the normalised product, prior expert included (MVAE, Wu &
                       Goodman 2018): precisions add, the mean is the precision-
                       weighted average; computed in log-variance space, so an
                       expert of variance 1e-8 or 1e8 neither overflows nor underflows
  MixtureOfGaussians   a mixture of Gaussians with fixed weights: the uniform mixture
                       of the present unimodal experts (MMVAE, Shi et al. 2019), or of
                       the products over every subset of them (MoPoE, Sutter et al. 2021)

An absent expert drops out exactly: its weight in the product is exp(-inf) = 0,
whatever its entries (NaN included); its mixture weight is -inf in log space,
and a mixture's absent entries must be finite (the model zeroes them). Shapes: E experts (or C mixture
components) over a latent of D dimensions.
"""
from __future__ import annotations

import itertools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from vaejax.distributions import DiagGaussian

Array = jax.Array


def product_of_experts(means: Array, log_vars: Array, mask: Array) -> DiagGaussian:
  """The normalised product of the experts where mask is 1: a DiagGaussian [D].

  means, log_vars: [E, D]; mask: [E] of 0/1 (at least one 1: pass the prior
  expert N(0, I) with mask 1 to keep the product proper). Precision 1/var is the
  sum of the present experts' precisions and the mean their precision-weighted
  average; both are computed from softmax/logsumexp over -log_var, so no
  precision is ever formed.
  """
  present = mask[:, None] > 0
  neg_log_var = jnp.where(present, -log_vars, -jnp.inf)
  log_var = -jax.nn.logsumexp(neg_log_var, axis=0)
  weights = jax.nn.softmax(neg_log_var, axis=0)  # var_e^-1 / sum of precisions, per dim
  mean = jnp.sum(weights * jnp.where(present, means, 0.0), axis=0)
  return DiagGaussian(mean, log_var)


class MixtureOfGaussians(NamedTuple):
  """sum_c pi_c N(z; mean_c, diag(exp(log_var_c))) with fixed weights.

  means, log_vars: [C, D]; log_weights: [C], log pi_c (-inf for an absent
  component), normalised. A pytree: it passes through jit and vmap, and
  tree_map(stop_gradient, q) stops its parameters (DReG, STL).
  """

  means: Array
  log_vars: Array
  log_weights: Array

  @property
  def mean(self) -> Array:
    """The mixture's mean sum_c pi_c mean_c: [D]."""
    return jnp.sum(jnp.exp(self.log_weights)[:, None] * self.means, axis=0)

  def component(self, c) -> DiagGaussian:
    return DiagGaussian(self.means[c], self.log_vars[c])

  def sample(self, *, key: Array) -> Array:
    """One draw: a component c ~ pi, then z = mean_c + sigma_c * eps, reparameterised
    in the component's mean and scale (the weights are not learned). [D]."""
    pick_key, noise_key = jax.random.split(key)
    c = jax.random.categorical(pick_key, self.log_weights)
    return self.component(c).sample(key=noise_key)

  def stratified_sample(self, *, key: Array, num_samples: int) -> Array:
    """K reparameterised draws from EVERY component (Shi et al.'s stratified
    sampling): [C, K, D]; an absent component's draws are finite and weighted 0."""
    keys = jax.random.split(key, (self.means.shape[0], num_samples))
    draw = lambda mean, log_var, k: DiagGaussian(mean, log_var).sample(key=k)  # noqa: E731
    over_k = jax.vmap(draw, in_axes=(None, None, 0))
    return jax.vmap(over_k)(self.means, self.log_vars, keys)

  def log_prob(self, z: Array) -> Array:
    """log q(z) = logsumexp_c (log pi_c + log N(z; mean_c, var_c)) for z [D]: []."""
    log_components = jax.vmap(lambda m, v: DiagGaussian(m, v).log_prob(z))(
        self.means, self.log_vars)
    return jax.nn.logsumexp(self.log_weights + log_components)


def uniform_log_weights(mask: Array) -> Array:
  """log pi for the uniform mixture over components where mask is 1: [C]."""
  present = mask > 0
  return jnp.where(present, -jnp.log(jnp.sum(present).astype(jnp.float32)), -jnp.inf)


def nonempty_subsets(num_modalities: int) -> np.ndarray:
  """Every non-empty subset of M modalities as rows of 0/1: [2^M - 1, M], smallest first."""
  rows = [np.isin(np.arange(num_modalities), s).astype(np.float32)
          for size in range(1, num_modalities + 1)
          for s in itertools.combinations(range(num_modalities), size)]
  return np.stack(rows)


def mixture_of_products(means: Array, log_vars: Array, mask: Array,
                        subsets: np.ndarray) -> MixtureOfGaussians:
  """MoPoE's q(z|X): the uniform mixture, over the subsets of present modalities,
  of each subset's product of experts (prior expert included).

  means, log_vars: [M, D] unimodal experts; mask: [M] present modalities; subsets:
  [S, M] 0/1 rows (`nonempty_subsets`). A subset holding an absent modality gets
  weight 0, so with one modality missing the mixture runs over the subsets of the
  others. Returns a mixture of S components.
  """
  prior_means = jnp.zeros_like(means[:1])
  all_means = jnp.concatenate([means, prior_means])
  all_log_vars = jnp.concatenate([log_vars, jnp.zeros_like(log_vars[:1])])

  def product(subset):
    return product_of_experts(all_means, all_log_vars, jnp.concatenate([subset, jnp.ones(1)]))

  products = jax.vmap(product)(jnp.asarray(subsets))
  valid = jnp.all(jnp.asarray(subsets) <= mask[None, :], axis=1)
  return MixtureOfGaussians(products.mean, products.log_var, uniform_log_weights(valid))

"""A learned autoregressive prior over a trained VQ-VAE's code grid (stage 2 of
van den Oord et al. 2017).

The VQ-VAE trains under a uniform prior over the K^P code grids; afterwards a
prior p(z) = prod_i p(z_i | z_<i) (raster order over the P grid positions) is
fitted by maximum likelihood to the codes its frozen encoder gives the training
images, here with a small causal transformer (the paper used a PixelCNN; any
autoregressive model fits). Sampling: codes from the prior, then the frozen
decoder. The bound on the log-likelihood becomes

  log p(x) >= log p(x | z_q(x)) + log p(z_q(x))   (nats; q is a point mass)

which replaces the uniform prior's constant -P log K by what the prior learned.

Params: {"prior": the transformer's, "vqvae": the stage-1 VQ-VAE's}. "vqvae" is
a state group that nothing updates: the objective reads it under stop_gradient
(zero gradient, zero Adam update), and it is loaded by `load_vqvae_params` at
init, so a stage-2 checkpoint holds the whole model.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from vaejax.models.base import Example, Params
from vaejax.models.vqvae import VQVAE

sg = jax.lax.stop_gradient


class CausalTransformer(nn.Module):
  """Codes as one-hot rows [P, K] -> next-code logits [P, K]: row i depends on
  rows < i only (inputs shifted right behind a learned start vector, causal
  self-attention). One-hot floats, not integers, so that the masking can be
  checked with a Jacobian. dropout: the rate on the embedding and on every
  residual branch (GPT-2's residual dropout), applied only when called with
  deterministic=False and a "dropout" rng; it adds no params."""
  num_codes: int
  num_positions: int
  width: int = 64
  depth: int = 2
  heads: int = 4
  dropout: float = 0.0

  @nn.compact
  def __call__(self, one_hot: jax.Array, *, deterministic: bool = True) -> jax.Array:
    small = nn.initializers.normal(0.02)
    drop = nn.Dropout(self.dropout, deterministic=deterministic or not self.dropout)
    h = nn.Dense(self.width, use_bias=False, name="embed")(one_hot)
    start = self.param("start", small, (1, self.width))
    h = jnp.concatenate([start, h[:-1]], axis=0)  # position i sees codes 0..i-1
    h = drop(h + self.param("position", small, (self.num_positions, self.width)))
    mask = nn.make_causal_mask(jnp.ones((self.num_positions,)))  # [1, P, P]
    for i in range(self.depth):
      a = nn.LayerNorm(name=f"attention_norm_{i}")(h)
      h = h + drop(nn.MultiHeadDotProductAttention(self.heads, name=f"attention_{i}")(
          a, a, mask=mask))
      m = nn.LayerNorm(name=f"mlp_norm_{i}")(h)
      m = nn.Dense(4 * self.width, name=f"mlp_in_{i}")(m)
      h = h + drop(nn.Dense(self.width, name=f"mlp_out_{i}")(nn.gelu(m)))
    return nn.Dense(self.num_codes, name="logits")(nn.LayerNorm(name="out_norm")(h))


@dataclasses.dataclass(frozen=True)
class AutoregressiveCodes:
  """p(z) = prod_i Categorical(z_i; logits_i(z_<i)) over a code grid z [P] int32."""
  network: CausalTransformer
  params: Params

  def logits(self, z: jax.Array, *, dropout_key: jax.Array | None = None) -> jax.Array:
    """[P, K] for codes z [P]; with dropout_key, under the network's dropout."""
    one_hot = jax.nn.one_hot(z, self.network.num_codes, dtype=jnp.float32)
    if dropout_key is None:
      return self.network.apply({"params": self.params}, one_hot)
    return self.network.apply({"params": self.params}, one_hot, deterministic=False,
                              rngs={"dropout": dropout_key})

  def log_prob(self, z: jax.Array, *, dropout_key: jax.Array | None = None) -> jax.Array:
    """sum_i log p(z_i | z_<i), teacher-forced in one pass: [] nats (under dropout,
    for training, given dropout_key)."""
    log_p = jax.nn.log_softmax(self.logits(z, dropout_key=dropout_key), axis=-1)
    return jnp.sum(jnp.take_along_axis(log_p, z[:, None].astype(jnp.int32), axis=-1))

  def sample(self, *, key: jax.Array, temperature: float = 1.0) -> jax.Array:
    """Ancestral sampling, one position per network pass (P passes): [P] int32;
    position i draws with fold_in(key, i).

    temperature T > 0 draws each z_i from softmax(logits_i / T): T = 1 is the
    prior itself; T < 1 sharpens every conditional, trading diversity for
    typical samples (as in autoregressive image and text models generally; it is
    not p(z)^(1/T) renormalised over whole grids). Raises ValueError for a T that
    is not finite and > 0 (a traced T is not checked)."""
    try:
      concrete = float(temperature)
    except TypeError:  # traced (jax.errors.ConcretizationTypeError): checked by the caller
      concrete = None
    if concrete is not None and not (math.isfinite(concrete) and concrete > 0):
      raise ValueError(f"temperature must be finite and > 0, got {temperature}")

    def draw(i, z):
      logits = self.logits(z)[i] / temperature
      return z.at[i].set(jax.random.categorical(jax.random.fold_in(key, i), logits))
    return jax.lax.fori_loop(0, self.network.num_positions, draw,
                             jnp.zeros((self.network.num_positions,), jnp.int32))


@dataclasses.dataclass(frozen=True)
class VQPrior:
  """The stage-1 VQ-VAE (frozen) with a learned prior over its codes; see the
  module docstring. load_vqvae_params() -> the stage-1 params (read once, at init)."""
  vqvae: VQVAE
  network: CausalTransformer
  load_vqvae_params: Callable[[], Params] = dataclasses.field(compare=False)
  inference_groups: tuple[str, ...] = ("vqvae",)
  state_groups: tuple[str, ...] = ("vqvae",)
  has_closed_form_kl = False

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return self.vqvae.image_shape

  @property
  def latent_dim(self) -> int:
    return self.vqvae.latent_dim

  def init(self, key: jax.Array) -> Params:
    one_hot = jnp.zeros((self.latent_dim, self.vqvae.num_codes), jnp.float32)
    with jax.ensure_compile_time_eval():  # a file read: eager even when init is traced
      vqvae = self.load_vqvae_params()
    return {"prior": self.network.init(key, one_hot)["params"], "vqvae": vqvae}

  def _vq(self, params: Params) -> Params:
    return jax.tree_util.tree_map(sg, params["vqvae"])

  def posterior(self, params: Params, x: Example):
    """The frozen encoder's nearest codes (a point mass)."""
    return self.vqvae.posterior(self._vq(params), x)

  def prior(self, params: Params, x: Example = None) -> AutoregressiveCodes:
    return AutoregressiveCodes(self.network, params["prior"])

  def log_prior(self, params: Params, x: Example, z: jax.Array) -> jax.Array:
    return self.prior(params, x).log_prob(z)

  def log_likelihood(self, params: Params, x: Example, z: jax.Array) -> jax.Array:
    return self.vqvae.log_likelihood(self._vq(params), x, z)

  def mean_image(self, params: Params, x: Example, z: jax.Array) -> jax.Array:
    return self.vqvae.mean_image(self._vq(params), x, z)

  def objective(self, params: Params, x: Example, *, key: jax.Array, step=0):
    """(log p(z_q(x)), metrics) for one example: maximum likelihood of the frozen
    encoder's codes. metrics (nats): loss = prior_nll = -log p(z_q); recon =
    -log p(x|z_q); kl = -log p(z_q) (the point mass's KL to the prior); neg_elbo =
    recon + kl, the bound on -log p(x)."""
    del key, step
    return self._objective(params, x, dropout_key=None)

  def training_objective(self, params: Params, x: Example, *, key: jax.Array, step=0):
    """`objective` with the prior's dropout drawn from key (the train step's loss)."""
    del step
    return self._objective(params, x, dropout_key=key)

  def _objective(self, params, x, *, dropout_key):
    codes = self.posterior(params, x).mean
    log_pz = self.prior(params, x).log_prob(codes, dropout_key=dropout_key)
    recon = -self.log_likelihood(params, x, codes)
    return log_pz, {"loss": -log_pz, "prior_nll": -log_pz, "recon": recon, "kl": -log_pz,
                    "neg_elbo": recon - log_pz}

  def dataset_metrics(self, params: Params, examples: Any) -> dict:
    """The frozen codebook's use over the split (VQVAE.dataset_metrics)."""
    return self.vqvae.dataset_metrics(params["vqvae"], examples)


def make_vq_prior(vqvae: VQVAE, load_vqvae_params: Callable[[], Params], *, width: int = 64,
                  depth: int = 2, heads: int = 4, dropout: float = 0.0) -> VQPrior:
  """A learned prior for `vqvae`'s code grid, with `dropout` in training. Raises
  ValueError when heads does not divide width or dropout is outside [0, 1)."""
  if width % heads:
    raise ValueError(f"prior width {width} is not divisible by {heads} heads")
  if not 0 <= dropout < 1:
    raise ValueError(f"prior dropout {dropout} is outside [0, 1)")
  network = CausalTransformer(vqvae.num_codes, vqvae.latent_dim, width, depth, heads, dropout)
  return VQPrior(vqvae, network, load_vqvae_params)

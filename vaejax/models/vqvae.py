"""The VQ-VAE (van den Oord et al. 2017, "Neural discrete representation learning").

A convolutional encoder maps one image [H, W, C] to a grid of P = H/4 * W/4
vectors z_e [P, D] (7 x 7 for MNIST); each is replaced by its nearest of K
codebook vectors, z_q = e_k; the decoder maps the quantised grid to likelihood
parameters. The gradient passes the quantisation straight through
(dL/dz_e := dL/dz_q). Per example, summed over pixels, positions and dims like
every objective here (a mean over pixels would shrink the reconstruction next
to the codebook terms, a known bug elsewhere), the loss is

  -log p(x|z_q) + ||sg[z_e] - z_q||^2 + beta ||z_e - sg[z_q]||^2  (beta = 0.25).

codebook_update:
  loss  the middle (codebook) term trains params["codebook"]["embedding"].
  ema   the paper's Appendix A.1: per code k the moving averages of its count
        N_k and of the sum m_k of the encoder outputs assigned to it, over
        global batches (counts per batch), N_k <- g N_k + (1 - g) n_k,
        m_k <- g m_k + (1 - g) sum_{j: k_j = k} z_e_j, and e_k = m_k / N~_k with
        Laplace smoothing N~_k = (N_k + eps) / (N + K eps) N, N = sum_k N_k.
        The codebook is a state group (models.base): `update_state` runs it.
  restart_after (ema only, 0 = off): a code unused by `restart_after` global
        batches in a row is reset to an encoder output drawn at random from the
        current batch (the random restarts of Dhariwal et al. 2020, Jukebox).

The training prior is uniform over the K^P code grids, so q(z|x) (a point
mass) has KL = P log K nats to it and the bound -log p(x) <= -log p(x|z_q) +
P log K holds: metrics "kl" and "neg_elbo". Params: {"encoder", "decoder",
"codebook"}.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vaejax import distributions, nets
from vaejax.models.base import STATS, Example, Params, image_of, log_density, mean_of

CODEBOOK_UPDATES = ("loss", "ema")
LIKELIHOODS = ("bernoulli", "continuous_bernoulli", "bernoulli_grey", "gaussian_fixed")
sg = jax.lax.stop_gradient


class GridEncoder(nn.Module):
  """[H, W, C] -> two stride-2 3x3 convs (H/4 x W/4), a 3x3 conv, a 1x1 conv to
  code_dim: z_e [H/4, W/4, code_dim]."""
  features: Sequence[int]
  code_dim: int

  @nn.compact
  def __call__(self, x):
    h = x
    for i, feat in enumerate(self.features):
      h = nn.relu(nets.PatchConv(feat, 3, 2, name=f"down_{i}")(h))
    h = nn.relu(nets.PatchConv(self.features[-1], 3, name="mix")(h))
    return nets.PatchConv(self.code_dim, 1, name="to_code")(h)


class GridDecoder(nn.Module):
  """z_q [H/4, W/4, code_dim] -> a 3x3 conv, two sub-pixel 2x upsamplings
  (nets.ConvDecoder's) -> likelihood parameters [H, W, C]."""
  features: Sequence[int]  # the encoder's, mirrored
  channels: int

  @nn.compact
  def __call__(self, z):
    h = nn.relu(nets.PatchConv(self.features[-1], 3, name="mix")(z))
    widths = tuple(self.features[::-1][1:]) + (self.channels,)
    for i, feat in enumerate(widths):
      h = nets.depth_to_space(nets.PatchConv(4 * feat, 3, name=f"up_{i}")(h), 2)
      if i < len(widths) - 1:
        h = nn.relu(h)
    return h


def nearest_codes(z_e: jax.Array, embedding: jax.Array) -> jax.Array:
  """argmin_k ||z_e_p - e_k||^2 per position: z_e [P, D], embedding [K, D] -> [P] int32."""
  distances = (jnp.sum(jnp.square(embedding), axis=-1)[None, :]
               - 2.0 * z_e @ embedding.T)  # ||z_e||^2 is the same for every k
  return jnp.argmin(distances, axis=-1).astype(jnp.int32)


def perplexity(counts: jax.Array) -> jax.Array:
  """exp(entropy) of the code frequencies counts [K] / sum: from 1 (one code) to K."""
  p = counts / jnp.maximum(jnp.sum(counts), 1.0)
  return jnp.exp(-jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0)))


@dataclasses.dataclass(frozen=True)
class VQVAE:
  """See the module docstring. latent_dim is P, the number of grid positions;
  z (posterior mean, prior sample) is the code grid [P] int32."""
  encoder: nn.Module
  decoder: nn.Module
  image_shape: tuple[int, int, int]
  num_codes: int
  code_dim: int
  likelihood: str = "bernoulli"
  gaussian_scale: float = 1.0
  commitment_cost: float = 0.25
  codebook_update: str = "loss"
  ema_decay: float = 0.99
  ema_epsilon: float = 1e-5
  restart_after: int = 0
  inference_groups: tuple[str, ...] = ("encoder",)
  has_closed_form_kl = False

  @property
  def grid_shape(self) -> tuple[int, int]:
    return self.image_shape[0] // 4, self.image_shape[1] // 4

  @property
  def latent_dim(self) -> int:
    return self.grid_shape[0] * self.grid_shape[1]

  @property
  def state_groups(self) -> tuple[str, ...]:
    return ("codebook",) if self.codebook_update == "ema" else ()

  def init(self, key: jax.Array) -> Params:
    enc_key, dec_key, code_key = jax.random.split(key, 3)
    x = jnp.zeros(self.image_shape, jnp.float32)
    z = jnp.zeros(self.grid_shape + (self.code_dim,), jnp.float32)
    # Variance 1/D per coordinate, ||e_k||^2 ~ 1: the scale of the encoder's
    # outputs at initialisation, so that more than one code is nearest from the start.
    limit = math.sqrt(3.0 / self.code_dim)
    embedding = jax.random.uniform(code_key, (self.num_codes, self.code_dim), jnp.float32,
                                   -limit, limit)
    codebook = {"embedding": embedding}
    if self.codebook_update == "ema":  # N_k = 1 and m_k = e_k: the EMA starts at the init
      codebook.update(count=jnp.ones((self.num_codes,)), sum=embedding,
                      idle_steps=jnp.zeros((self.num_codes,)))
    return {"encoder": self.encoder.init(enc_key, x)["params"],
            "decoder": self.decoder.init(dec_key, z)["params"], "codebook": codebook}

  def encode(self, params: Params, x: Example) -> jax.Array:
    """z_e [P, D] for one example."""
    z_e = self.encoder.apply({"params": params["encoder"]}, image_of(x))
    return z_e.reshape(self.latent_dim, self.code_dim)

  def embedding(self, params: Params) -> jax.Array:
    """The codebook [K, D]; held fixed (no gradient) when the EMA updates it."""
    e = jnp.asarray(params["codebook"]["embedding"])
    return sg(e) if self.codebook_update == "ema" else e

  def decode(self, params: Params, z_q: jax.Array) -> jax.Array:
    """Likelihood parameters [H, W, C] for quantised vectors z_q [P, D]."""
    grid = z_q.reshape(self.grid_shape + (self.code_dim,))
    return self.decoder.apply({"params": params["decoder"]}, grid)

  # The latent-variable tier: z is the code grid [P] int32.
  def posterior(self, params: Params, x: Example) -> distributions.PointMass:
    """q(z|x): a point mass on the nearest codes."""
    return distributions.PointMass(nearest_codes(self.encode(params, x), self.embedding(params)))

  def prior(self, params: Params, x: Example = None) -> distributions.Categorical:
    """The training prior: uniform over the K codes at each of the P positions."""
    return distributions.Categorical(jnp.zeros((self.latent_dim, self.num_codes)))

  def log_prior(self, params: Params, x: Example, z: jax.Array) -> jax.Array:
    return self.prior(params, x).log_prob(z)

  def log_likelihood(self, params: Params, x: Example, z: jax.Array) -> jax.Array:
    """log p(x|z) for the code grid z [P] int: [] nats."""
    return self._log_density(params, x, self.embedding(params)[z])

  def mean_image(self, params: Params, x: Example, z: jax.Array) -> jax.Array:
    return mean_of(self.likelihood, self.decode(params, self.embedding(params)[z]))

  def _log_density(self, params, x, z_q):
    log_scale = jnp.log(jnp.asarray(self.gaussian_scale, jnp.float32))
    return log_density(self.likelihood, self.decode(params, z_q), log_scale, image_of(x))

  # The objective tier (models.base).
  def objective(self, params: Params, x: Example, *, key: jax.Array, step=0):
    """(surrogate, metrics) for one example: surrogate = -loss (module docstring).

    metrics (nats unless named): loss; recon = -log p(x|z_q); kl = P log K;
    neg_elbo = recon + kl, the bound on -log p(x) under the uniform prior;
    quantization_error = ||z_e - z_q||^2 (summed); STATS: the codes [P] (and
    z_e [P, D] for the EMA) for update_state.
    """
    del key, step  # deterministic
    z_e = self.encode(params, x)
    embedding = self.embedding(params)
    codes = nearest_codes(sg(z_e), sg(embedding))
    z_q = embedding[codes]
    log_px = self._log_density(params, x, z_e + sg(z_q - z_e))  # straight through
    commitment = jnp.sum(jnp.square(z_e - sg(z_q)))  # its value is ||z_e - z_q||^2
    surrogate = log_px - self.commitment_cost * commitment
    if self.codebook_update == "loss":
      surrogate -= jnp.sum(jnp.square(sg(z_e) - z_q))
    kl = jnp.float32(self.latent_dim * math.log(self.num_codes))
    stats = {"codes": codes}
    if self.codebook_update == "ema":
      stats["z_e"] = sg(z_e)
    return surrogate, {"loss": -surrogate, "recon": -log_px, "kl": kl, "neg_elbo": kl - log_px,
                       "quantization_error": sg(commitment), STATS: stats}

  def update_state(self, params: Params, stats, *, key: jax.Array, step=0):
    """The EMA codebook update and restarts from one global batch's stats
    (codes [B, P], z_e [B, P, D]); batch metrics perplexity (of the batch's
    code frequencies), codes_used and restarts (codes reset this step)."""
    del step
    codes = stats["codes"].reshape(-1)
    counts = jnp.zeros((self.num_codes,), jnp.float32).at[codes].add(1.0)
    metrics = {"perplexity": perplexity(counts), "codes_used": jnp.sum(counts > 0).astype(jnp.float32)}
    if self.codebook_update != "ema":
      return {}, metrics
    z_e = stats["z_e"].reshape(-1, self.code_dim)
    book = params["codebook"]
    g = self.ema_decay
    count = g * book["count"] + (1 - g) * counts
    total = jnp.sum(count)
    smoothed = (count + self.ema_epsilon) / (total + self.num_codes * self.ema_epsilon) * total
    sums = g * book["sum"] + (1 - g) * jax.ops.segment_sum(z_e, codes, self.num_codes)
    embedding = sums / smoothed[:, None]
    idle = jnp.where(counts > 0, 0.0, book["idle_steps"] + 1.0)
    if self.restart_after:
      dead = idle >= self.restart_after
      candidates = z_e[jax.random.randint(key, (self.num_codes,), 0, z_e.shape[0])]
      embedding = jnp.where(dead[:, None], candidates, embedding)
      count = jnp.where(dead, 1.0, count)
      sums = jnp.where(dead[:, None], candidates, sums)
      idle = jnp.where(dead, 0.0, idle)
      metrics["restarts"] = jnp.sum(dead).astype(jnp.float32)
    new = {"embedding": embedding, "count": count, "sum": sums, "idle_steps": idle}
    return {"codebook": new}, metrics

  def code_counts(self, params: Params, examples, *, batch_size: int = 1000) -> np.ndarray:
    """How often each code is chosen over a split (examples: a pytree of [N, ...]): [K]."""
    # params as an argument, not a closed-over constant that XLA would embed.
    codes_of = jax.jit(jax.vmap(lambda p, x: self.posterior(p, x).mean, in_axes=(None, 0)))
    n = len(jax.tree_util.tree_leaves(examples)[0])
    counts = np.zeros(self.num_codes, np.int64)
    for start in range(0, n, batch_size):
      chunk = jax.tree_util.tree_map(lambda a: a[start:start + batch_size], examples)
      counts += np.bincount(np.asarray(codes_of(params, chunk)).reshape(-1),  # host sync: evaluation
                            minlength=self.num_codes)
    return counts

  def dataset_metrics(self, params: Params, examples) -> dict:
    """Codebook use over a whole split: codes_used (chosen at least once) and the
    perplexity of the code frequencies."""
    counts = self.code_counts(params, examples)
    return {"codes_used": float(np.sum(counts > 0)),
            "perplexity": float(perplexity(jnp.asarray(counts, jnp.float32)))}


def make_vqvae(*, image_shape: Sequence[int], features: Sequence[int] = (32, 64),
               num_codes: int = 512, code_dim: int = 16, likelihood: str = "bernoulli",
               gaussian_scale: float = 1.0, commitment_cost: float = 0.25,
               codebook_update: str = "loss", ema_decay: float = 0.99,
               restart_after: int = 0) -> VQVAE:
  """A VQ-VAE for [H, W, C] images (H, W divisible by 4). Raises ValueError for
  an unknown likelihood or codebook update, or restarts without the EMA."""
  image_shape = tuple(int(d) for d in image_shape)
  if likelihood not in LIKELIHOODS:
    raise ValueError(f"unknown likelihood {likelihood!r} for the VQ-VAE; valid: {list(LIKELIHOODS)}")
  if codebook_update not in CODEBOOK_UPDATES:
    raise ValueError(f"unknown codebook update {codebook_update!r}; valid: {list(CODEBOOK_UPDATES)}")
  if restart_after and codebook_update != "ema":
    raise ValueError("code restarts need codebook_update='ema'")
  if len(features) != 2:
    raise ValueError(f"the VQ-VAE takes two conv widths (one per 2x downsampling), got {features}")
  if image_shape[0] % 4 or image_shape[1] % 4:
    raise ValueError(f"the VQ-VAE needs H and W divisible by 4, got {image_shape}")
  features = tuple(int(f) for f in features)
  return VQVAE(GridEncoder(features, code_dim), GridDecoder(features, image_shape[2]),
               image_shape, int(num_codes), int(code_dim), likelihood, float(gaussian_scale),
               float(commitment_cost), codebook_update, float(ema_decay),
               restart_after=int(restart_after))

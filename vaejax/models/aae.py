"""Autoencoders whose aggregate posterior is matched to a prior by samples: the
adversarial autoencoder (AAE; Makhzani et al. 2015) and its non-adversarial
sibling, the Wasserstein autoencoder with an MMD penalty (WAE-MMD; Tolstikhin
et al. 2018).

Both encode x to a code z (the encoder mean; or a reparameterised draw from a
Gaussian q(z|x) with `stochastic_encoder`), decode it with the likelihood of
`models.base`, and push q(z) = E_x q(z|x) towards a prior of
`vaejax.latent_priors` that need not have a density (a 10-Gaussian mixture, a
swiss roll). Params: {"encoder", "decoder", "likelihood"} (+ "discriminator").

AAE, three phases in one compiled step (`models.base.Phase`, `vaejax.phases`):
  reconstruction  encoder, decoder   maximise log p(x | z)
  discriminator   discriminator      maximise log D(z') + log(1 - D(z)), z' ~ p(z)
  generator       encoder            maximise log D(z) (the non-saturating loss)
`supervised` (Sec. 2.3 of the paper, the mixture's Fig. 4): the one-hot label
is also fed to the discriminator and z' ~ p(z | label) (its own component, or its
tenth of the roll), so each digit's codes are pushed to their own region.

WAE-MMD, one objective: log p(x | z) per example, minus mmd_weight * MMD^2
(IMQ kernel, `vaejax.discrepancies.mmd`) between the batch's codes and one
prior draw per example, the batch term of the protocol (base.BATCH).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp

from vaejax import discrepancies, distributions, latent_priors, nets
from vaejax.models.base import BATCH, Params, Phase, image_of, log_density, mean_of
from vaejax.models.vae import check_choices, make_nets

REGULARIZERS = ("adversarial", "mmd")
NUM_CLASSES = 10
sg = jax.lax.stop_gradient


@dataclasses.dataclass(frozen=True)
class PriorMatchingAE:
  """Encoder, decoder and a prior matched by a discriminator or by MMD (module docstring).

  Attributes:
    encoder: image [H, W, C] -> (mean, log_var) [latent_dim]; the code is the mean
      unless stochastic_encoder.
    decoder: z [latent_dim] -> [H, W, C] likelihood parameters.
    discriminator: z (and a one-hot label when supervised) -> logit [] (AAE), or None.
    latent_prior: a `vaejax.latent_priors` prior over z.
    regularizer: 'adversarial' (AAE) or 'mmd' (WAE).
    mmd_weight: the WAE's lambda (10 for MNIST in Tolstikhin et al.).
    gradient_penalty: gamma of the discriminator's R1 penalty, gamma / 2 *
      ||d logit / dz'||^2 at the prior draws z' (Mescheder et al. 2018); 0: none.
  """
  encoder: Any
  decoder: Any
  discriminator: Optional[Any]
  latent_prior: Any
  likelihood: str
  latent_dim: int
  image_shape: tuple[int, int, int]
  regularizer: str = "adversarial"
  supervised: bool = False
  stochastic_encoder: bool = False
  mmd_weight: float = 10.0
  gradient_penalty: float = 0.0
  gaussian_scale: float = 1.0
  inference_groups: tuple[str, ...] = ("encoder",)
  has_closed_form_kl = False

  # ---- the latent-variable tier (pictures, latent plots, evaluation) ----
  def init(self, key: jax.Array) -> Params:
    enc_key, dec_key, disc_key = jax.random.split(key, 3)
    z = jnp.zeros((self.latent_dim,))
    params = {"encoder": self.encoder.init(enc_key, jnp.zeros(self.image_shape))["params"],
              "decoder": self.decoder.init(dec_key, z)["params"], "likelihood": {}}
    if self.discriminator is not None:
      params["discriminator"] = self.discriminator.init(disc_key, z, *self._label(None))["params"]
    return params

  def posterior(self, params: Params, x):
    """q(z|x): a point mass at the encoder mean, or the Gaussian when stochastic."""
    mean, log_var = self.encoder.apply({"params": params["encoder"]}, image_of(x))
    if self.stochastic_encoder:
      return distributions.DiagGaussian(mean, log_var)
    return distributions.PointMass(mean)

  def prior(self, params: Params, x=None) -> latent_priors.GivenLabel:
    """p(z), or p(z | x's label) when supervised: sample(key=), log_prob(z)."""
    del params
    label = x["label"] if self.supervised and isinstance(x, dict) else None
    return latent_priors.GivenLabel(self.latent_prior, label)

  def log_prior(self, params: Params, x, z: jax.Array) -> jax.Array:
    """log p(z) []; raises latent_priors.NoDensityError for a sample-only prior."""
    return self.prior(params, x).log_prob(z)

  def kl_per_dim(self, params: Params, x, q):
    raise ValueError("an adversarial or Wasserstein autoencoder has no KL term")

  def log_likelihood(self, params: Params, x, z: jax.Array) -> jax.Array:
    """log p(x|z) for one example: [] nats."""
    out = self.decoder.apply({"params": params["decoder"]}, z)
    return log_density(self.likelihood, out, jnp.log(self.gaussian_scale), image_of(x))

  def mean_image(self, params: Params, x, z: jax.Array) -> jax.Array:
    """E[x|z] in [0, 1]: [H, W, C]."""
    return mean_of(self.likelihood, self.decoder.apply({"params": params["decoder"]}, z))

  # ---- training ----
  def code(self, params: Params, x, *, key: jax.Array) -> jax.Array:
    """The code the model trains with: the encoder mean, or a draw of q(z|x): [latent_dim]."""
    return self.posterior(params, x).sample(key=key)

  def _label(self, x) -> tuple:
    if not self.supervised:
      return ()
    label = jnp.zeros((), jnp.int32) if x is None else x["label"]
    return (jax.nn.one_hot(label, NUM_CLASSES),)

  def _logit(self, params: Params, z: jax.Array, x) -> jax.Array:
    return self.discriminator.apply({"params": params["discriminator"]}, z, *self._label(x))

  def _reconstruction_at(self, params: Params, x, z: jax.Array):
    log_px_z = self.log_likelihood(params, x, z)
    return log_px_z, {"loss": -log_px_z, "recon": -log_px_z}

  @staticmethod
  def _accuracy(real: jax.Array, fake: jax.Array) -> jax.Array:
    """The discriminator's accuracy on one prior draw (logit real) and one code (fake)."""
    return 0.5 * ((real > 0).astype(jnp.float32) + (fake < 0).astype(jnp.float32))

  def reconstruction(self, params: Params, x, *, key: jax.Array, step=0):
    """Phase 1: (log p(x | z), metrics) for one example."""
    return self._reconstruction_at(params, x, self.code(params, x, key=key))

  def discriminate(self, params: Params, x, *, key: jax.Array, step=0):
    """Phase 2: (log D(z') + log(1 - D(z)), metrics); z is held fixed (a sample)."""
    code_key, prior_key = jax.random.split(key)
    z = sg(self.code(params, x, key=code_key))
    draw = self.prior(params, x).sample(key=prior_key)
    real, slope = jax.value_and_grad(lambda v: self._logit(params, v, x))(draw)
    fake = self._logit(params, z, x)
    value = jax.nn.log_sigmoid(real) + jax.nn.log_sigmoid(-fake)
    metrics = {"loss": -value, "discriminator_accuracy": self._accuracy(real, fake)}
    if self.gradient_penalty:
      penalty = 0.5 * self.gradient_penalty * jnp.sum(jnp.square(slope))
      value, metrics = value - penalty, {**metrics, "loss": penalty - value,
                                         "gradient_penalty": penalty}
    return value, metrics

  def generate(self, params: Params, x, *, key: jax.Array, step=0):
    """Phase 3: (log D(z), metrics) with the discriminator held fixed."""
    held = {**params, "discriminator": sg(params["discriminator"])}
    value = jax.nn.log_sigmoid(self._logit(held, self.code(params, x, key=key), x))
    return value, {"loss": -value}

  @property
  def phases(self) -> tuple[Phase, ...]:
    if self.regularizer != "adversarial":
      return ()
    return (Phase("reconstruction", ("encoder", "decoder", "likelihood"), self.reconstruction),
            Phase("discriminator", ("discriminator",), self.discriminate),
            Phase("generator", ("encoder",), self.generate))

  def objective(self, params: Params, x, *, key: jax.Array, step=0):
    """The per-example objective: the WAE's (its batch term under BATCH), and the
    evaluation metrics of both (recon; the AAE's discriminator accuracy)."""
    code_key, prior_key = jax.random.split(key)  # the keys discriminate draws with
    z = self.code(params, x, key=code_key)
    draw = self.prior(params, x).sample(key=prior_key)
    value, metrics = self._reconstruction_at(params, x, z)
    if self.regularizer == "mmd":
      return value, {**metrics, BATCH: {"code": z, "prior_draw": draw}}
    accuracy = self._accuracy(self._logit(params, draw, x), self._logit(params, z, x))
    return value, {**metrics, "discriminator_accuracy": accuracy}

  def batch_objective(self, params: Params, outputs, *, step=0):
    """-mmd_weight * MMD^2(codes, prior draws) over the (global) batch."""
    del params, step
    value = discrepancies.mmd(outputs["code"], outputs["prior_draw"])
    return -self.mmd_weight * value, {"mmd": value}

  # ---- whole-split metrics ----
  def dataset_metrics(self, params: Params, examples) -> dict[str, float]:
    """How well the split's codes match prior draws (as many, fixed key): MMD^2,
    the sliced Wasserstein distance and, supervised with the mixture prior, the
    share of codes nearest their own digit's component."""
    out = _match_metrics(self, params, examples)
    return {k: float(v) for k, v in jax.device_get(out).items()}  # host sync: evaluation


@functools.partial(jax.jit, static_argnums=0)
def _match_metrics(model: PriorMatchingAE, params, examples):
  return match_metrics(model, params, examples, key=jax.random.PRNGKey(0))


def match_metrics(model, params, examples, *, key: jax.Array) -> dict[str, jax.Array]:
  """Prior match of any model with posterior means and a `latent_priors` prior
  (`model.latent_prior`, as a VAE built with one has): {"mmd", "sliced_wasserstein",
  ["component_accuracy"]} between the codes (posterior means) of `examples` [N]
  and N prior draws (conditional on the labels when the model is supervised);
  component_accuracy only for a supervised model, the one whose component c is
  digit c's by construction."""
  codes = jax.vmap(lambda x: model.posterior(params, x).mean)(examples)
  n = codes.shape[0]
  draw_key, slice_key = jax.random.split(key)
  draws = jax.vmap(lambda x, k: model.prior(params, x).sample(key=k))(
      examples, jax.random.split(draw_key, n))
  block = max(b for b in range(1, min(n, 1000) + 1) if n % b == 0)
  out = {"mmd": discrepancies.mmd(codes, draws, block_size=block),
         "sliced_wasserstein": discrepancies.sliced_wasserstein(codes, draws, key=slice_key)}
  prior = getattr(model, "latent_prior", None)
  # Component c is digit c's only when training sent it there (the supervised AAE).
  if (isinstance(prior, latent_priors.Mixture2D) and getattr(model, "supervised", False)
      and "label" in examples):
    out["component_accuracy"] = jnp.mean(prior.component(codes) == examples["label"])
  return out


def make_prior_matching_ae(*, regularizer: str, architecture: str, image_shape: Sequence[int],
                           latent_dim: int, hidden: Sequence[int], likelihood: str,
                           latent_prior: str = "gaussian", activation: str = "relu",
                           discriminator_hidden: Sequence[int] = (500, 500),
                           supervised: bool = False, stochastic_encoder: bool = False,
                           mmd_weight: float = 10.0, gradient_penalty: float = 0.0,
                           gaussian_scale: float = 1.0,
                           compute_dtype: str = "float32") -> PriorMatchingAE:
  """An AAE (regularizer='adversarial') or WAE-MMD (regularizer='mmd') by name.

  Raises ValueError for an unknown regularizer, prior, architecture or
  likelihood, a 2-D prior with latent_dim != 2, a learned Gaussian scale, or a
  supervised WAE (its MMD term takes no labels).
  """
  if regularizer not in REGULARIZERS:
    raise ValueError(f"unknown regularizer {regularizer!r}; valid: {list(REGULARIZERS)}")
  check_choices(architecture=architecture, likelihood=likelihood, compute_dtype=compute_dtype)
  if likelihood == "gaussian_learned":
    raise ValueError("likelihood='gaussian_learned' is not available for the AAE/WAE "
                     "(use gaussian_fixed)")
  if supervised and regularizer != "adversarial":
    raise ValueError("supervised prior matching is the AAE's (labels go to its discriminator)")
  prior = latent_priors.make_latent_prior(latent_prior, latent_dim)
  image_shape = tuple(int(d) for d in image_shape)
  encoder, decoder = make_nets(architecture=architecture, image_shape=image_shape,
                               latent_dim=latent_dim, hidden=hidden, activation=activation,
                               compute_dtype=compute_dtype)
  discriminator = (nets.MLPDiscriminator(tuple(int(h) for h in discriminator_hidden), activation)
                   if regularizer == "adversarial" else None)
  return PriorMatchingAE(encoder, decoder, discriminator, prior, likelihood, int(latent_dim),
                         image_shape, regularizer, bool(supervised), bool(stochastic_encoder),
                         float(mmd_weight), float(gradient_penalty), float(gaussian_scale))

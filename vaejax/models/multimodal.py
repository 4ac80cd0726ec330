"""Multimodal VAEs: one latent z shared by several modalities, any subset observed.

  mvae   product of Gaussian experts with the prior expert (Wu & Goodman 2018),
         trained on the sub-sampled objective: the joint ELBO plus each
         single-modality ELBO (plus one random subset when M > 2)
  mmvae  uniform mixture of the unimodal experts (Shi et al. 2019), trained on
         the stratified IWAE bound (K draws from each expert) with DReG or the
         plain pathwise gradient; K = 1 is their stratified ELBO
  mopoe  uniform mixture over the subsets of modalities of each subset's product
         of experts (Sutter et al. 2021), one draw per subset

An example is a dict holding each modality under its name ("image" [H, W, C]
in [0, 1], "image2" [H', W', C'], "label" [] int32) and optionally "mask": [M]
float of 0/1 in `modalities` order, 1 where the modality is observed (absent:
all observed). Absent modalities drop out of the posterior and of log p(x|z)
exactly; their entries may hold anything finite (zeros). The latent-variable
tier (base.py) is the joint one: `posterior` combines the present experts and
`log_likelihood` sums log p(x_m|z) over the present modalities, so every
generic bound and the importance-sampled log-likelihood apply to any subset.
The training objectives are in `multimodal_objectives` (objective tier).
Params: {"encoder": {modality: ...}, "decoder": {modality: ...}, "likelihood": {}}.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vaejax import distributions, experts, nets
from vaejax.paired_digits import PARTNER_SHAPES
from vaejax.models import multimodal_objectives
from vaejax.models.base import Example, Params, log_density, mean_of
from vaejax.models.vae import check_choices

AGGREGATIONS = {"mvae": "poe", "mmvae": "moe", "mopoe": "mopoe"}
MODALITY_NAMES = ("image", "image2", "label")
NUM_CLASSES = 10


@dataclasses.dataclass(frozen=True)
class Modality:
  """One modality: the example key `name`, the shape of one observation (an
  image's (H, W, C); a label's (num_classes,)), its likelihood (an image
  likelihood of base.LIKELIHOODS, or 'categorical' for a label) and the weight
  lambda_m of its log-likelihood in the training objective (MVAE's lambda)."""
  name: str
  shape: tuple[int, ...]
  likelihood: str
  weight: float = 1.0

  @property
  def is_label(self) -> bool:
    return self.likelihood == "categorical"


@dataclasses.dataclass(frozen=True)
class MultimodalVAE:
  """See the module docstring. `aggregation`: poe | moe | mopoe; `estimator`
  (mmvae): dreg | pathwise; `num_samples`: K draws per expert (mmvae);
  `kl_warmup_steps` (mvae, mopoe): the ELBOs' KL weight rises linearly from 0 to 1
  over these steps (Wu & Goodman anneal it; 0: none)."""

  modalities: tuple[Modality, ...]
  encoders: tuple[nn.Module, ...]
  decoders: tuple[nn.Module, ...]
  latent_dim: int
  aggregation: str
  estimator: str = "pathwise"
  num_samples: int = 1
  gaussian_scale: float = 1.0
  kl_warmup_steps: int = 0
  inference_groups: tuple[str, ...] = ("encoder",)

  @property
  def names(self) -> tuple[str, ...]:
    return tuple(m.name for m in self.modalities)

  @property
  def image_shape(self) -> tuple[int, ...]:
    """The first image modality's (H, W, C): the one `mean_image` shows."""
    return next(m.shape for m in self.modalities if not m.is_label)

  @property
  def has_closed_form_kl(self) -> bool:
    return self.aggregation == "poe"  # a mixture's KL to N(0, I) has none

  @property
  def subsets(self) -> np.ndarray:
    """MoPoE's components: every non-empty subset of the modalities, [2^M - 1, M]."""
    return experts.nonempty_subsets(len(self.modalities))

  def init(self, key: jax.Array) -> Params:
    keys = jax.random.split(key, 2 * len(self.modalities))
    z = jnp.zeros((self.latent_dim,), jnp.float32)
    encoder, decoder = {}, {}
    for i, (m, enc, dec) in enumerate(zip(self.modalities, self.encoders, self.decoders)):
      encoder[m.name] = enc.init(keys[2 * i], jnp.zeros(m.shape, jnp.float32))["params"]
      decoder[m.name] = dec.init(keys[2 * i + 1], z)["params"]
    return {"encoder": encoder, "decoder": decoder, "likelihood": {}}

  def mask(self, x: Example) -> jax.Array:
    """[M] float, 1 where modality m of example x is observed."""
    if "mask" in x:
      return jnp.asarray(x["mask"], jnp.float32)
    return jnp.ones((len(self.modalities),), jnp.float32)

  def _encoder_input(self, m: Modality, x: Example) -> jax.Array:
    if m.is_label:
      return jax.nn.one_hot(x[m.name], m.shape[0], dtype=jnp.float32)
    return x[m.name]

  def experts(self, params: Params, x: Example) -> tuple[jax.Array, jax.Array]:
    """Every modality's Gaussian expert q_m(z|x_m), present or not: means and
    log-variances [M, latent_dim]."""
    outs = [enc.apply({"params": params["encoder"][m.name]}, self._encoder_input(m, x))
            for m, enc in zip(self.modalities, self.encoders)]
    return jnp.stack([o[0] for o in outs]), jnp.stack([o[1] for o in outs])

  def combine(self, means: jax.Array, log_vars: jax.Array, mask: jax.Array):
    """q(z|X_mask) from the experts [M, D] and a mask [M]: a DiagGaussian (poe) or a
    MixtureOfGaussians (moe over the M experts, mopoe over the subsets)."""
    if self.aggregation == "poe":
      prior = jnp.zeros_like(means[:1])
      return experts.product_of_experts(jnp.concatenate([means, prior]),
                                        jnp.concatenate([log_vars, prior]),
                                        jnp.concatenate([mask, jnp.ones(1)]))
    # A mixture's absent components are evaluated (weight 0) and differentiated through:
    # zero their entries so that non-finite ones cannot reach a value or a gradient.
    present = mask[:, None] > 0
    means, log_vars = jnp.where(present, means, 0.0), jnp.where(present, log_vars, 0.0)
    if self.aggregation == "moe":
      return experts.MixtureOfGaussians(means, log_vars, experts.uniform_log_weights(mask))
    return experts.mixture_of_products(means, log_vars, mask, self.subsets)

  def posterior(self, params: Params, x: Example):
    """q(z|X) over the observed modalities of example x (see `combine`)."""
    return self.combine(*self.experts(params, x), self.mask(x))

  def prior(self, params: Params, x: Example = None) -> distributions.DiagGaussian:
    return distributions.standard_normal(self.latent_dim)

  def log_prior(self, params: Params, x: Example, z: jax.Array) -> jax.Array:
    return self.prior(params).log_prob(z)

  def kl_per_dim(self, params: Params, x: Example, q) -> jax.Array:
    """KL(q(z|X) || N(0, I)) per dimension [D], for the product of experts only.
    Raises ValueError for a mixture (no closed form)."""
    if self.aggregation != "poe":
      raise ValueError(f"a {self.aggregation} posterior has no closed-form KL: use "
                       f"analytic_kl=False")
    return q.kl_to_standard_normal_per_dim()

  def decode(self, params: Params, name: str, z: jax.Array) -> jax.Array:
    """Modality `name`'s likelihood parameters for z [D]: image logits or means
    [H, W, C]; a label's class logits [num_classes]."""
    i = self.names.index(name)
    out = self.decoders[i].apply({"params": params["decoder"][name]}, z)
    return out.reshape(-1) if self.modalities[i].is_label else out

  def modality_log_likelihoods(self, params: Params, x: Example, z: jax.Array) -> jax.Array:
    """log p(x_m|z) for every modality m, observed or not: [M] nats."""
    out = []
    for m in self.modalities:
      params_m = self.decode(params, m.name, z)
      if m.is_label:
        out.append(jax.nn.log_softmax(params_m)[x[m.name]])
      else:
        log_scale = jnp.log(jnp.asarray(self.gaussian_scale, jnp.float32))
        out.append(log_density(m.likelihood, params_m, log_scale, x[m.name]))
    return jnp.stack(out)

  def log_likelihood(self, params: Params, x: Example, z: jax.Array) -> jax.Array:
    """log p(X_observed|z) = sum over observed m of log p(x_m|z): [] nats."""
    return jnp.sum(self.mask(x) * self.modality_log_likelihoods(params, x, z))

  def mean_of(self, params: Params, name: str, z: jax.Array) -> jax.Array:
    """E[x_m|z]: an image's means in [0, 1] [H, W, C], or a label's class
    probabilities [num_classes]."""
    out = self.decode(params, name, z)
    m = self.modalities[self.names.index(name)]
    return jax.nn.softmax(out) if m.is_label else mean_of(m.likelihood, out)

  def mean_image(self, params: Params, x: Example, z: jax.Array) -> jax.Array:
    """E[x|z] of the first image modality, for the generic pictures: [H, W, C]."""
    name = next(m.name for m in self.modalities if not m.is_label)
    return self.mean_of(params, name, z)

  def objective(self, params: Params, x: Example, *, key: jax.Array, step=0):
    """The family's training objective for one example (multimodal_objectives)."""
    beta = 1.0
    if self.kl_warmup_steps:
      beta = jnp.minimum(1.0, jnp.asarray(step, jnp.float32) / self.kl_warmup_steps)
    return multimodal_objectives.OBJECTIVES[self.aggregation](self, params, x, key=key, beta=beta)

  def dataset_metrics(self, params: Params, examples) -> dict[str, float]:
    """Over a split: for a label modality, the share of examples whose most probable
    decoded label, at the posterior mean given ONE other modality, is the true one
    (`<modality>_to_label_accuracy`)."""
    if "label" not in self.names:
      return {}
    labels = np.asarray(examples["label"])

    @jax.jit
    def predict(params, batch, mask):
      def one(x):
        q = self.posterior(params, {**x, "mask": mask})
        return jnp.argmax(self.decode(params, "label", q.mean))
      return jax.vmap(one)(batch)

    metrics = {}
    for m in self.modalities:
      if m.is_label:
        continue
      mask = jnp.asarray(np.asarray(self.names) == m.name, jnp.float32)
      hits = 0
      for start in range(0, len(labels), 1000):
        batch = {k: v[start:start + 1000] for k, v in examples.items() if k != "mask"}
        hits += int(np.sum(np.asarray(predict(params, batch, mask)) == labels[start:start + 1000]))
      metrics[f"{m.name}_to_label_accuracy"] = hits / len(labels)  # host sync: evaluation
    return metrics


def modalities_of(config, image_shape: Sequence[int]) -> tuple[Modality, ...]:
  """config.modalities as Modality records: "image" of `image_shape` with
  config.likelihood; "image2" (vaejax.paired_digits' colour partner, of the shape
  config.partner gives) with config.image2_likelihood; "label" categorical over
  NUM_CLASSES. Weights from config.modality_weights (empty: all 1). Raises
  ValueError for an unknown name."""
  weights = tuple(config.modality_weights) or (1.0,) * len(config.modalities)
  out = []
  for name, weight in zip(config.modalities, weights):
    if name == "label":
      out.append(Modality(name, (NUM_CLASSES,), "categorical", float(weight)))
    elif name == "image":
      out.append(Modality(name, tuple(int(d) for d in image_shape), config.likelihood,
                          float(weight)))
    elif name == "image2":
      out.append(Modality(name, PARTNER_SHAPES[config.partner], config.image2_likelihood,
                          float(weight)))
    else:
      raise ValueError(f"unknown modality {name!r}; valid: {list(MODALITY_NAMES)}")
  return tuple(out)


def make_multimodal_vae(*, model: str, modalities: Sequence[Modality], latent_dim: int,
                        hidden: Sequence[int], activation: str = "relu",
                        gaussian_scale: float = 1.0, estimator: str = "pathwise",
                        num_samples: int = 1, kl_warmup_steps: int = 0) -> MultimodalVAE:
  """model: mvae | mmvae | mopoe. Each modality gets an MLP encoder and a mirrored
  MLP decoder of `hidden` widths (a label: one-hot in, class logits out).
  Raises ValueError for an unknown model or likelihood, or no image modality."""
  if model not in AGGREGATIONS:
    raise ValueError(f"unknown multimodal model {model!r}; valid: {list(AGGREGATIONS)}")
  modalities = tuple(modalities)
  if all(m.is_label for m in modalities):
    raise ValueError("a multimodal VAE needs at least one image modality")
  hidden = tuple(int(h) for h in hidden)
  encoders, decoders = [], []
  for m in modalities:
    if m.is_label:
      encoders.append(nets.ConditionalGaussian(hidden, latent_dim, activation))
      decoders.append(nets.MLPDecoder(hidden[::-1], (1, 1, m.shape[0]), activation))
    else:
      check_choices(architecture="mlp", likelihood=m.likelihood, compute_dtype="float32")
      encoders.append(nets.MLPEncoder(hidden, latent_dim, activation))
      decoders.append(nets.MLPDecoder(hidden[::-1], m.shape, activation))
  return MultimodalVAE(modalities, tuple(encoders), tuple(decoders), int(latent_dim),
                       AGGREGATIONS[model], estimator, int(num_samples), float(gaussian_scale),
                       int(kl_warmup_steps))

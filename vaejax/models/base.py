"""The protocol every latent-variable model follows, and the likelihoods they share.

A model is a frozen dataclass of static settings whose methods are pure
functions of a params pytree and ONE example. An example is a pytree: a bare
image [H, W, C] or a dict {"image": [H, W, C], "label": [] int32, ...}, or for
a character corpus {"tokens": [T] int32} (the sequence VAE; its image_shape is
then (T,) and its mean_image gives token probabilities [T, vocab]). The
latent z is an array [latent_dim]. Estimators, evaluation and pictures use only:

  init(key) -> params                     {"encoder": ..., "decoder": ..., ...}
  posterior(params, x) -> q               q(z|x): sample(key=) (reparameterised),
                                          log_prob(z), mean and log_var [latent_dim]
                                          (a DiagGaussian, or a hierarchical q)
  prior(params, x) -> p                   p(z), or p(z|c): sample(key=), log_prob(z)
  log_prior(params, x, z) -> []           log p(z) (or log p(z|c))
  log_likelihood(params, x, z) -> []      log p(x|z) in nats (summed over the target pixels)
  kl_per_dim(params, x, q) -> [latent_dim]  closed-form KL(q(z|x) || p(z)) per dimension
  mean_image(params, x, z) -> [H, W, C]   E[x|z] in [0, 1], for pictures
  inference_groups: tuple[str, ...]       top-level params keys of q (the rest is the
                                          generative model); DReG and RWS split on it
  has_closed_form_kl: bool (optional)     False when kl_per_dim does not exist (a
                                          hierarchical q): the bounds use the
                                          Monte-Carlo KL; True when absent
  conditional_kl_per_dim(params, x, z) -> [latent_dim]  (optional, with
                                          has_closed_form_kl False) the KL per unit in
                                          closed form given the layers above in a draw
                                          z ~ q (a top-down q: the ladder VAE); its mean
                                          over z is the KL, so analytic_kl and free bits
                                          use it
  with_output_bias(params, bias) -> params  (optional) the decoder's output-layer bias
                                          set to `bias` [H, W, C], for
                                          config.output_bias_init='data_mean'

A family whose training objective is not a bound over q (the VQ-VAE) adds the
objective tier (see ../shared/design/model-protocol.md):

  objective(params, x, *, key, step) -> (surrogate, metrics)
                                          its own per-example objective, used by
                                          the estimator of the same name
                                          (`estimators.OWN_OBJECTIVES`); metrics
                                          may hold per-example statistics under
                                          objectives.STATS for update_state
  training_objective(params, x, *, key, step) -> (surrogate, metrics)
                                          (optional) the same in training, with
                                          what only training does (dropout); the
                                          train step's loss uses it, evaluation
                                          `objective`
  update_state(params, stats, *, key, step) -> (updates, batch_metrics)
                                          the non-gradient update of its state
                                          groups from the global batch's stats
                                          ([B, ...] leaves): {group: new value}
                                          for some top-level params keys, and
                                          batch-level metrics ({name: []})
  state_groups: tuple[str, ...]           those params keys; they enter the
                                          objective only under stop_gradient, so
                                          their gradient, hence their Adam update,
                                          is exactly zero
  dataset_metrics(params, examples) -> {name: []}  metrics over a whole split
                                          (codebook usage), added to evaluation

An autoregressive decoder (the sequence VAE) declares

  autoregressive = True                   E[x|z] has no closed form: pictures and
                                          batched.decode draw through
  ancestral_sample(params, z, *, key, greedy) -> {"sample", "mean", "log_prob", "mask"}
                                          one step at a time, each fed back

State groups live in params so that checkpoints, replicas, parallel copies,
evaluation and pictures carry them with no extra code.

Two further optional members, for families trained on more than one loss or on
a loss over the whole batch (the adversarial and Wasserstein autoencoders):

  phases: tuple[Phase, ...]               updates made one after the other in ONE
                                          compiled step, each minimising its own
                                          per-example objective over its own
                                          params groups with its own optimizer
                                          state (`vaejax.phases`); e.g. the AAE's
                                          reconstruction, discriminator, generator
  batch_objective(params, outputs, *, step) -> (surrogate, metrics)
                                          a term over the whole batch, added to
                                          the mean per-example surrogate; its
                                          input is what the per-example objective
                                          returned under BATCH ([B, ...] leaves),
                                          gathered over devices in the
                                          single-device order (the WAE's MMD)

STL and DReG evaluate log q at stopped variational parameters with
`tree_map(stop_gradient, q)`. For one Gaussian layer, stopping the mean and
log-variance is the same thing. A hierarchical q (`hvae.LayeredPosterior`)
holds the encoder params and the example as its pytree leaves and recomputes
log q(z|x) from them, so the stopped copy still differentiates through z,
layer into layer.
"""
from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from vaejax import distributions

# The metrics key of per-example statistics for a model's update_state: kept per
# example by objectives.make_batch_loss, gathered by the train step, dropped by evaluation.
STATS = "stats"
# The metrics key of per-example outputs a model's batch_objective reduces (codes,
# prior draws): gathered into the global batch by objectives.make_batch_loss.
BATCH = "batch"
Params = Any
Example = Any  # an image [H, W, C] or a dict with "image" (and "label", ...)
LIKELIHOODS = ("bernoulli", "continuous_bernoulli", "bernoulli_grey", "gaussian_fixed",
               "gaussian_learned")
# Likelihoods that are normalised densities for grey-level (non-binary) pixels in [0, 1].
# "bernoulli_grey" is BCE on grey values: not a log-likelihood, reported as such.
GREY_LIKELIHOODS = ("continuous_bernoulli", "bernoulli_grey", "gaussian_fixed", "gaussian_learned")
# Likelihoods whose decoder output is the logit of each pixel's mean.
LOGIT_LIKELIHOODS = ("bernoulli", "bernoulli_grey")


class Phase(NamedTuple):
  """One update of a multi-phase step: `objective(params, x, *, key, step) ->
  (surrogate, metrics)` per example, maximised over the top-level params keys in
  `groups` (the other groups are held fixed); `name` keys its optimizer state,
  its learning rate (config.<name>_learning_rate, else config.learning_rate) and its
  metrics."""
  name: str
  groups: tuple[str, ...]
  objective: Callable[..., tuple[jax.Array, dict[str, jax.Array]]]


class UpdateState(Protocol):
  def __call__(self, params: Params, stats: Any, *, key: jax.Array,
               step: jax.Array) -> tuple[dict[str, Any], dict[str, jax.Array]]: ...


class LatentVariableModel(Protocol):
  latent_dim: int
  image_shape: tuple[int, int, int]
  inference_groups: tuple[str, ...]

  def init(self, key: jax.Array) -> Params: ...
  def posterior(self, params: Params, x: Example) -> Any: ...  # DiagGaussian-like
  def prior(self, params: Params, x: Example) -> Any: ...
  def log_prior(self, params: Params, x: Example, z: jax.Array) -> jax.Array: ...
  def log_likelihood(self, params: Params, x: Example, z: jax.Array) -> jax.Array: ...
  def kl_per_dim(self, params: Params, x: Example, q) -> jax.Array: ...
  def mean_image(self, params: Params, x: Example, z: jax.Array) -> jax.Array: ...


def image_of(x: Example) -> jax.Array:
  """The image [H, W, C] of an example (a bare array is an image)."""
  return x["image"] if isinstance(x, dict) else x


def log_density(likelihood: str, out: jax.Array, log_scale: jax.Array, x: jax.Array,
                mask: jax.Array | None = None) -> jax.Array:
  """log p(x | decoder output `out`) summed over the pixels of one example (those
  where `mask` is 1 when given): []. out/x/mask: [H, W, C]."""
  if likelihood in ("bernoulli", "bernoulli_grey"):
    if mask is None:
      return distributions.bernoulli_log_prob(out, x)
    return jnp.sum(mask * distributions.bernoulli_log_density(out, x))
  if likelihood == "continuous_bernoulli":
    per_pixel = (distributions.bernoulli_log_density(out, x)
                 + distributions.continuous_bernoulli_log_norm(out))
  elif mask is None:
    return distributions.gaussian_log_prob(out, log_scale, x)
  else:
    z = (x - out) * jnp.exp(-log_scale)
    per_pixel = -0.5 * jnp.square(z) - log_scale - 0.5 * math.log(2.0 * math.pi)
  return jnp.sum(per_pixel if mask is None else mask * per_pixel)


def mean_of(likelihood: str, out: jax.Array) -> jax.Array:
  """E[x|z] in [0, 1] from the decoder output: sigmoid, continuous-Bernoulli mean or
  the clipped Gaussian mean."""
  if likelihood in ("bernoulli", "bernoulli_grey"):
    return jax.nn.sigmoid(out)
  if likelihood == "continuous_bernoulli":
    return distributions.continuous_bernoulli_mean(out)
  return jnp.clip(out, 0.0, 1.0)


def data_mean_logits(images, max_value: int) -> np.ndarray:
  """The log-odds of each pixel's mean over a training set, clipped to [1e-3, 1 - 1e-3]:
  [H, W, C] float32 (Burda et al. 2015's code starts the decoder's output bias here).

  images: [N, H, W, C] integers in [0, max_value] (uint8 grey levels, or 0/1). Under
  dynamic binarisation the binarised pixels' mean is the grey level's, so the same
  numbers serve. A decoder started from them predicts the mean image, and its
  latent units need not spend the first epochs learning it (the paper does not
  mention it; experiments/results/hvae2_iwae_table/ measures its effect).
  """
  mean = np.asarray(images).mean(axis=0, dtype=np.float64) / max_value
  mean = np.clip(mean, 1e-3, 1.0 - 1e-3)
  return np.log(mean / (1.0 - mean)).astype(np.float32)


def decoder_with_output_bias(decoder_params: Params, bias) -> Params:
  """An MLP decoder's params (`nets.MLPDecoder`: a Dense layer "out" of H*W*C units) with
  that layer's bias set to `bias` [H, W, C]. Raises ValueError when the decoder has no
  such layer (a convolutional decoder's output bias is one per channel)."""
  bias = jnp.asarray(bias, jnp.float32).reshape(-1)
  decoder_params = dict(decoder_params)
  out = dict(decoder_params.get("out", {}))
  if "bias" not in out or out["bias"].shape != bias.shape:
    raise ValueError(f"output_bias_init='data_mean' needs an MLP decoder whose output layer "
                     f"has one bias per pixel ({bias.shape[0]}); this decoder has "
                     f"{None if 'bias' not in out else out['bias'].shape}")
  return {**decoder_params, "out": {**out, "bias": bias}}

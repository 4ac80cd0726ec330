"""Experiment configuration: the shared defaults and their validation.

Configs are code (ml_collections files under experiments/configs/ start from
`base_config()`); `validate` checks every value before anything compiles and
raises ConfigError with a message naming the key and the valid choices.
"""
from __future__ import annotations

import importlib.util
import os

import ml_collections

from vaejax import data, estimators, models, objectives, parallel, replicas
from vaejax.config_checks import (ConfigError, at_least, check_aae, check_family_keys,
                                  check_hvae, check_multimodal, check_output_bias, check_sequence,
                                  check_vq_prior, check_vqvae, choice)
from vaejax.models import cvae


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  # Data. An empty data_dir means $VAEJAX_DATA_DIR (then a TFDS download).
  c.dataset = "binarized_mnist"
  c.data_dir = ""
  c.dynamic_binarization = False  # mnist only: resample pixels ~ Bernoulli(gray/255) each step
  c.validation_split = False  # mnist only: train on train[:50000], also evaluate on the last 10k
  c.train_subset = 0  # 0: the whole split
  c.eval_subset = 0
  # Model (vaejax.models: vae | cvae | hvae | ladder | vqvae | vqvae_prior | aae | wae | mvae |
  # mmvae | mopoe).
  c.model = "vae"
  c.condition = "label"  # cvae: label | quadrants
  c.observed_quadrants = 1  # cvae with condition=quadrants: 1, 2 or 3 observed quadrants
  c.prior = "standard_normal"  # cvae: standard_normal | learned (a prior network p(z|c))
  # hvae, ladder: units per stochastic layer (bottom first) and the deterministic
  # widths between layer l and l + 1 (layer 0 is x); Burda et al.'s two-layer model.
  c.latent_dims = (100, 50)
  c.layer_hidden = ((200, 200), (100, 100))
  # vqvae (objective='vq'): K codes of dimension D on an H/4 x W/4 grid; hidden holds
  # its two conv widths. codebook_update: loss | ema (decay ema_decay); a code unused by
  # restart_after_steps batches in a row restarts at a random encoder output (0: off).
  c.num_codes = 512
  c.code_dim = 16
  c.commitment_cost = 0.25
  c.codebook_update = "loss"
  c.ema_decay = 0.99
  c.restart_after_steps = 0
  # vqvae_prior (objective='code_prior'): a causal transformer prior over the codes of the
  # VQ-VAE run in vqvae_workdir (frozen), width x depth with prior_heads attention heads;
  # prior_dropout: the rate of dropout on its embedding and residual branches, in training
  # only (so the train metrics are measured under it, the evaluation's without).
  c.vqvae_workdir = ""
  c.prior_width = 64
  c.prior_depth = 2
  c.prior_heads = 4
  c.prior_dropout = 0.0
  # Prior matching. latent_prior (vae, aae, wae): gaussian | mixture2d | swissroll2d
  # (vaejax.latent_priors; a VAE takes gaussian or mixture2d). aae: a discriminator of
  # discriminator_hidden widths; supervised sends digit c to prior region c; phase
  # learning rates (0: learning_rate) for its discriminator and generator updates.
  # wae: mmd_weight is lambda. Both: the code is a draw of q(z|x) if stochastic_encoder.
  c.latent_prior = "gaussian"
  c.supervised = False
  c.stochastic_encoder = False
  c.discriminator_hidden = (500, 500)
  c.discriminator_learning_rate = 0.0
  c.generator_learning_rate = 0.0
  c.mmd_weight = 10.0
  c.gradient_penalty = 0.0  # aae: R1 penalty gamma on the discriminator (0: none)
  # mvae | mmvae | mopoe: the modalities (example keys: image, label) and the weight of each
  # one's log-likelihood in training (empty: all 1); mmvae draws num_samples per expert.
  c.modalities = ("image", "label")  # also image2: vaejax.paired_digits' colour partner
  c.modality_weights = ()
  c.image2_likelihood = "continuous_bernoulli"  # its grey levels need a density on [0, 1]
  c.partner = "textures"  # image2: textures (offline) | svhn_cropped (TFDS, needs a network)
  # seqvae (vaejax.models.recurrent): rnn_cell (gru | lstm) of rnn_hidden units in encoder
  # and decoder; embed_dim for tokens; the decoder reads the previous step (teacher
  # forcing) or none; z sets its initial state, or also feeds every step. word_dropout:
  # the share of decoder inputs replaced by UNK (a zero row) in training (Bowman et al.).
  c.rnn_cell = "gru"
  c.rnn_hidden = 256
  c.embed_dim = 64
  c.decoder_input = "previous"
  c.latent_feed = "initial"
  c.word_dropout = 0.0
  c.architecture = "mlp"
  c.hidden = (500,)
  c.latent_dim = 20
  c.activation = "relu"
  c.likelihood = "bernoulli"
  c.gaussian_scale = 1.0
  c.compute_dtype = "float32"  # float32 | bfloat16 (bf16 layers, float32 params and log-densities)
  # zeros | data_mean: the decoder's output bias starts at the log-odds of the mean
  # training pixel, as in Burda et al. (2015)'s code (a Bernoulli likelihood and an MLP
  # decoder: vae, cvae, hvae, ladder).
  c.output_bias_init = "zeros"
  # Objective and its gradient estimator.
  c.objective = "elbo"
  c.estimator = "pathwise"  # see vaejax.estimators for each objective's estimators
  c.baseline = "none"  # score_function: none | moving_average | learned
  c.baseline_decay = 0.99
  c.num_samples = 1  # K
  c.beta = 1.0
  c.analytic_kl = True
  # The ELBO's KL term (objectives.make_kl_penalty): beta warm-up from 0 over N steps,
  # free bits (nats per latent dimension), capacity control gamma * |KL - C(t)| with
  # C rising linearly to capacity_max nats over capacity_steps (Burgess et al. 2018).
  c.kl_warmup_steps = 0
  c.kl_warmup_shape = "linear"  # linear | sigmoid (Bowman et al.'s logistic annealing)
  c.free_bits = 0.0
  c.capacity_max = 0.0  # 0: off
  c.capacity_steps = 0
  c.capacity_gamma = 1000.0
  # Optimisation.
  c.batch_size = 128
  c.learning_rate = 1e-3
  c.lr_schedule = "constant"  # constant | burda (lr * 10^(-i/7) for 3^i epochs) | cosine (to 0)
  c.adam_b1 = 0.9
  c.adam_b2 = 0.999
  c.adam_eps = 1e-8
  c.grad_clip_norm = 0.0  # 0: no clipping
  c.epochs = 10
  c.seed = 0
  # Replicas (vaejax.replicas): R models in one compiled program, replica r with seed
  # seed + r; sweep: per-replica values, 'beta=1,2,4,8;learning_rate=...' (R each).
  c.num_replicas = 1
  c.sweep = ""
  c.parallel = "none"  # none | pmap | sharding
  c.num_devices = 0  # pmap/sharding: 0 = every device
  # Loop, logging and checkpoints, in optimiser steps.
  c.steps_per_dispatch = 0  # 0: run to the next log/checkpoint/epoch boundary in one call
  c.log_every = 100  # 0: log only the last step
  c.checkpoint_every = 1000  # 0: checkpoint only the last step
  c.keep_checkpoints = 3
  c.max_consecutive_skips = 20
  c.eval_batch_size = 1000
  c.eval_every = 0  # steps; N > 0: also evaluate the test (and validation) bounds every N steps
  c.eval_importance_samples = 0  # k > 0: also report the importance-sampled test NLL (k draws)
  # Final evaluation also reports active units and the mutual information I(x; z) under q.
  c.eval_collapse_metrics = False
  c.num_image_samples = 64
  c.tensorboard = True  # event files beside metrics.jsonl (tensorboardX; `tensorboard --logdir`)
  return c


def load_config_file(path: str) -> ml_collections.ConfigDict:
  """The get_config() of another config file: lets a smoke config start from its full one."""
  spec = importlib.util.spec_from_file_location(os.path.basename(path).removesuffix(".py"), path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


# The sizes most smoke configs share: a 2,048-example slice, one epoch of 32 steps.
SMOKE_SIZES = dict(train_subset=2048, eval_subset=500, hidden=(64,), batch_size=64, epochs=1,
                   log_every=8, checkpoint_every=32, eval_batch_size=250, num_image_samples=16)


def smoke_config(full_config_path: str, **overrides) -> ml_collections.ConfigDict:
  """The config file at `full_config_path` at smoke sizes: SMOKE_SIZES, then `overrides`.

  Raises ConfigError naming a key the config does not have (a typo would otherwise
  add a key nothing reads).
  """
  config = load_config_file(full_config_path)
  for key, value in {**SMOKE_SIZES, **overrides}.items():
    if key not in config:
      raise ConfigError(f"smoke_config: {os.path.basename(full_config_path)} has no key {key!r}")
    config[key] = value
  return config


def validate(config: ml_collections.ConfigDict, *, num_devices: int = 1) -> None:
  """Raises ConfigError naming the first invalid value."""
  choice(config, "dataset", data.DATASETS)
  choice(config, "model", models.MODELS)
  choice(config, "condition", cvae.CONDITIONS)
  choice(config, "prior", cvae.PRIORS)
  choice(config, "observed_quadrants", (1, 2, 3))
  choice(config, "architecture", models.ARCHITECTURES)
  choice(config, "likelihood", models.LIKELIHOODS)
  choice(config, "objective", tuple(estimators.OBJECTIVE_ESTIMATORS))
  choice(config, "estimator", estimators.OBJECTIVE_ESTIMATORS[config.objective])
  choice(config, "baseline", estimators.BASELINES)
  choice(config, "lr_schedule", ("constant", "burda", "cosine"))
  choice(config, "compute_dtype", tuple(models.COMPUTE_DTYPES))
  choice(config, "output_bias_init", ("zeros", "data_mean"))
  choice(config, "parallel", parallel.MODES)
  from vaejax.nets import ACTIVATIONS
  choice(config, "activation", tuple(ACTIVATIONS))
  for key in ("batch_size", "num_samples", "epochs", "eval_batch_size"):
    at_least(config, key, 1)
  # latent_dim = 0 is the CVAE's deterministic baseline network p(x|c), and seqvae's
  # RNN language model.
  at_least(config, "latent_dim", 0 if config.model in ("cvae", "seqvae") else 1)
  choice(config, "kl_warmup_shape", objectives.WARMUP_SHAPES)
  for key in ("beta", "grad_clip_norm", "num_devices", "train_subset", "eval_subset", "steps_per_dispatch",
              "log_every", "eval_every", "checkpoint_every", "num_image_samples", "kl_warmup_steps",
              "free_bits", "capacity_max", "capacity_steps", "capacity_gamma",
              "eval_importance_samples"):
    at_least(config, key, 0)
  at_least(config, "keep_checkpoints", 1)
  at_least(config, "max_consecutive_skips", 1)
  if not config.learning_rate > 0:
    raise ConfigError(f"config.learning_rate={config.learning_rate!r} must be > 0")
  if not config.gaussian_scale > 0:
    raise ConfigError(f"config.gaussian_scale={config.gaussian_scale!r} must be > 0")
  hidden = config.hidden if isinstance(config.hidden, (tuple, list)) else (config.hidden,)
  if not hidden or any(not isinstance(h, int) or h < 1 for h in hidden):
    raise ConfigError(f"config.hidden={config.hidden!r} must be a non-empty tuple of positive ints")
  at_least(config, "num_replicas", 1)
  if config.num_replicas > 1 or config.sweep:
    _check_replicas(config, num_devices)
    return
  if config.batch_size % num_devices:
    raise ConfigError(f"config.batch_size={config.batch_size} does not divide over "
                      f"{num_devices} devices; use a multiple of {num_devices}")
  if config.dynamic_binarization and config.dataset != "mnist":
    raise ConfigError("config.dynamic_binarization applies to dataset='mnist' only "
                      "(binarized_mnist is statically binarised)")
  if config.validation_split and config.dataset != "mnist":
    raise ConfigError("config.validation_split applies to dataset='mnist' only "
                      "(binarized_mnist has its own validation split)")
  if config.eval_collapse_metrics and not models.closed_form_kl(config):
    raise ConfigError(f"config.eval_collapse_metrics needs a diagonal Gaussian q(z|x) and "
                      f"prior N(0, I); model={config.model!r} has another")
  if config.dataset in data.CORPORA and config.model != "seqvae":
    raise ConfigError(f"dataset={config.dataset!r} is a corpus of token sequences: it needs "
                      f"model='seqvae' (model={config.model!r} reads images)")
  if config.model == "seqvae":
    check_sequence(config)
  binary_data = config.dataset == "binarized_mnist" or config.dynamic_binarization
  if config.likelihood == "bernoulli" and not binary_data and config.dataset not in data.CORPORA:
    raise ConfigError(
        f"config.likelihood='bernoulli' needs 0/1 pixels but dataset={config.dataset!r} is "
        f"grey-level: set dynamic_binarization=True, or likelihood='continuous_bernoulli' "
        f"(normalised on [0, 1]), or likelihood='bernoulli_grey' for BCE on grey values "
        f"(not a log-likelihood)")
  if config.model == "cvae" and config.condition == "label" and config.dataset != "mnist":
    raise ConfigError(f"config.model='cvae' with condition='label' needs labelled training "
                      f"data; dataset={config.dataset!r} has no training labels: use "
                      f"dataset='mnist'")
  if config.model in ("hvae", "ladder"):
    check_hvae(config)
  if config.output_bias_init == "data_mean":
    check_output_bias(config)
  own = models.OWN_OBJECTIVE
  if own.get(config.model) != config.objective and (
      config.model in own or config.objective in own.values()):
    pairs = ", ".join(f"model={m!r} with objective={o!r}" for m, o in own.items())
    raise ConfigError(f"config.model={config.model!r} with objective={config.objective!r}: "
                      f"these families train on their own objectives: {pairs}")
  check_family_keys(config, base_config())
  if config.model in models.MULTIMODAL:
    check_multimodal(config)
  elif config.model in own and config.eval_importance_samples:
    raise ConfigError(f"config.eval_importance_samples: model={config.model!r} has no "
                      f"importance-sampled likelihood (a point-mass posterior, or no prior density)")
  if config.latent_prior != "gaussian" and config.model not in ("vae", "aae", "wae"):
    raise ConfigError(f"config.latent_prior={config.latent_prior!r} applies to model='vae', "
                      f"'aae' or 'wae' only")
  if config.model in ("vae", "aae", "wae"):
    check_aae(config)
  if config.model == "vqvae":
    check_vqvae(config, hidden)
  if config.model == "vqvae_prior":
    check_vq_prior(config)
  if config.model != "cvae" and config.prior != "standard_normal":
    raise ConfigError(f"config.prior={config.prior!r} applies to model='cvae' only")
  kl_keys = ("kl_warmup_steps", "free_bits", "capacity_max", "capacity_steps", "capacity_gamma")
  if config.objective in ("mvae", "mopoe"):  # their ELBOs take a KL warm-up, no other shaping
    kl_keys = tuple(k for k in kl_keys if k != "kl_warmup_steps")
  if config.objective != "elbo":
    for key in ("beta",) + kl_keys:
      if config[key] != base_config()[key]:
        raise ConfigError(f"config.{key}={config[key]} shapes the ELBO's KL term; objective="
                          f"{config.objective!r} has none")
  if (config.free_bits or config.capacity_max) and not (
      config.estimator == "pathwise" and config.analytic_kl):
    raise ConfigError("config.free_bits and config.capacity_max need the closed-form KL: "
                      "estimator='pathwise' with analytic_kl=True")
  if config.free_bits and config.capacity_max:
    raise ConfigError("config.free_bits and config.capacity_max are alternatives; set one")
  if config.capacity_max and config.kl_warmup_steps:
    raise ConfigError("config.capacity_max ramps its own target C(t); set kl_warmup_steps=0")
  if config.eval_importance_samples and config.objective == "ae":
    raise ConfigError("config.eval_importance_samples: objective='ae' has no posterior "
                      "variance to sample; its test metric is the reconstruction")
  if config.capacity_max and config.beta != 1.0:
    raise ConfigError("config.capacity_max replaces beta by capacity_gamma; leave beta=1")
  if config.baseline != "none" and config.estimator != "score_function":
    raise ConfigError(f"config.baseline={config.baseline!r} applies to estimator='score_function' only")
  if config.estimator == "vimco" and config.num_samples < 2:
    raise ConfigError("config.estimator='vimco' needs config.num_samples >= 2")
  if not 0 <= config.baseline_decay < 1:
    raise ConfigError(f"config.baseline_decay={config.baseline_decay!r} must be in [0, 1)")


def _check_replicas(config, num_devices: int) -> None:
  """A replicated run is valid when every replica, as a single run, is."""
  try:
    sweep = replicas.parse_sweep(config.sweep, config.num_replicas)
  except replicas.SweepError as e:
    raise ConfigError(str(e)) from None
  if config.parallel == "sharding" and config.num_replicas % num_devices:
    raise ConfigError(f"config.parallel='sharding' splits the {config.num_replicas} replicas over "
                      f"{num_devices} devices: use a multiple of {num_devices} replicas (or "
                      f"config.num_devices)")
  replica_devices = 1 if config.parallel == "sharding" else num_devices
  for r in range(config.num_replicas):
    try:
      validate(replicas.replica_config(config, r, sweep), num_devices=replica_devices)
    except ConfigError as e:
      which = ", ".join(f"{k}={v[r]:g}" for k, v in sweep.items())
      raise ConfigError(f"replica {r}{' (' + which + ')' if which else ''}: {e}") from None

"""ConfigError and the checks of one model family's settings, for `config.validate`."""
from __future__ import annotations

from vaejax.models import HIERARCHICAL
from vaejax.models.base import LOGIT_LIKELIHOODS


class ConfigError(ValueError):
  pass


def choice(config, key, valid):
  if config[key] not in valid:
    raise ConfigError(f"config.{key}={config[key]!r} is not valid; choose one of {list(valid)}")


def at_least(config, key, low):
  if not config[key] >= low:
    raise ConfigError(f"config.{key}={config[key]!r} must be >= {low}")


VQ_KEYS = ("num_codes", "code_dim", "commitment_cost", "codebook_update", "ema_decay",
           "restart_after_steps")


PRIOR_KEYS = ("vqvae_workdir", "prior_width", "prior_depth", "prior_heads", "prior_dropout")


def check_vq_prior(config) -> None:
  if not config.vqvae_workdir:
    raise ConfigError("config.model='vqvae_prior' needs config.vqvae_workdir, the workdir of a "
                      "trained model='vqvae' run whose codes it fits")
  for key in ("prior_width", "prior_depth", "prior_heads"):
    at_least(config, key, 1)
  if not 0 <= config.prior_dropout < 1:
    raise ConfigError(f"config.prior_dropout={config.prior_dropout!r} must be in [0, 1)")
  if config.prior_width % config.prior_heads:
    raise ConfigError(f"config.prior_width={config.prior_width} must be divisible by "
                      f"config.prior_heads={config.prior_heads}")


def check_vqvae(config, hidden) -> None:
  from vaejax.models import vqvae
  choice(config, "codebook_update", vqvae.CODEBOOK_UPDATES)
  choice(config, "likelihood", vqvae.LIKELIHOODS)
  for key in ("num_codes", "code_dim"):
    at_least(config, key, 1)
  at_least(config, "restart_after_steps", 0)
  if not config.commitment_cost >= 0:
    raise ConfigError(f"config.commitment_cost={config.commitment_cost!r} must be >= 0")
  if not 0 < config.ema_decay < 1:
    raise ConfigError(f"config.ema_decay={config.ema_decay!r} must be in (0, 1)")
  if config.restart_after_steps and config.codebook_update != "ema":
    raise ConfigError("config.restart_after_steps needs codebook_update='ema' (restarts reset "
                      "the EMA statistics)")
  if len(hidden) != 2:
    raise ConfigError(f"config.hidden={config.hidden!r}: model='vqvae' takes two conv widths, "
                      f"one per 2x downsampling to the code grid")
  if config.compute_dtype != "float32" or config.architecture != "conv":
    raise ConfigError("config.model='vqvae' is convolutional in float32: set "
                      "architecture='conv', compute_dtype='float32'")


def check_output_bias(config) -> None:
  """output_bias_init='data_mean' needs a model with one output bias per pixel (an MLP
  decoder: vae or cvae with architecture='mlp', hvae, ladder) and a likelihood whose
  decoder output is a logit. Raises ConfigError otherwise."""
  mlp = config.model in HIERARCHICAL or (config.model in ("vae", "cvae")
                                         and config.architecture == "mlp")
  if not mlp:
    raise ConfigError(f"config.output_bias_init='data_mean' applies to model='vae' or 'cvae' "
                      f"with architecture='mlp', 'hvae' or 'ladder' only (not model="
                      f"{config.model!r}, architecture={config.architecture!r})")
  if config.likelihood not in LOGIT_LIKELIHOODS:
    raise ConfigError(f"config.output_bias_init='data_mean' sets logits of the pixels' mean: "
                      f"it needs likelihood in {list(LOGIT_LIKELIHOODS)}, not "
                      f"{config.likelihood!r}")


def check_hvae(config) -> None:
  dims = tuple(config.latent_dims)
  if any(not isinstance(h, (tuple, list)) for h in config.layer_hidden):
    raise ConfigError(f"config.layer_hidden={config.layer_hidden!r} must hold one tuple of "
                      f"positive widths per stochastic layer ({len(dims)})")
  hidden = tuple(tuple(h) for h in config.layer_hidden)
  if config.likelihood == "gaussian_learned":
    raise ConfigError(f"config.likelihood='gaussian_learned' is not available for "
                      f"model={config.model!r} (use gaussian_fixed)")
  if not dims or any(not isinstance(d, int) or d < 1 for d in dims):
    raise ConfigError(f"config.latent_dims={config.latent_dims!r} must be a non-empty tuple "
                      f"of positive ints (units per stochastic layer, bottom first)")
  if len(hidden) != len(dims) or any(not isinstance(w, int) or w < 1 for h in hidden for w in h):
    raise ConfigError(f"config.layer_hidden={config.layer_hidden!r} must hold one tuple of "
                      f"positive widths per stochastic layer ({len(dims)})")
  if config.objective == "elbo" and config.analytic_kl and config.model != "ladder":
    raise ConfigError(f"config.model={config.model!r} has no closed-form KL (its bottom-up "
                      f"q conditions each layer on the one below): set analytic_kl=False")
  if (config.objective == "elbo" and config.analytic_kl
      and config.estimator == "score_function"):
    raise ConfigError("config.analytic_kl: the ladder's KL is closed-form only given a "
                      "reparameterised draw of the layers above; use estimator='pathwise' "
                      "or analytic_kl=False with score_function")
  if config.architecture != "mlp" or config.compute_dtype != "float32":
    raise ConfigError(f"config.model={config.model!r} is an MLP in float32: set "
                      f"architecture='mlp', compute_dtype='float32'")
  if config.model == "ladder" and any(not h for h in hidden):
    raise ConfigError(f"config.layer_hidden={config.layer_hidden!r}: every ladder rung needs "
                      f">= 1 deterministic layer (its bottom-up Gaussian is read off it)")
  if config.model == "ladder" and config.estimator == "rws":
    raise ConfigError("estimator='rws' does not apply to model='ladder': its wake-phase q "
                      "update would also move the prior networks the ladder posterior shares "
                      "(use dreg, the pathwise IWAE or stl)")


AAE_KEYS = ("supervised", "stochastic_encoder", "discriminator_hidden",
            "discriminator_learning_rate", "generator_learning_rate", "mmd_weight",
            "gradient_penalty")
# Keys that only some models read, with those models: a changed value elsewhere is
# refused. (supervised, the AAE's too, has its own message in check_aae.)
MULTIMODAL_KEYS = ("modalities", "modality_weights", "image2_likelihood", "partner")
SEQUENCE_KEYS = ("rnn_cell", "rnn_hidden", "embed_dim", "decoder_input", "latent_feed",
                 "word_dropout")
FAMILY_KEYS = ((("seqvae",), SEQUENCE_KEYS), (("vqvae",), VQ_KEYS), (("vqvae_prior",), PRIOR_KEYS),
               (("aae", "wae"), AAE_KEYS),
               (("mvae", "mmvae", "mopoe"), MULTIMODAL_KEYS),
               (("aae",), ("discriminator_hidden", "discriminator_learning_rate",
                           "generator_learning_rate", "gradient_penalty")),
               (("wae",), ("mmd_weight",)))


def check_family_keys(config, defaults) -> None:
  """Raises ConfigError for the first FAMILY_KEYS key changed from `defaults` (the base
  config) under a model that does not read it."""
  for family, keys in FAMILY_KEYS:
    changed = [k for k in keys if config[k] != defaults[k]]
    if changed and config.model not in family:
      names = " or ".join(repr(m) for m in family)
      raise ConfigError(f"config.{changed[0]} applies to model={names} only")


def check_aae(config) -> None:
  """latent_prior for vae/aae/wae, and the aae/wae keys."""
  from vaejax import latent_priors
  choice(config, "latent_prior", latent_priors.PRIORS)
  if config.latent_prior != "gaussian" and config.latent_dim != 2:
    raise ConfigError(f"config.latent_prior={config.latent_prior!r} lives in 2-D: set "
                      f"latent_dim=2 (it is {config.latent_dim})")
  if config.model == "vae":
    if config.latent_prior == "swissroll2d":
      raise ConfigError("config.latent_prior='swissroll2d' has no density, which a VAE's KL "
                        "needs: use model='aae' or 'wae'")
    if config.latent_prior != "gaussian" and config.objective == "elbo" and config.analytic_kl:
      raise ConfigError(f"config.latent_prior={config.latent_prior!r} has no closed-form KL: "
                        f"set analytic_kl=False (the Monte-Carlo KL)")
    return
  hidden = config.discriminator_hidden
  if not isinstance(hidden, (tuple, list)) or any(not isinstance(h, int) or h < 1 for h in hidden):
    raise ConfigError(f"config.discriminator_hidden={hidden!r} must be a tuple of positive ints")
  for key in ("discriminator_learning_rate", "generator_learning_rate", "mmd_weight",
              "gradient_penalty"):
    at_least(config, key, 0)
  if config.likelihood == "gaussian_learned":
    raise ConfigError(f"config.likelihood='gaussian_learned' is not available for "
                      f"model={config.model!r} (use gaussian_fixed)")
  if config.supervised and config.model != "aae":
    raise ConfigError("config.supervised is the AAE's (the label goes to its discriminator)")
  if config.model == "wae" and config.batch_size < 2:
    raise ConfigError("config.batch_size: the WAE's MMD term needs >= 2 examples per batch")
  if config.eval_subset == 1:
    raise ConfigError(f"config.eval_subset=1: model={config.model!r}'s test MMD needs >= 2 "
                      f"examples (0 keeps the whole split)")
  if config.supervised and config.dataset != "mnist":
    raise ConfigError(f"config.supervised needs labelled training data; dataset="
                      f"{config.dataset!r} has none: use dataset='mnist'")
  if config.supervised and config.latent_prior == "gaussian":
    raise ConfigError("config.supervised sends each digit to its own prior region: use "
                      "latent_prior='mixture2d' or 'swissroll2d'")
  if config.grad_clip_norm and config.model == "aae":
    raise ConfigError("config.grad_clip_norm is not available for model='aae' (its phases "
                      "each have a plain Adam)")


def check_multimodal(config) -> None:
  """The modalities and their weights, and the settings the multimodal VAEs take."""
  from vaejax.models import GREY_LIKELIHOODS, multimodal
  names = tuple(config.modalities)
  if (not names or len(set(names)) != len(names)
      or any(n not in multimodal.MODALITY_NAMES for n in names)):
    raise ConfigError(f"config.modalities={config.modalities!r} must name distinct modalities "
                      f"from {list(multimodal.MODALITY_NAMES)}")
  if "image" not in names:
    raise ConfigError(f"config.modalities={config.modalities!r} must include 'image'")
  if "label" in names and config.dataset != "mnist":
    raise ConfigError(f"config.modalities holds 'label': dataset={config.dataset!r} has no "
                      f"training labels; use dataset='mnist'")
  if "image2" in names and config.dataset != "mnist":
    raise ConfigError(f"config.modalities holds 'image2', built from MNIST's labels: "
                      f"dataset={config.dataset!r} has none; use dataset='mnist'")
  from vaejax.paired_digits import PARTNER_SHAPES
  choice(config, "partner", tuple(PARTNER_SHAPES))
  valid = [name for name in GREY_LIKELIHOODS if name != "gaussian_learned"]
  if config.image2_likelihood not in valid:
    raise ConfigError(f"config.image2_likelihood={config.image2_likelihood!r}: image2 is "
                      f"grey-level; choose one of {valid}")
  weights = tuple(config.modality_weights)
  if weights and (len(weights) != len(names) or not all(w > 0 for w in weights)):
    raise ConfigError(f"config.modality_weights={config.modality_weights!r} must be empty or "
                      f"hold one positive weight per modality ({len(names)})")
  if config.model != "mmvae" and config.num_samples != 1:
    raise ConfigError(f"config.num_samples={config.num_samples}: model={config.model!r} draws "
                      f"one sample per posterior (num_samples is the MMVAE's K per expert)")
  if config.architecture != "mlp" or config.compute_dtype != "float32":
    raise ConfigError(f"config.model={config.model!r} is an MLP in float32: set "
                      f"architecture='mlp', compute_dtype='float32'")
  if config.likelihood == "gaussian_learned":
    raise ConfigError(f"config.likelihood='gaussian_learned' is not available for "
                      f"model={config.model!r} (use gaussian_fixed)")


def check_sequence(config) -> None:
  """The recurrent sequence VAE's keys (vaejax.models.recurrent)."""
  from vaejax import recurrent_nets
  from vaejax.models import recurrent
  choice(config, "rnn_cell", tuple(recurrent_nets.CELLS))
  choice(config, "decoder_input", recurrent.DECODER_INPUTS)
  choice(config, "latent_feed", recurrent.LATENT_FEEDS)
  at_least(config, "rnn_hidden", 1)
  at_least(config, "embed_dim", 1)
  if not 0 <= config.word_dropout < 1:
    raise ConfigError(f"config.word_dropout={config.word_dropout!r} must be in [0, 1)")
  if config.word_dropout and config.decoder_input != "previous":
    raise ConfigError("config.word_dropout drops the decoder's inputs: it needs "
                      "decoder_input='previous'")
  if config.dataset == "binarized_mnist" or config.dynamic_binarization:
    if config.likelihood != "bernoulli":
      raise ConfigError(f"config.likelihood={config.likelihood!r}: model='seqvae' reads image "
                        f"rows as Bernoulli pixels; set likelihood='bernoulli'")
  elif config.dataset == "mnist":
    raise ConfigError("model='seqvae' on dataset='mnist' needs 0/1 pixels: set "
                      "dynamic_binarization=True")
  if config.baseline == "learned" and config.dataset not in ("binarized_mnist", "mnist"):
    raise ConfigError("config.baseline='learned' is an MLP on images; a corpus's tokens need "
                      "baseline='none' or 'moving_average'")
  if config.latent_dim == 0 and config.objective != "elbo":
    raise ConfigError("config.latent_dim=0 is the RNN language model: its ELBO is log p(x) "
                      "exactly; use objective='elbo'")

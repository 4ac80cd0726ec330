"""Latent-variable models, one module per family, all following `base.LatentVariableModel`.

`make(config, image_shape)` builds the model named by `config.model`:

  vae   the Gaussian-latent VAE (Kingma & Welling 2014); with objective='ae' its
        encoder mean is a deterministic autoencoder's code
  cvae  the conditional VAE (Sohn et al. 2015): class label or observed quadrants
  hvae  stacked Gaussian stochastic layers (Burda et al. 2015's two-layer model)
  ladder  the ladder VAE (Sonderby et al. 2016): hvae's generative model, top-down
        inference merging bottom-up and prior Gaussians by precision
  vqvae the VQ-VAE (van den Oord et al. 2017): a grid of discrete codes, its own
        objective (config.objective='vq'), codebook by loss or EMA (a state group)
  vqvae_prior  a learned autoregressive prior over a trained VQ-VAE's codes
        (code_prior; objective='code_prior'); built by vaejax.builders, which
        loads the VQ-VAE run
  aae   the adversarial autoencoder (Makhzani et al. 2015; aae.py): its aggregate
        posterior matched to any prior by a discriminator, trained in three
        phases per step (objective='aae')
  wae   the Wasserstein autoencoder, WAE-MMD (Tolstikhin et al. 2018; aae.py): the
        same autoencoder with an MMD penalty over the batch (objective='wae')
  mvae, mmvae, mopoe  multimodal VAEs (multimodal.py): one latent for several
        modalities (config.modalities), combined by a product of experts (Wu &
        Goodman 2018), a mixture of experts (Shi et al. 2019) or a mixture of
        products (Sutter et al. 2021); each trains on its own objective
  seqvae  recurrent sequence VAEs (recurrent.py): the VRAE (Fabius & van
        Amersfoort 2014) on image rows, the sentence VAE (Bowman et al. 2016) on
        a character corpus's tokens; latent_dim = 0 is the RNN language model
"""
from __future__ import annotations

from typing import Sequence

from vaejax import tokens
from vaejax.models import aae, code_prior, cvae, hvae, ladder, multimodal, recurrent, vae, vqvae
from vaejax.models.base import (GREY_LIKELIHOODS, LIKELIHOODS, STATS, Example,
                                LatentVariableModel, Params, image_of)
from vaejax.models.vae import ARCHITECTURES, COMPUTE_DTYPES, VAE, make_vae

__all__ = ["aae", "ARCHITECTURES", "COMPUTE_DTYPES", "OWN_OBJECTIVE", "GREY_LIKELIHOODS", "LIKELIHOODS", "MODELS", "STATS", "VAE",
           "Example", "LatentVariableModel", "Params", "closed_form_kl", "code_prior", "cvae", "hvae", "image_of",
           "ladder", "make", "make_vae", "multimodal", "recurrent", "required_keys", "vae", "vqvae"]
MODELS = ("vae", "cvae", "hvae", "ladder", "vqvae", "vqvae_prior", "aae", "wae", "mvae",
          "mmvae", "mopoe", "seqvae")
# Families that train on their own objective (models.base, objective tier): model -> objective.
OWN_OBJECTIVE = {"vqvae": "vq", "vqvae_prior": "code_prior", "aae": "aae", "wae": "wae",
                 "mvae": "mvae", "mmvae": "mmvae", "mopoe": "mopoe"}
MULTIMODAL = ("mvae", "mmvae", "mopoe")
PRIOR_MATCHING = ("aae", "wae")
HIERARCHICAL = ("hvae", "ladder")  # stacked stochastic layers: latent_dims, layer_hidden


def required_keys(config) -> tuple[str, ...]:
  """Example keys besides "image" that config's model needs from the data."""
  if config.model == "cvae" and config.condition == "label":
    return ("label",)
  if config.model in PRIOR_MATCHING and config.dataset == "mnist":
    return ("label",)  # the supervised AAE trains on it; the codes' digit metrics read it
  if config.model in MULTIMODAL:  # the label too when it is not a modality: coherence reads it
    return tuple(m for m in config.modalities if m != "image") + ("label",) * (
        "label" not in config.modalities and config.dataset != "binarized_mnist")
  return ()


def closed_form_kl(config) -> bool:
  """Whether config.model has a closed-form KL(q(z|x) || p(z)) (a hierarchical VAE does not)."""
  return (config.model not in HIERARCHICAL + tuple(OWN_OBJECTIVE)
          and config.latent_prior == "gaussian")


def make(config, image_shape: Sequence[int]) -> LatentVariableModel:
  """The model named by config.model, for examples of `image_shape` (H, W, C), or
  (T,) for a corpus's token sequences (seqvae only).

  Raises ValueError naming the valid models for an unknown name.
  """
  if config.model not in MODELS:
    raise ValueError(f"unknown model {config.model!r}; valid: {list(MODELS)}")
  if config.model == "vqvae_prior":
    raise ValueError("model='vqvae_prior' loads a trained VQ-VAE: build it with "
                     "vaejax.builders.build_model")
  hidden = config.hidden if isinstance(config.hidden, (tuple, list)) else (config.hidden,)
  common = dict(architecture=config.architecture, image_shape=image_shape,
                latent_dim=config.latent_dim, hidden=hidden, likelihood=config.likelihood,
                activation=config.activation, gaussian_scale=config.gaussian_scale,
                compute_dtype=config.compute_dtype)
  if config.model == "seqvae":
    is_corpus = len(image_shape) == 1
    return recurrent.make_sequence_vae(
        image_shape=image_shape, latent_dim=config.latent_dim,
        vocab_size=len(tokens.vocabulary(config.dataset)) if is_corpus else 0,
        hidden=config.rnn_hidden, embed_dim=config.embed_dim, cell=config.rnn_cell,
        decoder_input=config.decoder_input, latent_feed=config.latent_feed)
  if len(image_shape) != 3:
    raise ValueError(f"model={config.model!r} needs images [H, W, C], not sequences of "
                     f"shape {tuple(image_shape)}: use model='seqvae'")
  if config.model in MULTIMODAL:
    return multimodal.make_multimodal_vae(
        model=config.model, modalities=multimodal.modalities_of(config, image_shape),
        latent_dim=config.latent_dim, hidden=hidden, activation=config.activation,
        gaussian_scale=config.gaussian_scale, estimator=config.estimator,
        num_samples=config.num_samples, kl_warmup_steps=config.kl_warmup_steps)
  if config.model == "vae":
    return make_vae(**common, latent_prior=config.latent_prior)
  if config.model in PRIOR_MATCHING:
    return aae.make_prior_matching_ae(
        **common, regularizer="adversarial" if config.model == "aae" else "mmd",
        latent_prior=config.latent_prior, discriminator_hidden=config.discriminator_hidden,
        supervised=config.supervised, stochastic_encoder=config.stochastic_encoder,
        mmd_weight=config.mmd_weight, gradient_penalty=config.gradient_penalty)
  if config.model == "vqvae":
    return vqvae.make_vqvae(
        image_shape=image_shape, features=hidden, num_codes=config.num_codes,
        code_dim=config.code_dim, likelihood=config.likelihood,
        gaussian_scale=config.gaussian_scale, commitment_cost=config.commitment_cost,
        codebook_update=config.codebook_update, ema_decay=config.ema_decay,
        restart_after=config.restart_after_steps)
  if config.model in HIERARCHICAL:
    make_layered = hvae.make_hvae if config.model == "hvae" else ladder.make_ladder_vae
    return make_layered(image_shape=image_shape, latent_dims=config.latent_dims,
                        hidden=config.layer_hidden, likelihood=config.likelihood,
                        activation=config.activation, gaussian_scale=config.gaussian_scale)
  return cvae.make_cvae(**common, condition=config.condition,
                        observed_quadrants=config.observed_quadrants, prior=config.prior)

"""From a config to the pieces of a run: model, init, estimator, optimizer and evaluator
(its data: `run_data`).

`experiment.run` and the scripts that rebuild a run (evaluation, figures,
benchmarks) all build through these, so a restored run is the trained one.
"""
from __future__ import annotations

import json
import math
import os
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from vaejax import (checkpoint, config as config_lib, data, estimators, evaluate, models,
                    objectives, optim, parallel, phases, replicas, run_data, training)
from vaejax.models import code_prior
from vaejax.models.base import Params


class NotARunError(ValueError):
  """The folder is not a workdir of experiments/train.py, or lacks the checkpoint asked for."""


def build_model(config, image_shape) -> models.LatentVariableModel:
  """config.model's model; for 'vqvae_prior' the VQ-VAE of config.vqvae_workdir
  (frozen; its params are read from that run's newest checkpoint at init).
  Raises ConfigError when that folder is not a finished VQ-VAE run on the same data."""
  if config.model != "vqvae_prior":
    return models.make(config, image_shape)
  try:
    stage1 = read_run_config(config.vqvae_workdir)
  except NotARunError as e:
    raise config_lib.ConfigError(f"config.vqvae_workdir: {e}") from None
  if stage1.model != "vqvae":
    raise config_lib.ConfigError(f"config.vqvae_workdir={config.vqvae_workdir!r} holds a "
                                 f"model={stage1.model!r} run, not a VQ-VAE")
  for key in ("dataset", "dynamic_binarization"):
    if stage1[key] != config[key]:
      raise config_lib.ConfigError(
          f"config.{key}={config[key]!r} differs from the VQ-VAE run's {stage1[key]!r}: the "
          f"prior must be fitted to codes of the data the VQ-VAE was trained on")
  vqvae = models.make(stage1, image_shape)

  def load_vqvae_params():
    # Host copies: restored arrays are committed to a device, the fresh ones beside them
    # are not, and jit compiles the chunk again when the mix changes after one call.
    return jax.device_get(restore_params(config.vqvae_workdir, stage1, vqvae)[0])

  return code_prior.make_vq_prior(vqvae, load_vqvae_params, width=config.prior_width,
                                  depth=config.prior_depth, heads=config.prior_heads,
                                  dropout=config.prior_dropout)


def build_init(config, model, train_set: data.Dataset) -> Callable[[jax.Array], Params]:
  """key -> the model's initial params. With config.output_bias_init='data_mean' the
  decoder's output bias starts at the log-odds of the mean training pixel
  (`models.base.data_mean_logits`), as in Burda et al. (2015)'s code; the model must
  have `with_output_bias` (config.validate has checked that). Jitted: one compile
  instead of one per initialiser and shape, with the same values."""
  if config.output_bias_init != "data_mean":
    return jax.jit(model.init)
  bias = models.base.data_mean_logits(train_set.images, train_set.max_value)
  return jax.jit(lambda key: model.with_output_bias(model.init(key), bias))


def read_run_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a run was trained with: base defaults updated by its config.json.

  Raises NotARunError when workdir has no readable config.json.
  """
  path = os.path.join(workdir, "config.json")
  if not os.path.isdir(workdir):
    raise NotARunError(f"{workdir} does not exist")
  if not os.path.exists(path):
    raise NotARunError(f"{workdir} is not a run: it has no config.json (a workdir of "
                       f"experiments/train.py has config.json and checkpoints/)")
  try:
    with open(path) as f:
      saved = json.load(f)
  except (OSError, ValueError) as e:
    raise NotARunError(f"{path} is unreadable: {e}") from None
  config = config_lib.base_config()  # defaults for keys newer than the run
  config.update(ml_collections.ConfigDict(saved))
  return config


def restore_params(workdir: str, config, model, step: Optional[int] = None, *,
                   replica: int = 0):
  """(params, step) of the run in workdir at its newest readable checkpoint (or at
  `step`); replica r's params for a replicated run. Raises NotARunError naming the
  problem (no checkpoints/, no readable checkpoint, no checkpoint at step, no such
  replica)."""
  estimator = build_estimator(config)
  optimizer = build_optimizer(config, estimator, model=model)
  num_replicas = config.num_replicas
  if not 0 <= replica < num_replicas:
    raise NotARunError(f"{workdir} has {num_replicas} replica(s); replica={replica} is not one")
  # Shapes and dtypes only, so no init is compiled or run (a VQ prior still reads its
  # stage-1 checkpoint): the checkpoint fills every leaf. One run's state is read onto
  # the default device (jax.default_device is respected); a replicated run's onto the
  # host, and only the replica asked for goes to the device.
  abstract = jax.eval_shape(lambda key: training.create_train_state(
      {**model.init(key), **estimator.init_params(key, model)}, optimizer, key=key),
      jax.random.PRNGKey(0))
  device = next(iter(jax.device_put(0).devices()))
  lead, sharding = (((), jax.sharding.SingleDeviceSharding(device)) if num_replicas == 1
                    else ((num_replicas,), None))  # None: orbax reads onto the host
  like = jax.tree_util.tree_map(
      lambda s: jax.ShapeDtypeStruct(lead + s.shape, s.dtype, sharding=sharding), abstract)
  directory = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(directory):
    raise NotARunError(f"{workdir} has no checkpoints/ folder: the run has not saved yet")
  ckpt = checkpoint.Checkpointer(directory)
  try:
    if step is None:
      restored = ckpt.restore_latest(like)
      if restored is None:
        raise NotARunError(f"{directory} holds no readable checkpoint")
      step, state, _ = restored
    else:
      steps = ckpt.steps()
      if step not in steps:
        raise NotARunError(f"{directory} has no checkpoint at step {step}; it has {steps}")
      state, _ = ckpt.restore(step, like)
  finally:
    ckpt.close()
  if num_replicas == 1:
    return state.params, int(step)
  return jax.device_put(replicas.index(state.params, replica), device), int(step)


def build_estimator(config, *, for_eval: bool = False) -> estimators.Estimator:
  if for_eval:  # test metrics: the plain ELBO (and IWAE-K when trained on it), beta = 1
    if config.objective in estimators.OWN_OBJECTIVES:
      return estimators.make_estimator(config.objective, config.estimator)
    if config.objective in ("iwae", "ae"):  # an AE has no posterior variance: recon only
      return estimators.make_estimator(config.objective, num_samples=config.num_samples)
    return estimators.make_estimator("elbo", analytic_kl=models.closed_form_kl(config))
  penalty = objectives.make_kl_penalty(
      beta=config.beta, warmup_steps=config.kl_warmup_steps, free_bits=config.free_bits,
      capacity_max=config.capacity_max, capacity_steps=config.capacity_steps,
      capacity_gamma=config.capacity_gamma, warmup_shape=config.kl_warmup_shape)
  return estimators.make_estimator(
      config.objective, config.estimator, beta=config.beta, num_samples=config.num_samples,
      analytic_kl=config.analytic_kl, baseline=config.baseline,
      baseline_decay=config.baseline_decay, kl_penalty=penalty, training=True)


def learning_rate(config, steps_per_epoch: int, base=None):
  """The rate `base` (default config.learning_rate) under config.lr_schedule:
  constant; burda, Burda et al.'s lr * 10^(-i/7) for 3^i epochs, i = 0, 1, ...
  (3280 epochs for i <= 7); cosine, a cosine decay from lr to 0 over the run's
  config.epochs (Loshchilov & Hutter 2017, without restarts)."""
  base = config.learning_rate if base is None else base
  if config.lr_schedule == "constant":
    return base
  if config.lr_schedule == "cosine":
    return optax.cosine_decay_schedule(base, max(1, config.epochs * steps_per_epoch))
  boundaries, epochs = {}, 0
  for i in range(1, 8):
    epochs += 3 ** (i - 1)
    boundaries[epochs * steps_per_epoch] = 10 ** (-1 / 7)  # multiplies the previous value
  return optax.piecewise_constant_schedule(base, boundaries)


def build_loss(config, model, estimator: estimators.Estimator):
  """The train step's loss: objectives.make_batch_loss of the estimator, or for a
  model with phases {phase name: its batch loss} (`vaejax.phases`). Under pmap a
  model's batch term gathers its inputs over the device axis."""
  axis_name = parallel.AXIS if config.parallel == "pmap" else None
  model_phases = getattr(model, "phases", ())
  if not model_phases:
    return objectives.make_batch_loss(model, estimator.per_example, axis_name=axis_name)

  def per_example(objective):
    return lambda model, params, x, *, key, step=0: objective(params, x, key=key, step=step)
  return {p.name: objectives.make_batch_loss(model, per_example(p.objective), axis_name=axis_name)
          for p in model_phases}


def build_optimizer(config, estimator: estimators.Estimator, steps_per_epoch: int = 1, *,
                    model=None) -> optax.GradientTransformation | phases.PhasedOptimizer:
  """Adam with config's settings (and schedule); for a model with phases one Adam
  per phase over its groups, at config.<phase>_learning_rate where that key is set
  (> 0), else at config.learning_rate, each under config.lr_schedule."""
  lr = learning_rate(config, steps_per_epoch)
  adam_settings = dict(b1=config.adam_b1, b2=config.adam_b2, eps=config.adam_eps)
  model_phases = getattr(model, "phases", ())
  if model_phases:
    def rate(name):
      value = getattr(config, f"{name}_learning_rate", 0.0)
      # A replicated run's swept rate is a traced scalar: select, not `or`.
      base = (jnp.where(value > 0, value, config.learning_rate) if isinstance(value, jax.Array)
              else value or config.learning_rate)
      return learning_rate(config, steps_per_epoch, base)
    return phases.PhasedOptimizer(tuple(
        (p.name, p.groups, optax.adam(rate(p.name), **adam_settings)) for p in model_phases))
  if config.grad_clip_norm <= 0 and estimator.baseline != "moving_average":
    # Plain Adam: the variant that skips non-finite updates in place (same state).
    # Clipping and the moving-average baseline's EMA (an optax.multi_transform) wrap
    # Adam in optax combinators that cannot pass the gate on, so they keep optax.adam.
    return optim.skippable_adam(lr, **adam_settings)
  adam = optax.adam(lr, **adam_settings)
  if config.grad_clip_norm > 0:
    adam = optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), adam)
  return estimators.make_optimizer(adam, estimator)


def build_evaluator(config, model, eval_sets: dict[str, data.Dataset], *, key: jax.Array):
  """evaluator(params, *, final=False, key=key) -> {split: {metric: float}} over the
  test (and validation) set: the bounds of config's eval estimator (one compile
  serves every call and key); when final, also the model's dataset_metrics, the
  importance-sampled NLL (eval_importance_samples) and the collapse metrics
  (eval_collapse_metrics: active units, I(x; z))."""
  per_example = build_estimator(config, for_eval=True).per_example
  sets = {split: run_data.examples(config, dataset, as_float=True)
          for split, dataset in eval_sets.items()}
  default_key = key

  def evaluator(params, *, final=False, key=None):
    key = default_key if key is None else key
    evaluated = {}
    for split, split_examples in sets.items():
      metrics = evaluate.evaluate_dataset(
          model, per_example, params, split_examples, key=key,
          batch_size=min(config.eval_batch_size, len(eval_sets[split])))
      metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}  # host sync: logging
      metrics.pop("loss", None)
      if final and hasattr(model, "dataset_metrics"):  # e.g. codebook use over the split
        metrics.update(model.dataset_metrics(params, split_examples))
      if final and config.eval_importance_samples:
        metrics.update(importance_nll(config, model, params, split_examples,
                                      key=jax.random.fold_in(key, 1)))
      if final and config.eval_collapse_metrics and config.latent_dim:
        collapse = evaluate.collapse_metrics(model, params, split_examples,
                                             key=jax.random.fold_in(key, 2))
        metrics.update({"active_units": int(collapse["active_units"]),  # host sync: summary
                        "mutual_information": float(collapse["mutual_information"])})
      evaluated[split] = metrics
    return evaluated

  return evaluator


def importance_nll(config, model, params, eval_examples, *, key) -> dict[str, float]:
  """-log p(x) (for a conditional model -log p(x|c)) importance-sampled with
  k = config.eval_importance_samples draws from q per example: mean and standard
  error over the examples, in nats. For a corpus's token sequences also the perplexity exp(sum_x -log p(x) / sum_x steps), per scored token
  (EOS included), as language models report it."""
  k = config.eval_importance_samples
  log_px = evaluate.importance_log_likelihood(
      model, params, eval_examples, key=key, num_samples=k, chunk_size=math.gcd(k, 500),
      batch_size=min(100, objectives.batch_size_of(eval_examples)))
  log_px = np.asarray(jax.device_get(log_px), np.float64)  # host sync: summary
  out = {"nll": float(-log_px.mean()),
         "nll_stderr": float(log_px.std(ddof=1) / np.sqrt(len(log_px))),
         "nll_num_samples": k}
  if "tokens" in eval_examples:
    steps = np.asarray(jax.device_get(jax.vmap(model.num_steps)(eval_examples)))  # host sync
    out["perplexity"] = float(np.exp(-log_px.sum() / steps.sum()))
  return out

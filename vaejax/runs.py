"""A trained run in one line: `vaejax.load_run(workdir)`.

    run = vaejax.load_run("runs/reference")
    images = run.sample(key=jax.random.PRNGKey(0), num_samples=64)   # [64, 28, 28, 1]

`load_run` reads the config.json and a checkpoint that `experiments/train.py`
wrote into a workdir and returns a `Run`: the config, the model, its params and
jitted, batched `encode`, `decode`, `sample`, `reconstruct`, `interpolate`,
`traverse` and `decode_grid` (`vaejax.models.batched`, bound to the params). It needs no data; `Run.examples`
loads a split preprocessed as the run evaluates it.
"""
from __future__ import annotations

import functools
import os
import shutil
from typing import Optional

import jax
import ml_collections
import numpy as np

from vaejax import builders, data, distributions, models, replicas, run_data
from vaejax.builders import NotARunError  # noqa: F401  (public here: vaejax.NotARunError)
from vaejax.models import batched
from vaejax.models.base import Example, LatentVariableModel, Params


class Run:
  """A trained model restored from a workdir (see the module docstring).

  Attributes:
    workdir: the run's folder.
    config: its ml_collections.ConfigDict (defaults filled in for keys newer
      than the run).
    model: the `LatentVariableModel` that config.model names.
    params: the model's params at `step` (device arrays).
    step: the optimiser step of the restored checkpoint.
  """

  def __init__(self, workdir: str, config: ml_collections.ConfigDict,
               model: LatentVariableModel, params: Params, step: int):
    self.workdir, self.config, self.model, self.params, self.step = (
        workdir, config, model, params, step)
    # params are arguments (not closed-over constants) so XLA does not embed them.
    self._encode = jax.jit(functools.partial(batched.encode, model))
    self._decode = jax.jit(functools.partial(batched.decode, model))
    self._sample = jax.jit(functools.partial(batched.sample, model), static_argnames="num_samples")
    self._reconstruct = jax.jit(functools.partial(batched.reconstruct, model))
    self._interpolate = jax.jit(functools.partial(batched.interpolate, model),
                                static_argnames="num_steps")
    self._traverse = jax.jit(functools.partial(batched.traverse, model))
    self._decode_grid = jax.jit(functools.partial(batched.decode_grid, model),
                                static_argnames=("low", "high", "num"))

  def __repr__(self) -> str:
    return (f"Run({self.workdir!r}, model={self.config.model!r}, step={self.step}, "
            f"latent_dim={self.model.latent_dim})")

  def encode(self, x: Example) -> distributions.DiagGaussian | distributions.PointMass:
    """q(z|x) for a batch: mean and log_var [B, latent_dim] (batched.encode; a
    deterministic encoder's PointMass has the mean only)."""
    return self._encode(self.params, x)

  def decode(self, z: jax.Array, x: Optional[Example] = None) -> jax.Array:
    """E[x|z] [B, H, W, C] in [0, 1] for z [B, latent_dim]; a conditional model
    needs the examples x that carry the condition. A sequence VAE decodes
    greedily (batched.decode): row probabilities given the greedy rows above, or
    token ids [B, T] for a corpus; sample, reconstruct and interpolate alike."""
    return self._decode(self.params, z, x)

  def sample(self, *, key: jax.Array, num_samples: Optional[int] = None,
             condition: Optional[Example] = None, labels: Optional[jax.Array] = None) -> jax.Array:
    """E[x|z] for prior draws: [B, H, W, C] in [0, 1]; B = num_samples, or one draw
    per conditioning example / label for a conditional model."""
    return self._sample(self.params, key=key, num_samples=num_samples, condition=condition,
                        labels=labels)

  def reconstruct(self, x: Example, *, key: Optional[jax.Array] = None) -> jax.Array:
    """E[x|z] at the posterior mean (or a draw, given key): [B, H, W, C] in [0, 1]."""
    return self._reconstruct(self.params, x, key=key)

  def interpolate(self, x0: Example, x1: Example, *, num_steps: int = 10) -> jax.Array:
    """Decoded posterior-mean interpolations: [B, num_steps, H, W, C] in [0, 1].
    ValueError for num_steps < 2 or discrete latents (batched.interpolate)."""
    return self._interpolate(self.params, x0, x1, num_steps=num_steps)

  def traverse(self, x: Example, *, dims, values) -> jax.Array:
    """One example's posterior mean with each of dims [D] swept over values [S]:
    [D, S, H, W, C] in [0, 1]; x has no batch axis (batched.traverse)."""
    batched.check_dims(np.asarray(dims), self.model.latent_dim)
    return self._traverse(self.params, x, dims=dims, values=values)

  def decode_grid(self, *, low: float = -3.0, high: float = 3.0, num: int = 15,
                  x: Optional[Example] = None) -> jax.Array:
    """A 2-D latent decoded over a num x num grid on [low, high]^2: [num, num, H, W, C],
    z[0] across and z[1] up; ValueError unless latent_dim == 2 (batched.decode_grid)."""
    return self._decode_grid(self.params, low=low, high=high, num=num, x=x)

  def examples(self, split: str = "test", *, num: int = 0,
               data_dir: Optional[str] = None) -> dict:
    """A split's examples as the run evaluates them: {"image": [N, H, W, C] float in
    [0, 1] (binarised as in training), "label": [N] int32 (when the data has labels)};
    num > 0 keeps that many, evenly spaced. Data from data_dir, else the run's
    data_dir, else $VAEJAX_DATA_DIR. Raises vaejax.data.DataError without data."""
    dataset = data.load(self.config.dataset, split, data_dir or self.config.data_dir or None)
    if "image2" in models.required_keys(self.config):  # drawn as in training: whole split
      dataset = run_data.with_partners(self.config, dataset, split)
    if num:
      dataset = dataset.spread(num)
    out = run_data.examples(self.config, dataset, as_float=True)
    if dataset.labels is not None:  # for pictures by digit, even when the model ignores them
      out["label"] = jax.numpy.asarray(dataset.labels, jax.numpy.int32)
    return out


read_config = builders.read_run_config  # the public name here


def load_run(workdir: str, step: Optional[int] = None, *, replica: int = 0) -> Run:
  """The run in `workdir` at its newest readable checkpoint (or at `step`).

  For a replicated run (config.num_replicas = R > 1) the Run holds replica
  `replica`'s params (seed config.seed + replica); NotARunError for one outside [0, R).

  Builds the model from the run's config (no data needed: every dataset here has
  28x28x1 images, or a corpus's fixed sequence length) and restores its params. Raises NotARunError (a ValueError)
  naming the problem when workdir is not a run, holds no checkpoint, or has none
  at `step` (the message lists the steps it has).
  """
  config = read_config(workdir)
  model = builders.build_model(config, run_data.example_shape(config))
  params, step = builders.restore_params(workdir, config, model, step, replica=replica)
  num_replicas = config.num_replicas
  if num_replicas > 1:  # the config of the single run this replica equals
    config = replicas.replica_config(
        config, replica, replicas.parse_sweep(config.sweep, num_replicas))
  return Run(workdir, config, model, params, int(step))


# What a run's record holds besides its checkpoints: small enough to commit with results.
RECORD_FILES = ("summary.json", "config.json", "metrics.jsonl", "samples.png",
                "reconstructions.png", "samples.txt")


def copy_run_record(workdir: str, dest: str) -> None:
  """Copies the run's RECORD_FILES that exist (no checkpoints) into dest, made if needed."""
  os.makedirs(dest, exist_ok=True)
  for name in RECORD_FILES:
    if os.path.exists(os.path.join(workdir, name)):
      shutil.copy(os.path.join(workdir, name), dest)

"""Many models in one compiled program: R replicas over seeds and hyperparameters.

`config.num_replicas = R` trains R independent models together: the train step
is vmapped over a leading replica axis of the state (`training.replicate_train_step`),
so the small matmuls of one model become batched matmuls. Replica r uses seed
`config.seed + r`: its init, noise and data order are those of a single run
with that seed. `config.sweep` gives float hyperparameters per replica:

    --config.num_replicas=4 --config.sweep='beta=1,2,4,8'
    --config.num_replicas=4 --config.sweep='learning_rate=1e-3,3e-4,1e-3,3e-4;kl_warmup_steps=0,0,500,500'

one `key=v1,...,vR` per swept key, `;` between keys, exactly R values each.
Only values that leave every array shape unchanged can differ (SWEEPABLE);
the other keys are shared.
"""
from __future__ import annotations

from typing import Any

import jax
import numpy as np

# Keys that can differ per replica: they enter the step as traced scalars.
SWEEPABLE = ("beta", "learning_rate", "kl_warmup_steps")
# Keys people will try that change array shapes (or the program), so cannot.
_SHAPE_KEYS = {"num_samples": "the number of samples K sets the sample axis's length",
               "batch_size": "it sets the batch axis's length",
               "latent_dim": "it sets the parameters' shapes",
               "hidden": "it sets the parameters' shapes",
               "seed": "replica r uses seed config.seed + r"}


class SweepError(ValueError):
  """config.sweep is malformed; the message says how."""


def parse_sweep(sweep: str, num_replicas: int) -> dict[str, list[float]]:
  """'beta=1,2;learning_rate=1e-3,3e-4' -> {"beta": [1.0, 2.0], ...}; each key must be
  in SWEEPABLE and list exactly num_replicas values. Raises SweepError."""
  out: dict[str, list[float]] = {}
  for part in (p.strip() for p in sweep.split(";")):
    if not part:
      continue
    name, sep, values = part.partition("=")
    name = name.strip()
    if not sep:
      raise SweepError(f"config.sweep={sweep!r}: {part!r} is not of the form key=v1,v2,...")
    if name in _SHAPE_KEYS:
      raise SweepError(f"config.sweep: {name} cannot differ between replicas ({_SHAPE_KEYS[name]});"
                       f" sweepable keys: {', '.join(SWEEPABLE)}")
    if name not in SWEEPABLE:
      raise SweepError(f"config.sweep: {name!r} is not sweepable; choose from "
                       f"{', '.join(SWEEPABLE)}")
    if name in out:
      raise SweepError(f"config.sweep: {name} is given twice")
    try:
      parsed = [float(v) for v in values.split(",") if v.strip()]
    except ValueError:
      raise SweepError(f"config.sweep: the values of {name} ({values!r}) must be numbers") from None
    if len(parsed) != num_replicas:
      raise SweepError(f"config.sweep: {name} has {len(parsed)} values but config.num_replicas="
                       f"{num_replicas}; give one value per replica")
    if name == "kl_warmup_steps" and any(v != int(v) or v < 0 for v in parsed):
      raise SweepError(f"config.sweep: kl_warmup_steps must be whole numbers >= 0, got {parsed}")
    out[name] = parsed
  return out


def replica_config(config, r: int, sweep: dict[str, list[float]]):
  """Replica r's config as a single run would have it: seed + r and its swept values."""
  c = config.copy_and_resolve_references()
  with c.ignore_type():
    c.num_replicas, c.sweep, c.seed = 1, "", config.seed + r
    for name, values in sweep.items():
      c[name] = int(values[r]) if name == "kl_warmup_steps" else values[r]
  return c


class TracedConfig:
  """A config whose swept keys read as traced scalars: the builders' `config.beta`
  inside the vmapped step is the replica's value."""

  def __init__(self, config, values: dict[str, jax.Array]):
    self._config, self._values = config, values

  def __getattr__(self, name: str) -> Any:
    values = self.__dict__["_values"]
    return values[name] if name in values else getattr(self.__dict__["_config"], name)

  __getitem__ = __getattr__


def hyperparams(sweep: dict[str, list[float]]) -> dict[str, np.ndarray]:
  """{key: float32 [R]}: what replicate_train_step vmaps over."""
  return {name: np.asarray(values, np.float32) for name, values in sweep.items()}


def stack(trees: list) -> Any:
  """[tree_0, ..., tree_{R-1}] -> one tree with a leading replica axis (host arrays)."""
  return jax.tree_util.tree_map(lambda *xs: np.stack([np.asarray(x) for x in xs]),
                                *jax.device_get(trees))


def index(tree: Any, r: int) -> Any:
  """Replica r of a stacked tree."""
  return jax.tree_util.tree_map(lambda x: x[r], tree)


def aggregate(per_replica: list[dict], diverged: list[bool]) -> tuple[dict, dict]:
  """({metric: mean}, {metric: sample sd}) over the replicas that did not diverge
  (sd is None for fewer than two)."""
  kept = [m for m, d in zip(per_replica, diverged) if not d]
  mean, sd = {}, {}
  for k in (kept[0] if kept else {}):
    if not all(isinstance(m.get(k), (int, float)) for m in kept):
      continue
    values = np.asarray([m[k] for m in kept], np.float64)
    mean[k] = float(values.mean())
    sd[k] = float(values.std(ddof=1)) if len(values) > 1 else None
  return mean, sd


def describe(num_replicas: int, sweep: dict[str, list[float]], seed: int) -> list[dict]:
  """Per replica: its seed and swept values (for summary.json)."""
  return [{"replica": r, "seed": seed + r,
           **{k: (int(v[r]) if k == "kl_warmup_steps" else v[r]) for k, v in sweep.items()}}
          for r in range(num_replicas)]

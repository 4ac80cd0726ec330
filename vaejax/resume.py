"""Resuming a run: the checkpoint's config against this run's, and the restore.

A workdir with checkpoints resumes from the newest readable one (orbax writes
atomically, so a killed run leaves the previous one intact); records past the
restored step are dropped, so a resumed run's logs read as one run's.
"""
from __future__ import annotations

import json
import os

import ml_collections

from vaejax import config as config_lib, run_logs

# Keys that act only when a run starts: resuming with another value is refused.
INIT_ONLY_KEYS = ("output_bias_init",)


class RunError(RuntimeError):
  """A run cannot continue (diverged, config mismatch on resume); the message says why."""


def config_to_dict(config: ml_collections.ConfigDict) -> dict:
  return json.loads(config.to_json())


def changed_config_keys(saved: dict, run_config: dict) -> list[str]:
  """Keys whose value differs between a checkpoint's config and this run's.

  A key added to the config since the checkpoint was written counts as
  unchanged while it holds its default: that is how the old run behaved.
  """
  defaults = config_to_dict(config_lib.base_config())
  saved = {**{k: v for k, v in defaults.items() if k not in saved}, **saved}
  return sorted(k for k in set(run_config) | set(saved) if run_config.get(k) != saved.get(k))


def restore_or_start(ckpt, state, run_config: dict, workdir: str, *, allow_config_change: bool,
                     primary: bool, log):
  """The newest readable checkpoint's state, else `state` (a fresh start).

  The checkpoint's config is checked against run_config first: RunError when
  they differ (unless allow_config_change) or when an INIT_ONLY_KEYS value
  differs (always). On the primary process, metrics.jsonl is cut back to the
  restored step and config.json rewritten.
  """
  metrics_path = os.path.join(workdir, "metrics.jsonl")

  def check_config(meta: dict) -> None:
    saved = meta.get("config", {})
    changed = changed_config_keys(saved, run_config)
    if not changed:
      return
    for key in (k for k in changed if k in INIT_ONLY_KEYS):
      # Even with allow_config_change: the records would name an init the run never had.
      was = saved.get(key, config_lib.base_config()[key])
      raise RunError(f"{workdir} holds a run started with {key}={was!r}, which acts at step 0 "
                     f"only; resume it with --config.{key}={was}")
    if not allow_config_change:
      raise RunError(f"{workdir} holds a checkpoint of a run with a different config "
                     f"(changed: {', '.join(changed)}); use a new --workdir or pass "
                     f"--allow_config_change to continue with the new config")
    log(f"continuing with a changed config (changed: {', '.join(changed)})")

  restored = ckpt.restore_latest(state, check_metadata=check_config)
  step = -1
  if restored is not None:
    step, state, _ = restored
    log(f"resuming from checkpoint at step {step} in {workdir}")
  if primary:
    run_logs.truncate_metrics(metrics_path, step)
    run_logs.write_json_atomic(os.path.join(workdir, "config.json"), run_config)
  return state

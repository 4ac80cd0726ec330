"""Atomic, resumable checkpoints of the train state with orbax-checkpoint.

Orbax writes each step into a temporary folder and renames it into place when
complete, so a kill mid-save leaves the previous checkpoint intact; the newest
`max_to_keep` are kept. `restore_latest` falls back to older steps when the
newest cannot be read (a corrupted file), and never returns non-finite params.
"""
from __future__ import annotations

import hashlib
import logging
import os
from typing import Any, Callable, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
  pass


def _all_finite(tree) -> bool:
  return all(np.isfinite(np.asarray(x)).all() for x in jax.tree_util.tree_leaves(tree)
             if np.issubdtype(np.asarray(x).dtype, np.floating))


class Checkpointer:
  """Saves and restores pytrees (the train state) plus a JSON metadata dict per step."""

  def __init__(self, directory: str, *, max_to_keep: int = 3):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep,
                                           enable_async_checkpointing=False, create=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def steps(self) -> list[int]:
    self._manager.reload()
    return sorted(self._manager.all_steps())

  def save(self, step: int, state: Any, metadata: dict) -> None:
    """Writes `state` at `step`; refuses non-finite params (never checkpointed)."""
    if not _all_finite(state):
      raise CheckpointError(f"refusing to checkpoint step {step}: the state holds NaN/Inf")
    metadata = dict(metadata, state_layout=_layout(state))
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), metadata=ocp.args.JsonSave(metadata)), force=True)
    self._manager.wait_until_finished()

  def restore(self, step: int, like: Any) -> tuple[Any, dict]:
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, like)
    out = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), metadata=ocp.args.JsonRestore()))
    if not _all_finite(out["state"]):
      raise CheckpointError(f"checkpoint {step} holds NaN/Inf")
    return out["state"], dict(out["metadata"])

  def restore_metadata(self, step: int) -> dict:
    out = self._manager.restore(step, args=ocp.args.Composite(metadata=ocp.args.JsonRestore()))
    return dict(out["metadata"])

  def restore_latest(self, like: Any, *, check_metadata: Optional[Callable[[dict], Any]] = None
                     ) -> Optional[tuple[int, Any, dict]]:
    """(step, state, metadata) of the newest readable checkpoint, or None if none.

    check_metadata(metadata) runs before the state is read and may raise to
    refuse the checkpoint (a config change, say). A checkpoint whose recorded
    shapes and dtypes differ from `like`'s is refused with CheckpointError, and
    left in place. An unreadable checkpoint is renamed to
    `<step>.unreadable` (kept for inspection, ignored from then on; by the
    primary process only) and the one before is tried.
    """
    for step in reversed(self.steps()):
      try:
        metadata = self.restore_metadata(step)
      except Exception as e:  # corrupt or partial: fall back to the one before
        self._set_aside(step, e)
        continue
      if check_metadata is not None:
        check_metadata(metadata)
      layout = metadata.get("state_layout")
      if layout is not None and layout != _layout(like):
        changed = sorted(k for k in set(layout) | set(_layout(like))
                         if layout.get(k) != _layout(like).get(k))
        raise CheckpointError(
            f"checkpoint {step} in {self.directory} does not fit the new config: the state's "
            f"layout changed ({', '.join(changed[:3])}{', ...' if len(changed) > 3 else ''}); "
            f"start a new workdir")
      try:
        state, metadata = self.restore(step, like)
        return step, state, metadata
      except Exception as e:  # unreadable data: set it aside, fall back to the one before
        self._set_aside(step, e)
    return None

  def _set_aside(self, step: int, error: Exception) -> None:
    logging.warning("checkpoint %d in %s is unreadable (%s: %s); trying an older one",
                    step, self.directory, type(error).__name__, error)
    if jax.process_index() == 0:
      self._quarantine(step)
    else:
      self._manager.reload()

  def _quarantine(self, step: int) -> None:
    src = os.path.join(self.directory, str(step))
    dst, n = src + ".unreadable", 1
    while os.path.exists(dst):
      dst, n = f"{src}.unreadable{n}", n + 1
    os.replace(src, dst)
    self._manager.reload()

  def close(self) -> None:
    self._manager.close()


def newest_readable(directory: str) -> tuple[Optional[int], dict, list[int]]:
  """(step, metadata, skipped) for the newest checkpoint under `directory` whose
  state and metadata both read back, with finite state; `skipped` lists the newer
  steps that did not. step is None (metadata {}) if no step reads back or there is
  no folder.

  Opens `directory` read-only and restores without a target pytree, so it needs no
  model and never writes, creates or deletes anything there: for tools that copy or
  inspect a run's checkpoints while the run may still be writing new ones (orbax's
  unfinished temporary folders are not steps). A run restores with
  `Checkpointer.restore_latest`.
  """
  if not os.path.isdir(directory):
    return None, {}, []
  manager = ocp.CheckpointManager(os.path.abspath(directory),
                                  options=ocp.CheckpointManagerOptions(read_only=True))
  skipped = []
  try:
    for step in sorted(manager.all_steps(), reverse=True):
      try:
        out = manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(), metadata=ocp.args.JsonRestore()))
      except Exception as e:  # corrupt or partial: try the one before
        logging.warning("checkpoint %d in %s is unreadable (%s: %s)", step, directory,
                        type(e).__name__, e)
        skipped.append(step)
        continue
      if _all_finite(out["state"]):
        return step, dict(out["metadata"]), skipped
      logging.warning("checkpoint %d in %s holds NaN/Inf", step, directory)
      skipped.append(step)
    return None, {}, skipped
  finally:
    manager.close()


def _layout(tree: Any) -> dict[str, str]:
  """{leaf path: "dtype[shape]"}: what a restore into `tree` (arrays or
  jax.ShapeDtypeStruct) needs to match."""
  def describe(leaf) -> str:
    dtype = leaf.dtype if hasattr(leaf, "dtype") else np.asarray(leaf).dtype
    return f"{np.dtype(dtype)}{list(np.shape(leaf))}"
  return {jax.tree_util.keystr(path): describe(leaf)
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def params_checksum(params: Any) -> str:
  """sha256 over every leaf's path, dtype, shape and bytes, in tree order."""
  h = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(jax.device_get(params))[0]:
    leaf = np.ascontiguousarray(leaf)
    h.update(f"{jax.tree_util.keystr(path)}|{leaf.dtype}|{leaf.shape}|".encode())
    h.update(leaf.tobytes())
  return h.hexdigest()

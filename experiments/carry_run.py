"""Carries an unfinished run to a later session: copies the run's newest checkpoint,
its config.json and its metrics.jsonl (cut back to that checkpoint's step) into a
folder that git tracks.

A run of the full Burda et al. schedule takes longer than one session on a CPU, and
a new checkout starts with no `runs/` (it is ignored). The copy is one checkpoint
(params and optimizer state: a few MB for the Table 1 models), so the run resumes
exactly where the copy was taken: copy the folder back into `runs/` and give
`experiments/train.py` the same command as before.

  python experiments/carry_run.py --workdir runs/table1_k5 --to experiments/in_progress/table1_k5
  # in a later session, on a new checkout:
  mkdir -p runs && cp -r experiments/in_progress/table1_k5 runs/
  python experiments/train.py --config ... --workdir runs/table1_k5 ...   # the run's own command

The folder gets carried.json (step, epoch, source workdir, date). An existing --to
folder is replaced only if it holds a carried.json (an older copy); anything else
is refused, so the script never deletes a folder it did not write. Errors are one
line on stderr, exit status 2.
"""
from __future__ import annotations

import datetime
import json
import os
import shutil
import sys

from absl import app, flags, logging

from vaejax import checkpoint, run_logs

_WORKDIR = flags.DEFINE_string("workdir", None, "The run's workdir (config.json, checkpoints/).")
_TO = flags.DEFINE_string("to", None, "The folder to write (git-tracked, e.g. experiments/in_progress/NAME).")
flags.mark_flags_as_required(["workdir", "to"])


class CarryError(Exception):
  pass


def carry(workdir: str, to: str) -> dict:
  """Copies `workdir`'s newest checkpoint, config and metrics into `to`; returns carried.json's record.

  Raises:
    CarryError: `workdir` is not a run or has no checkpoint, or `to` exists and is not a copy.
  """
  if not os.path.exists(os.path.join(workdir, "config.json")):
    raise CarryError(f"{workdir} is not a run: it has no config.json")
  if os.path.exists(to) and not os.path.exists(os.path.join(to, "carried.json")):
    raise CarryError(f"{to} exists and is not a carried run (no carried.json); not replacing it")
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"))
  try:
    steps = ckpt.steps()
    if not steps:
      raise CarryError(f"{workdir} has no checkpoint to carry")
    step = steps[-1]
    metadata = ckpt.restore_metadata(step)  # reads it: an unreadable checkpoint is not carried
  finally:
    ckpt.close()
  if os.path.exists(to):
    shutil.rmtree(to)
  os.makedirs(os.path.join(to, "checkpoints"))
  shutil.copytree(os.path.join(workdir, "checkpoints", str(step)),
                  os.path.join(to, "checkpoints", str(step)))
  shutil.copy2(os.path.join(workdir, "config.json"), to)
  metrics = os.path.join(workdir, "metrics.jsonl")
  if os.path.exists(metrics):
    shutil.copy2(metrics, to)
    run_logs.truncate_metrics(os.path.join(to, "metrics.jsonl"), step)
  record = {"step": step, "epoch": metadata.get("epoch"), "from": workdir,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
  run_logs.write_json_atomic(os.path.join(to, "carried.json"), record)
  return record


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)  # orbax's info lines would bury the one-line result
  try:
    record = carry(_WORKDIR.value, _TO.value)
  except CarryError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print(f"carried step {record['step']} (epoch {record['epoch']}) of {_WORKDIR.value} to {_TO.value}")
  print(json.dumps(record))


if __name__ == "__main__":
  app.run(main)

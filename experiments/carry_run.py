"""Carries an unfinished run to a later session: copies the run's newest readable
checkpoint, its config.json and its metrics.jsonl (cut back to that checkpoint's
step) into a folder that git tracks.

A run of the full Burda et al. schedule takes longer than one session on a CPU, and
a new checkout starts with no `runs/` (it is ignored). The copy is one checkpoint
(params and optimizer state: a few MB for the Table 1 models), so the run resumes
exactly where the copy was taken: copy the folder back into `runs/` and give
`experiments/train.py` the run's own command (its config is compared key by key,
data_dir included, so use the same relative data_dir).

  python experiments/carry_run.py --workdir runs/table1_k5 --to experiments/in_progress/table1_k5
  # in a later session, on a new checkout:
  mkdir -p runs && cp -r experiments/in_progress/table1_k5 runs/
  python experiments/train.py --config ... --workdir runs/table1_k5 ...   # the run's own command

The folder gets carried.json (step, epoch, source workdir, newer steps skipped as
unreadable or non-finite, date). TensorBoard event files are not carried (a resumed
run writes new ones from the carried step).

An existing --to folder is replaced only if it holds exactly what this script writes
(carried.json, config.json, metrics.jsonl, one checkpoint), so it never deletes a
workdir that has trained on; --to may not be --workdir or lie inside or around it.
The copy is written into a new temporary folder beside --to and swapped into place
when complete, so a failure leaves the previous copy as it was. Errors are one line
on stderr, exit status 2.
"""
from __future__ import annotations

import datetime
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # noqa: E402

_WORKDIR = flags.DEFINE_string("workdir", None, "The run's workdir (config.json, checkpoints/).")
_TO = flags.DEFINE_string("to", None, "The folder to write (git-tracked, e.g. experiments/in_progress/NAME).")
flags.mark_flags_as_required(["workdir", "to"])

CARRIED_FILES = {"carried.json", "config.json", "metrics.jsonl", "checkpoints"}


class CarryError(Exception):
  pass


def _is_carried_copy(folder: str) -> bool:
  """True if `folder` holds only what `carry` writes: a resumed run adds files
  (summary.json, event files, more checkpoints) and is then not a copy any more."""
  names = set(os.listdir(folder))
  if "carried.json" not in names or not names <= CARRIED_FILES:
    return False
  checkpoints = os.path.join(folder, "checkpoints")
  return os.path.isdir(checkpoints) and len(os.listdir(checkpoints)) == 1


def carry(workdir: str, to: str) -> dict:
  """Copies `workdir`'s newest readable checkpoint, config and metrics into `to`.

  Returns:
    carried.json's record: {"step", "epoch", "from", "skipped_newer_steps", "date"}.
  Raises:
    CarryError: `workdir` is not a run or has no readable checkpoint; `to` is, holds
      or lies inside `workdir`; `to` exists and is not an earlier copy.
  """
  from vaejax import checkpoint, run_logs
  if not os.path.exists(os.path.join(workdir, "config.json")):
    raise CarryError(f"{workdir} is not a run: it has no config.json")
  source, target = os.path.realpath(workdir), os.path.realpath(to)
  if os.path.commonpath([source, target]) in (source, target):
    raise CarryError(f"--to {to} is --workdir {workdir} or lies inside or around it")
  if os.path.exists(to) and not _is_carried_copy(to):
    raise CarryError(f"{to} exists and is not an earlier copy (it must hold only "
                     f"{', '.join(sorted(CARRIED_FILES))} with one checkpoint); not replacing it")
  step, metadata, skipped = checkpoint.newest_readable(os.path.join(workdir, "checkpoints"))
  if step is None:
    raise CarryError(f"{workdir} has no readable checkpoint to carry")

  # Fresh, uniquely named folders beside --to: nothing that exists is ever deleted
  # here but --to itself (an earlier copy, checked above).
  parent = os.path.dirname(os.path.abspath(to))
  os.makedirs(parent, exist_ok=True)
  staging = tempfile.mkdtemp(dir=parent, prefix=".carrying-")
  try:
    os.makedirs(os.path.join(staging, "checkpoints"))
    shutil.copytree(os.path.join(workdir, "checkpoints", str(step)),
                    os.path.join(staging, "checkpoints", str(step)))
    shutil.copy2(os.path.join(workdir, "config.json"), staging)
    metrics = os.path.join(workdir, "metrics.jsonl")
    if os.path.exists(metrics):
      shutil.copy2(metrics, staging)
      run_logs.truncate_metrics(os.path.join(staging, "metrics.jsonl"), step)
    record = {"step": step, "epoch": metadata.get("epoch"), "from": workdir,
              "skipped_newer_steps": skipped,
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    run_logs.write_json_atomic(os.path.join(staging, "carried.json"), record)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)  # a half-written copy is never left behind
    raise
  if os.path.exists(to):  # an earlier copy: set aside, swap, then delete
    previous = tempfile.mkdtemp(dir=parent, prefix=".carried-before-")
    os.replace(to, os.path.join(previous, "copy"))
    os.replace(staging, to)
    shutil.rmtree(previous)
  else:
    os.replace(staging, to)
  return record


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.ERROR)  # orbax's read-only notices would bury the one-line result
  try:
    record = carry(_WORKDIR.value, _TO.value)
  except (CarryError, OSError, shutil.Error) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  if record["skipped_newer_steps"]:
    print(f"skipped newer steps that did not read back finite: {record['skipped_newer_steps']}")
  print(f"carried step {record['step']} (epoch {record['epoch']}) of {_WORKDIR.value} to {_TO.value}")
  print(json.dumps(record))


if __name__ == "__main__":
  app.run(main)

"""experiments/carry_run.py: an unfinished run copied to another folder resumes exactly."""
import json
import shutil
import subprocess
import sys

import pytest

from conftest import REPO
from test_train_script import run_train

CARRY = [sys.executable, str(REPO / "experiments" / "carry_run.py")]
EVERY = "--config.checkpoint_every=8"  # the smoke run is 32 steps: checkpoints 16, 24, 32 kept


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
  """One finished smoke run (checkpoints 16, 24, 32); tests work on copies of it."""
  workdir = tmp_path_factory.mktemp("carry") / "whole"
  proc = run_train(workdir, EVERY, data_dir=data_dir)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return workdir


def run_carry(workdir, to):
  return subprocess.run(CARRY + ["--workdir", str(workdir), "--to", str(to)],
                        capture_output=True, text=True, timeout=120, cwd=REPO)


def test_a_carried_unfinished_run_resumes_to_the_uninterrupted_result(trained, tmp_path, data_dir):
  whole = trained
  # The same run stopped after step 24: its last checkpoint removed, as if killed before it.
  stopped = tmp_path / "stopped"
  shutil.copytree(whole, stopped)
  shutil.rmtree(stopped / "checkpoints" / "32")
  (stopped / "summary.json").unlink()

  to = tmp_path / "carried" / "run"
  proc = run_carry(stopped, to)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert sorted(p.name for p in (to / "checkpoints").iterdir()) == ["24"]  # only the newest
  steps = [json.loads(l)["step"] for l in (to / "metrics.jsonl").read_text().splitlines()]
  assert steps and max(steps) == 24
  record = json.loads((to / "carried.json").read_text())
  assert record["step"] == 24 and record["from"] == str(stopped)

  proc = run_train(to, EVERY, data_dir=data_dir)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "resuming from checkpoint at step 24" in proc.stdout
  resumed = json.loads((to / "summary.json").read_text())
  original = json.loads((whole / "summary.json").read_text())
  assert resumed["params_checksum"] == original["params_checksum"]
  assert resumed["test"] == original["test"]

  # The resumed copy has trained on (summary.json, event files): never replaced.
  proc = run_carry(stopped, to)
  assert proc.returncode == 2 and "is not an earlier copy" in proc.stderr
  assert (to / "summary.json").exists()

  # An earlier copy is replaced by a newer one, and nothing else is left beside it.
  again = tmp_path / "carried" / "again"
  assert run_carry(stopped, again).returncode == 0
  proc = run_carry(whole, again)
  assert proc.returncode == 0, proc.stderr[-3000:]
  record = json.loads((again / "carried.json").read_text())
  assert record["step"] == 32 and record["from"] == str(whole)
  assert sorted(p.name for p in (again / "checkpoints").iterdir()) == ["32"]
  assert sorted(p.name for p in again.parent.iterdir()) == ["again", "run"]


def test_carry_skips_unfinished_and_unreadable_checkpoints(trained, tmp_path):
  run = tmp_path / "run"
  shutil.copytree(trained, run)
  # An orbax temporary folder of a save in progress, and a corrupt newest step.
  (run / "checkpoints" / "40.orbax-checkpoint-tmp-1234").mkdir()
  for f in (run / "checkpoints" / "32" / "state").rglob("*"):
    if f.is_file() and f.parent.name == "d":
      f.write_bytes(b"corrupt")
  proc = run_carry(run, tmp_path / "to")
  assert proc.returncode == 0, proc.stderr[-3000:]
  record = json.loads((tmp_path / "to" / "carried.json").read_text())
  assert record["step"] == 24 and record["skipped_newer_steps"] == [32]
  assert "skipped newer steps that did not read back finite: [32]" in proc.stdout


def test_carry_refuses_to_replace_a_folder_it_did_not_write(trained, tmp_path):
  run = tmp_path / "run"
  shutil.copytree(trained, run)
  precious = tmp_path / "precious"
  precious.mkdir()
  (precious / "notes.txt").write_text("keep me")
  proc = run_carry(run, precious)
  assert proc.returncode == 2
  assert proc.stderr.strip() == (
      f"error: {precious} exists and is not an earlier copy (it must hold only carried.json, "
      f"checkpoints, config.json, metrics.jsonl with one checkpoint); not replacing it")
  assert (precious / "notes.txt").read_text() == "keep me"
  for to in (run, run / "inside", tmp_path):  # the run itself, inside it, around it
    proc = run_carry(run, to)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: --to {to} is --workdir {run} or lies inside or around it"
  assert (run / "summary.json").exists() and not (run / "inside").exists()


def test_carry_of_a_folder_that_is_not_a_run_is_one_clear_line(tmp_path):
  proc = run_carry(tmp_path, tmp_path.parent / "to_nothing")
  assert proc.returncode == 2
  assert proc.stderr.strip() == f"error: {tmp_path} is not a run: it has no config.json"
  (tmp_path / "config.json").write_text("{}")
  proc = run_carry(tmp_path, tmp_path.parent / "to_nothing")
  assert proc.returncode == 2
  assert proc.stderr.strip() == f"error: {tmp_path} has no readable checkpoint to carry"
  assert not (tmp_path / "checkpoints").exists()  # nothing created in the source
  assert not (tmp_path.parent / "to_nothing").exists()

"""experiments/carry_run.py: an unfinished run copied to another folder resumes exactly."""
import json
import shutil
import subprocess
import sys

from conftest import REPO
from test_train_script import run_train

CARRY = [sys.executable, str(REPO / "experiments" / "carry_run.py")]
EVERY = "--config.checkpoint_every=8"  # the smoke run is 32 steps: checkpoints 16, 24, 32 kept


def run_carry(workdir, to):
  return subprocess.run(CARRY + ["--workdir", str(workdir), "--to", str(to)],
                        capture_output=True, text=True, timeout=120, cwd=REPO)


def test_a_carried_unfinished_run_resumes_to_the_uninterrupted_result(tmp_path, data_dir):
  whole = tmp_path / "whole"
  proc = run_train(whole, EVERY, data_dir=data_dir)
  assert proc.returncode == 0, proc.stderr[-3000:]
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

  # A second carry replaces the older copy (it holds carried.json).
  proc = run_carry(to, to.parent / "again")
  assert proc.returncode == 0, proc.stderr[-3000:]
  proc = run_carry(whole, to.parent / "again")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert json.loads((to.parent / "again" / "carried.json").read_text())["step"] == 32


def test_carry_refuses_to_replace_a_folder_it_did_not_write(tmp_path, data_dir):
  run = tmp_path / "run"
  proc = run_train(run, EVERY, data_dir=data_dir)
  assert proc.returncode == 0, proc.stderr[-3000:]
  precious = tmp_path / "precious"
  precious.mkdir()
  (precious / "notes.txt").write_text("keep me")
  proc = run_carry(run, precious)
  assert proc.returncode == 2
  assert proc.stderr.strip() == (f"error: {precious} exists and is not a carried run "
                                 f"(no carried.json); not replacing it")
  assert (precious / "notes.txt").read_text() == "keep me"


def test_carry_of_a_folder_that_is_not_a_run_is_one_clear_line(tmp_path):
  proc = run_carry(tmp_path, tmp_path / "to")
  assert proc.returncode == 2
  assert proc.stderr.strip() == f"error: {tmp_path} is not a run: it has no config.json"
  assert not (tmp_path / "to").exists()

"""Runs that survive: SIGKILL and resume, corrupt checkpoints, divergence, determinism."""
import json
import os
import shutil
import signal
import subprocess
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import REPO
from test_train_script import SMOKE, TRAIN, run_train
from vaejax import estimators, experiment, models, objectives

# Long enough to kill mid-run: 4 epochs of 32 steps, a checkpoint every 16 steps.
LONG = ("--config.epochs=4", "--config.checkpoint_every=16", "--config.log_every=16")


def _summary(workdir):
  return json.loads((workdir / "summary.json").read_text())


def _deterministic_part(summary):
  return {k: v for k, v in summary.items() if k not in experiment.TIMING_KEYS}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data_dir):
  workdir = tmp_path_factory.mktemp("uninterrupted")
  proc = run_train(workdir, *LONG, data_dir=data_dir)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return _summary(workdir)


def test_same_config_and_seed_give_identical_summaries(uninterrupted, tmp_path, data_dir):
  proc = run_train(tmp_path, *LONG, data_dir=data_dir)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert _deterministic_part(_summary(tmp_path)) == _deterministic_part(uninterrupted)


def test_sigkill_mid_training_then_resume_matches_uninterrupted_run(uninterrupted, tmp_path, data_dir):
  args = TRAIN + ["--config", SMOKE, "--workdir", str(tmp_path), f"--config.data_dir={data_dir}",
                  *LONG]
  proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  ckpt_dir = tmp_path / "checkpoints"
  deadline = time.time() + 240
  try:  # kill as soon as the first checkpoint is complete, while training goes on
    while time.time() < deadline and proc.poll() is None:
      if ckpt_dir.is_dir() and any(p.isdigit() for p in os.listdir(ckpt_dir)):
        break
      time.sleep(0.01)
  finally:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
  assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
  assert not (tmp_path / "summary.json").exists()
  resumed = run_train(tmp_path, *LONG, data_dir=data_dir)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert "resuming from checkpoint at step" in resumed.stdout
  assert _summary(tmp_path)["params_checksum"] == uninterrupted["params_checksum"]
  steps = [json.loads(l)["step"] for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert steps == sorted(set(steps)) and steps[-1] == 128  # no duplicated log lines


def test_resume_survives_a_cut_metrics_line_a_corrupt_checkpoint_and_a_partial_save(
    uninterrupted, tmp_path, data_dir):
  """What a kill at a bad moment leaves, all at once (one scenario, to keep the suite
  fast): a metrics line cut mid-write, a newest checkpoint with broken files, and a
  temporary folder of a save that was never renamed. The resume falls back to the
  checkpoint before the broken one, ignores the partial save, rewrites the log and
  ends on the uninterrupted run's params."""
  first = run_train(tmp_path, *LONG, "--config.epochs=2", data_dir=data_dir)
  assert first.returncode == 0, first.stderr[-3000:]
  checkpoints = tmp_path / "checkpoints"
  for path in (checkpoints / "64" / "state").rglob("*"):
    if path.is_file() and path.stat().st_size > 0:
      path.write_bytes(b"\0" * 7)
  shutil.copytree(checkpoints / "32", checkpoints / "80.orbax-checkpoint-tmp")
  with open(tmp_path / "metrics.jsonl", "a") as f:
    f.write('{"step": 80, "epoch": 2.5, "train/lo')
  # Make the run longer (allowed explicitly), then resume.
  proc = run_train(tmp_path, *LONG, "--allow_config_change", data_dir=data_dir)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "resuming from checkpoint at step 48" in proc.stdout
  steps = [json.loads(l)["step"] for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert steps == [16, 32, 48, 64, 80, 96, 112, 128]
  assert _summary(tmp_path)["params_checksum"] == uninterrupted["params_checksum"]


def test_divergence_is_skipped_counted_and_stops_cleanly(tmp_path, data_dir):
  proc = run_train(tmp_path, "--config.learning_rate=1e30", "--config.max_consecutive_skips=4",
                   "--config.epochs=4", data_dir=data_dir)
  assert proc.returncode == 2
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and "consecutive updates had a non-finite" in lines[0], proc.stderr[-2000:]
  assert "stopping at step 5: 4 consecutive updates" in lines[0]  # step 1 applied, 2-5 skipped
  logged = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert logged[-1]["skipped_total"] == 4 and logged[-1]["step"] == 5
  assert np.isfinite(logged[-1]["train/loss"])  # means run over applied steps only
  # Whatever was checkpointed before the stop is finite and restorable.
  ckpt_dir = tmp_path / "checkpoints"
  if ckpt_dir.exists():
    from vaejax.checkpoint import Checkpointer
    for step in Checkpointer(str(ckpt_dir)).steps():
      assert step <= logged[-1]["step"]


def test_extreme_logits_and_log_variances_give_finite_loss_and_gradients():
  model = models.make_vae(architecture="mlp", image_shape=(4, 4, 1), latent_dim=3, hidden=(8,))
  params = model.init(jax.random.PRNGKey(0))
  xs = (jax.random.uniform(jax.random.PRNGKey(1), (6, 4, 4, 1)) < 0.5).astype(jnp.float32)
  for scale in (1e2, 1e4, 1e6):
    big = jax.tree_util.tree_map(lambda p: p * scale, params)
    for name in ("elbo", "iwae"):
      loss_fn = objectives.make_batch_loss(model, estimators.make_estimator(name, num_samples=3).per_example)
      (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
          big, xs, key=jax.random.PRNGKey(2))
      assert np.isfinite(float(loss)), (scale, name)
      assert float(metrics["kl"]) >= 0
      assert all(np.isfinite(g).all() for g in jax.tree_util.tree_leaves(grads)), (scale, name)


def test_cvae_resumes_exactly_from_its_checkpoint(tmp_path, data_dir):
  """Labelled batches, a learned prior and dynamic binarisation through checkpoint and
  resume: a copy of a finished two-epoch run, its newest checkpoint removed, resumes
  from the one before and ends where the run ended."""
  cvae = ("--config.condition=label", "--config.train_subset=512", "--config.eval_subset=200",
          "--config.eval_importance_samples=0", "--config.checkpoint_every=8",
          "--config.epochs=2")
  straight, resumed = tmp_path / "straight", tmp_path / "resumed"

  def train(workdir):
    proc = subprocess.run(
        TRAIN + ["--config", str(REPO / "experiments" / "configs" / "cvae_quadrants_smoke.py"),
                 "--workdir", str(workdir), f"--config.data_dir={data_dir}", *cvae],
        capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc

  train(straight)
  shutil.copytree(straight, resumed)
  shutil.rmtree(resumed / "checkpoints" / "16")
  (resumed / "summary.json").unlink()
  assert "resuming from checkpoint at step 8" in train(resumed).stdout
  summary = _summary(straight)
  assert summary["model"] == "cvae" and summary["steps"] == 16
  assert _summary(resumed)["params_checksum"] == summary["params_checksum"]
  assert _summary(resumed)["test"] == summary["test"]

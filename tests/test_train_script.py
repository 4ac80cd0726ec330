"""experiments/train.py end to end on real data (the smoke config), as a user runs it."""
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

TRAIN = [sys.executable, str(REPO / "experiments" / "train.py")]
SMOKE = str(REPO / "experiments" / "configs" / "vae_smoke.py")


def run_train(workdir, *overrides, data_dir=None, timeout=300):
  args = TRAIN + ["--config", SMOKE, "--workdir", str(workdir)] + list(overrides)
  if data_dir:
    args.append(f"--config.data_dir={data_dir}")
  return subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=REPO)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, data_dir):
  workdir = tmp_path_factory.mktemp("smoke")
  proc = run_train(workdir, data_dir=data_dir)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return workdir, proc


def test_smoke_run_writes_summary_metrics_checkpoint_and_pictures(smoke_run):
  workdir, proc = smoke_run
  summary = json.loads((workdir / "summary.json").read_text())
  assert summary["steps"] == 2048 // 64
  test = summary["test"]
  assert set(test) >= {"neg_elbo", "recon", "kl"}
  assert test["neg_elbo"] == pytest.approx(test["recon"] + test["kl"], rel=1e-5)
  # A VAE at init scores ~544 nats (784 * log 2); one short epoch must already do far better.
  assert 100 < test["neg_elbo"] < 450
  assert len(summary["params_checksum"]) == 64 and summary["examples_per_sec"] > 0
  lines = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [l["step"] for l in lines] == [8, 16, 24, 32]
  assert lines[-1]["train/loss"] < lines[0]["train/loss"]
  assert sorted(os.listdir(workdir / "checkpoints")) == ["16", "32"]
  for name in ("samples.png", "reconstructions.png"):
    assert (workdir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert "test neg_elbo" in proc.stdout


def test_pictures_have_the_expected_size(smoke_run):
  matplotlib = pytest.importorskip("matplotlib")
  import matplotlib.image
  workdir, _ = smoke_run
  samples = matplotlib.image.imread(str(workdir / "samples.png"))
  assert samples.shape == (4 * 29 + 1, 4 * 29 + 1)  # 16 samples: 4x4 grid of 28x28 with 1px gaps
  assert 0.0 < samples[1:-1, 1:-1].std()
  recon = matplotlib.image.imread(str(workdir / "reconstructions.png"))
  assert recon.shape == (8 * 29 + 1, 4 * 29 + 1)  # rows alternate inputs and reconstructions


def test_a_finished_run_resumes_to_the_same_summary(smoke_run, data_dir):
  workdir, _ = smoke_run
  before = json.loads((workdir / "summary.json").read_text())
  proc = run_train(workdir, data_dir=data_dir)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "resuming from checkpoint at step 32" in proc.stdout
  after = json.loads((workdir / "summary.json").read_text())
  assert after["params_checksum"] == before["params_checksum"]
  assert after["test"] == before["test"]


def test_changed_config_on_resume_is_refused_in_one_line(smoke_run, data_dir):
  workdir, _ = smoke_run
  proc = run_train(workdir, "--config.learning_rate=0.01", data_dir=data_dir)
  assert proc.returncode == 2
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and "different config (changed: learning_rate)" in lines[0]


def test_bad_config_value_is_one_clear_line(tmp_path, data_dir):
  proc = run_train(tmp_path, "--config.latent_dim=0", data_dir=data_dir)
  assert proc.returncode == 2
  assert proc.stderr.strip() == "error: config.latent_dim=0 must be >= 1"
  assert not (tmp_path / "checkpoints").exists()


def test_missing_data_is_one_clear_line(tmp_path):
  proc = run_train(tmp_path / "run", f"--config.data_dir={tmp_path}")
  assert proc.returncode == 2
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and "could not find binarized_mnist_train.amat" in lines[0]


def test_shape_changing_config_is_refused_and_loses_nothing(smoke_run, data_dir):
  workdir, _ = smoke_run
  before = sorted(os.listdir(workdir / "checkpoints"))
  metrics = (workdir / "metrics.jsonl").read_text()
  proc = run_train(workdir, "--config.hidden=(32,)", data_dir=data_dir)
  assert proc.returncode == 2
  assert "different config (changed: hidden)" in proc.stderr.strip().splitlines()[-1]
  proc = run_train(workdir, "--config.hidden=(32,)", "--allow_config_change", data_dir=data_dir)
  assert proc.returncode == 2
  assert "does not fit the new config" in proc.stderr.strip().splitlines()[-1]
  assert sorted(os.listdir(workdir / "checkpoints")) == before  # nothing set aside
  assert (workdir / "metrics.jsonl").read_text() == metrics


def test_log_every_zero_logs_only_the_last_step(tmp_path, data_dir):
  proc = run_train(tmp_path, "--config.log_every=0", "--config.checkpoint_every=0",
                   "--config.tensorboard=False", data_dir=data_dir)
  assert proc.returncode == 0, proc.stderr[-2000:]
  lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [l["step"] for l in lines] == [32]
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["32"]
  assert not list(tmp_path.glob("events.out.tfevents*"))  # tensorboard=False writes none


def test_workdir_that_is_a_file_is_one_clear_line(tmp_path, data_dir):
  target = tmp_path / "not_a_dir"
  target.write_text("x")
  proc = run_train(target, data_dir=data_dir)
  assert proc.returncode == 2
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error:") and "not_a_dir" in lines[0]

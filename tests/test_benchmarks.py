"""The throughput benchmark runs end to end at a tiny size and writes what it promises."""
import json
import subprocess
import sys

import pytest

from conftest import REPO

SCRIPT = str(REPO / "benchmarks" / "step_throughput.py")


LAYERS = [(784, 512), (512, 512), (512, 32), (512, 32), (32, 512), (512, 512), (512, 784)]
NUM_PARAMS = sum(a * b + b for a, b in LAYERS)


def reference_matmul_flops(batch: int) -> float:
  """Forward, weight-gradient and input-gradient matmuls of the reference MLP."""
  forward = sum(2 * batch * a * b for a, b in LAYERS)
  input_grads = forward - 2 * batch * 784 * 512  # no gradient for the data
  return 2 * forward + input_grads


def test_step_throughput_writes_records_with_flops_and_roofline(tmp_path):
  proc = subprocess.run(
      [sys.executable, SCRIPT, "--batch-sizes", "8", "--steps-per-dispatch", "1,4",
       "--repeats", "1", "--block-seconds", "0.05", "--roofline-gflop", "1", "--eval-k", "20",
       "--eval-examples", "4",
       "--data-dir", str(tmp_path / "no_data"), "--out", str(tmp_path)],
      capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads((tmp_path / "results.json").read_text())
  assert result["machine"]["data"] == "synthetic bits" and result["machine"]["cpu_count"] >= 1
  records = result["records"]
  assert [(r["impl"], r["steps_per_dispatch"]) for r in records] == [("vaejax", 1), ("vaejax", 4)]
  for r in records:
    for key in ("batch_size", "examples_per_sec", "compile_seconds", "gflops_per_sec",
                "roofline_fraction"):
      assert r[key] > 0, key
    # XLA's count: the matmuls, plus Adam and the guard (tens of FLOPs per
    # parameter, which dominate at batch 8) and a little per-pixel work.
    extra = r["flops_per_step"] - reference_matmul_flops(8)
    assert 0 <= extra <= 40 * NUM_PARAMS + 100 * 8 * 784
  assert result["eval"][0]["samples_per_sec"] > 0
  assert (tmp_path / "results.md").read_text().startswith("| impl |")
  if pytest.importorskip("matplotlib"):
    assert (tmp_path / "examples_per_sec.png").stat().st_size > 0


def test_pytorch_reference_trains_when_torch_is_installed():
  pytest.importorskip("torch")
  sys.path.insert(0, str(REPO / "benchmarks"))
  import numpy as np
  import pytorch_reference
  images = (np.random.default_rng(0).random((64, 784)) > 0.5).astype(np.uint8)
  run = pytorch_reference.make_runner("torch-eager", batch_size=16, images=images)
  run(3)
  with pytest.raises(ValueError, match="unknown torch impl"):
    pytorch_reference.make_runner("torch-jit", batch_size=16, images=images)


def test_guard_ablation_times_each_guard_and_restores_the_library_guard(tmp_path):
  proc = subprocess.run(
      [sys.executable, str(REPO / "benchmarks" / "guard_ablation.py"), "--models", "iwae_table1",
       "--batch-sizes", "8", "--repeats", "1", "--block-seconds", "0.05", "--out", str(tmp_path)],
      capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  records = json.loads((tmp_path / "results.json").read_text())["records"]
  assert [r["guard"] for r in records] == ["select_and_isfinite", "select_float_sum",
                                           "skippable_adam_float_sum", "skippable_adam", "none"]
  assert all(r["examples_per_sec"] > 0 and r["batch_size"] == 8 for r in records)


def test_profile_step_attributes_op_time_to_source_lines(tmp_path):
  proc = subprocess.run(
      [sys.executable, str(REPO / "benchmarks" / "profile_step.py"), "--model", "iwae_table1",
       "--batch-size", "8", "--steps", "20", "--replicas", "2", "--out", str(tmp_path)],
      capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads((tmp_path / "profile.json").read_text())
  assert result["ms_per_step_untraced"] > 0 and result["replicas"] == 2
  classes = result["class_thread_us_per_step"]
  assert classes.get("matmul", 0) > 0 and classes.get("elementwise/other", 0) > 0
  timed, sources = result["op_thread_us_per_step"], result["op_sources"]
  assert not any(name.startswith(("SlinkyThreadPool", "while")) for name in timed)
  # Timed ops are attributed to source files: the model's matmuls and the optimizer.
  timed_sources = [sources.get(name, "") for name in timed]
  assert any("nets.py" in s for s in timed_sources) and any("optim.py" in s for s in timed_sources)
  assert "| op | class |" in (tmp_path / "profile.md").read_text()


def test_step_bounds_times_the_step_and_its_gradient_alone(tmp_path):
  proc = subprocess.run(
      [sys.executable, str(REPO / "benchmarks" / "step_bounds.py"), "--batch-sizes", "8",
       "--no-torch", "--repeats", "1", "--block-seconds", "0.05", "--roofline-gflop", "1",
       "--steps-per-dispatch", "4",
       "--out", str(tmp_path)],
      capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads((tmp_path / "results.json").read_text())
  records = {r["impl"]: r for r in result["records"]}
  assert sorted(records) == ["vaejax-gradient", "vaejax-step"]
  for r in records.values():
    assert r["examples_per_sec"] > 0 and 0 < r["roofline_fraction"]
  # The gradient-only step has no Adam or guard: fewer FLOPs, at most the step's
  # matmuls plus one sum over every gradient.
  step, gradient = records["vaejax-step"]["flops_per_step"], records["vaejax-gradient"]["flops_per_step"]
  assert reference_matmul_flops(8) <= gradient < step
  assert gradient - reference_matmul_flops(8) <= 2 * NUM_PARAMS + 100 * 8 * 784
  optimizer = result["optimizer"]
  assert optimizer["num_params"] == NUM_PARAMS
  assert optimizer["guard_and_adam_ms"] > 0 and optimizer["bandwidth_gb_per_sec"] > 0


def test_gradient_ablation_times_each_revert_and_restores_the_library(tmp_path, monkeypatch):
  proc = subprocess.run(
      [sys.executable, str(REPO / "benchmarks" / "gradient_ablation.py"), "--batch-sizes", "8",
       "--repeats", "1", "--block-seconds", "0.05", "--steps-per-dispatch", "4", "--out", str(tmp_path)],
      capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  records = json.loads((tmp_path / "results.json").read_text())["records"]
  assert [r["variant"] for r in records] == ["library", "vmap_unit_sample_axis", "softplus_autodiff",
                                             "two_head_matmuls", "before"]
  assert all(r["examples_per_sec"] > 0 for r in records)
  monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
  import gradient_ablation
  import jax
  from vaejax import distributions, estimators, models, nets, objectives
  library = (objectives.over_samples, distributions.bernoulli_log_density, nets.GaussianHead)

  def loss_jaxpr():  # the traced ELBO gradient of a small reference-style model
    model = models.make_vae(architecture="mlp", image_shape=(4, 4, 1), latent_dim=2, hidden=(8,))
    loss = objectives.make_batch_loss(model, estimators.make_estimator("elbo", "pathwise").per_example)
    params = model.init(jax.random.PRNGKey(0))
    x = jax.numpy.zeros((3, 4, 4, 1))
    return str(jax.make_jaxpr(jax.grad(lambda p: loss(p, x, key=jax.random.PRNGKey(1))[0]))(params))

  reference = loss_jaxpr()
  for name in gradient_ablation.REVERTS:  # each revert changes the traced step
    with gradient_ablation.reverted((name,)):
      assert loss_jaxpr() != reference, name
  with gradient_ablation.reverted(("sample_axis", "softplus", "heads")):
    assert objectives.over_samples is gradient_ablation.vmap_over_samples
    assert distributions.bernoulli_log_density is gradient_ablation.softplus_log_density
    assert nets.GaussianHead is gradient_ablation.TwoDenseHead
  assert (objectives.over_samples, distributions.bernoulli_log_density, nets.GaussianHead) == library
  assert loss_jaxpr() == reference


def test_replicas_benchmark_times_each_replica_count_against_one_model(tmp_path):
  proc = subprocess.run(
      [sys.executable, str(REPO / "benchmarks" / "replicas.py"), "--models", "iwae_table1",
       "--batch-sizes", "8", "--replicas", "3", "--repeats", "1", "--block-seconds", "0.05",
       "--out", str(tmp_path)], capture_output=True, text=True, timeout=300, cwd=REPO)
  assert proc.returncode == 0, proc.stderr[-3000:]
  records = json.loads((tmp_path / "replicas.json").read_text())["records"]
  assert [r["replicas"] for r in records] == [1, 3]
  assert records[0]["vs_one_model"] == 1.0 and records[1]["examples_per_sec"] > 0

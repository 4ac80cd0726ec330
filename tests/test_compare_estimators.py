"""experiments/compare_estimators.py at smoke size, and estimators through train.py."""
import json
import subprocess
import sys

import pytest

from conftest import REPO
from test_train_script import run_train

SCRIPT = str(REPO / "experiments" / "compare_estimators.py")


def _run(config, workdir, data_dir, *overrides):
  return subprocess.run([sys.executable, SCRIPT, "--config", str(REPO / "experiments" / "configs" / config),
                         "--workdir", str(workdir), f"--config.data_dir={data_dir}", *overrides],
                        capture_output=True, text=True, timeout=600, cwd=REPO)


def test_snr_sweep_writes_the_documented_layout(tmp_path, data_dir):
  proc = _run("snr_vs_k_smoke.py", tmp_path, data_dir,
              "--config.estimators=('iwae/pathwise', 'iwae/dreg', 'elbo/score_function')")
  assert proc.returncode == 0, proc.stderr[-3000:]
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert set(summary) == {"init", "trained", "linear_gaussian", "meta"}
  for ckpt in ("init", "trained", "linear_gaussian"):
    for metric in ("snr", "variance"):
      block = summary[ckpt][metric]
      assert set(block) == {"iwae", "dreg", "elbo_score_function"}
      for name in block:
        assert set(block[name]) == {"encoder", "decoder"}
        assert set(block[name]["encoder"]) == {"1", "4"}
        assert all(v > 0 for v in block[name]["decoder"].values())
  # With one sample DReG's encoder gradient is STL's; with K=4 it differs from IWAE's.
  var = summary["init"]["variance"]
  assert var["dreg"]["decoder"]["4"] == pytest.approx(var["iwae"]["decoder"]["4"], rel=1e-4)
  assert var["elbo_score_function"]["encoder"]["1"] > 10 * var["iwae"]["encoder"]["1"]
  assert (tmp_path / "snr_vs_k_init.png").stat().st_size > 1000
  assert "| dreg | encoder |" in (tmp_path / "table.md").read_text()


def _compare_estimators_module():
  sys.path.insert(0, str(REPO / "experiments"))
  try:
    import compare_estimators
  finally:
    sys.path.pop(0)
  return compare_estimators


@pytest.mark.parametrize("perturbation", [0.0, 0.05])
def test_linear_gaussian_case_starts_at_the_exact_posterior(perturbation):
  import jax
  ce = _compare_estimators_module()
  model, params, batch = ce.linear_gaussian_case(5, 6, key=jax.random.PRNGKey(0),
                                                 perturbation=perturbation)
  assert batch.shape == (6, 1, 5, 1)
  # q = p(z|x) makes every importance weight p(x): all K samples count. A
  # perturbed q gives unequal weights.
  ess = ce.effective_sample_size(model, params, batch, key=jax.random.PRNGKey(1), num_samples=8)
  if perturbation == 0.0:
    assert ess == pytest.approx(8.0, rel=1e-4)
  else:
    assert 1.0 < ess < 7.9


def test_training_curves_run_end_to_end(tmp_path, data_dir):
  proc = _run("estimator_curves_smoke.py", tmp_path, data_dir)
  assert proc.returncode == 0, proc.stderr[-3000:]
  rows = json.loads((tmp_path / "summary.json").read_text())["rows"]
  names = {r["estimator"] for r in rows}
  assert names == {"elbo_pathwise", "elbo_score_function_moving_average", "dreg", "vimco"}
  for name in names:
    rs = [r for r in rows if r["estimator"] == name]
    assert [r["step"] for r in rs] == [0, 10, 20]
    assert rs[-1]["test_neg_iwae"] < rs[0]["test_neg_iwae"]  # every estimator learns
    assert rs[-1]["test_neg_iwae"] <= rs[-1]["test_neg_elbo"] + 1e-3
  assert (tmp_path / "curves.png").stat().st_size > 1000


def test_unknown_estimator_spec_is_one_line(tmp_path, data_dir):
  proc = _run("snr_vs_k_smoke.py", tmp_path, data_dir, "--config.estimators=('iwae/magic',)")
  assert proc.returncode == 2
  assert proc.stderr.strip().startswith("error: estimator 'magic' does not apply to objective 'iwae'")


@pytest.mark.parametrize("overrides", [
    ("--config.objective=iwae", "--config.estimator=dreg", "--config.num_samples=3"),
    ("--config.estimator=score_function", "--config.baseline=moving_average"),
])
def test_train_script_with_other_estimators(tmp_path, data_dir, overrides):
  proc = run_train(tmp_path, *overrides, data_dir=data_dir)
  assert proc.returncode == 0, proc.stderr[-3000:]
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert summary["test"]["neg_elbo"] < 500
  if "--config.objective=iwae" in overrides:
    assert summary["test"]["neg_iwae"] <= summary["test"]["neg_elbo"]

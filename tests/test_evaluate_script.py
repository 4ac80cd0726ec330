"""experiments/evaluate.py on a smoke checkpoint with a 2-D latent."""
import json
import subprocess
import sys

import pytest

from conftest import REPO
from test_train_script import run_train


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, data_dir):
  workdir = tmp_path_factory.mktemp("eval_run")
  proc = run_train(workdir, "--config.latent_dim=2", data_dir=data_dir)
  assert proc.returncode == 0, proc.stderr[-3000:]
  proc = subprocess.run([sys.executable, str(REPO / "experiments" / "evaluate.py"),
                         "--workdir", str(workdir), "--k", "200", "--chunk", "50",
                         "--subset", "300"], capture_output=True, text=True, timeout=600, cwd=REPO)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return workdir / "eval", proc


def test_eval_json_holds_the_bounds_in_order(evaluated):
  out, proc = evaluated
  result = json.loads((out / "eval.json").read_text())
  test = result["test"]
  assert result["examples"] == 300 and result["k"] == 200 and result["checkpoint_step"] == 32
  # log p(x) >= IWAE-50 >= ELBO on average, so in negated form:
  assert test["nll"] <= test["neg_iwae_50"] + 3 * test["nll_stderr"]
  assert test["neg_iwae_50"] <= test["neg_elbo"]
  assert test["bits_per_dim"] == pytest.approx(test["nll"] / (784 * 0.6931471805599453))
  assert 0 <= result["active_units"] <= 2 and len(result["kl_per_dim"]) == 2
  assert result["samples_per_sec"] > 0 and result["peak_host_memory_gb"] > 0
  assert "test NLL" in (out / "eval.md").read_text() and "test NLL" in proc.stdout


@pytest.mark.parametrize("name,shape", [
    ("samples.png", (8 * 29 + 1, 8 * 29 + 1)),
    ("reconstructions.png", (8 * 29 + 1, 8 * 29 + 1)),
    ("interpolations.png", (5 * 29 + 1, 10 * 29 + 1)),
    ("traversals.png", (2 * 29 + 1, 9 * 29 + 1)),
    ("manifold.png", (15 * 29 + 1, 15 * 29 + 1)),
    ("latent_scatter.png", None),
    ("training_curves.png", None),
])
def test_pictures_are_written_with_the_expected_size(evaluated, name, shape):
  matplotlib = pytest.importorskip("matplotlib")
  import matplotlib.image
  out, _ = evaluated
  image = matplotlib.image.imread(str(out / name))
  if shape is not None:
    assert image.shape[:2] == shape
  assert image.std() > 0.01  # not blank


def test_missing_workdir_is_one_clear_line(tmp_path):
  proc = subprocess.run([sys.executable, str(REPO / "experiments" / "evaluate.py"),
                         "--workdir", str(tmp_path)], capture_output=True, text=True, timeout=120, cwd=REPO)
  assert proc.returncode == 2
  assert proc.stderr.strip() == (f"error: {tmp_path} is not a run: it has no config.json (a "
                                 f"workdir of experiments/train.py has config.json and checkpoints/)")


def run_table1_report(*args):
  return subprocess.run([sys.executable, str(REPO / "experiments" / "table1_report.py"), *args],
                        capture_output=True, text=True, timeout=120, cwd=REPO)


def test_table1_report_reads_an_evaluated_run(evaluated, tmp_path):
  out, _ = evaluated
  workdir = out.parent
  proc = run_table1_report("--runs", str(workdir), "--out", str(tmp_path / "table"))
  assert proc.returncode == 0, proc.stderr[-3000:]
  (record,) = json.loads((tmp_path / "table.json").read_text())
  result = json.loads((out / "eval.json").read_text())
  last = json.loads((workdir / "metrics.jsonl").read_text().strip().splitlines()[-1])
  assert record["model"] == "VAE (k=1)" and record["k_train"] == 1
  assert record["test_nll"] == result["test"]["nll"] and record["published_nll"] == 88.71
  assert record["checkpoint_step"] == last["step"] and record["epochs_run"] == last["epoch"]
  assert "| VAE (k=1) | 1 |" in (tmp_path / "table.md").read_text()


def test_table1_report_names_the_missing_evaluation(tmp_path):
  (tmp_path / "config.json").write_text("{}")
  (tmp_path / "metrics.jsonl").write_text("")
  proc = run_table1_report("--runs", str(tmp_path), "--out", str(tmp_path / "table"))
  assert proc.returncode == 2
  assert "no eval/eval.json" in proc.stderr and "evaluate.py" in proc.stderr


def test_table1_report_update_replaces_only_the_same_model(evaluated, tmp_path):
  out, _ = evaluated
  kept = {"model": "IWAE (k=5)", "k_train": 5, "epochs_run": 330.0, "epochs_protocol": 3280,
          "test_nll": 88.53, "test_nll_stderr": 0.24, "published_nll": 87.63, "workdir": "old"}
  replaced = dict(kept, model="VAE (k=1)", k_train=1, test_nll=99.0, published_nll=88.71)
  (tmp_path / "table.json").write_text(json.dumps([kept, replaced]))
  proc = run_table1_report("--runs", str(out.parent), "--out", str(tmp_path / "table"), "--update")
  assert proc.returncode == 0, proc.stderr[-3000:]
  rows = json.loads((tmp_path / "table.json").read_text())
  result = json.loads((out / "eval.json").read_text())
  assert [r["model"] for r in rows] == ["VAE (k=1)", "IWAE (k=5)"]  # ordered by k
  assert rows[0]["test_nll"] == result["test"]["nll"] and rows[1] == kept


def _hierarchical_run(workdir, model, objective, k_train, nll):
  """A workdir as train.py and evaluate.py leave it for a two-layer run (no training)."""
  (workdir / "eval").mkdir(parents=True)
  (workdir / "config.json").write_text(json.dumps(
      {"model": model, "latent_dims": [100, 50], "objective": objective, "num_samples": k_train}))
  (workdir / "metrics.jsonl").write_text(json.dumps({"step": 600, "epoch": 200.0}) + "\n")
  (workdir / "eval" / "eval.json").write_text(json.dumps({
      "checkpoint_step": 600, "k": 5000, "examples": 2000, "active_units": 29,
      "test": {"nll": nll, "nll_stderr": 0.5, "neg_elbo": nll + 4},
      "layers": [{"units": 100, "active_units": 21, "kl": 15.0},
                 {"units": 50, "active_units": 8, "kl": 9.0}]}))
  return workdir


def test_table1_report_names_two_layer_rows_with_their_published_numbers_and_layers(
    evaluated, tmp_path):
  runs = [_hierarchical_run(tmp_path / "iwae5", "hvae", "iwae", 5, 83.5),
          _hierarchical_run(tmp_path / "ladder", "ladder", "elbo", 1, 84.0),
          _hierarchical_run(tmp_path / "vae", "hvae", "elbo", 1, 84.5)]
  out = tmp_path / "table"
  proc = run_table1_report("--runs", ",".join(map(str, runs)), "--out", str(out))
  assert proc.returncode == 0, proc.stderr[-3000:]
  rows = {r["model"]: r for r in json.loads(out.with_suffix(".json").read_text())}
  assert set(rows) == {"2-layer IWAE (k=5)", "2-layer ladder VAE (k=1)", "2-layer VAE (k=1)"}
  assert rows["2-layer IWAE (k=5)"]["published_nll"] == 83.89
  assert rows["2-layer VAE (k=1)"]["published_nll"] == 85.33
  assert rows["2-layer ladder VAE (k=1)"]["published_nll"] is None
  assert [layer["active_units"] for layer in rows["2-layer VAE (k=1)"]["layers"]] == [21, 8]
  table = out.with_suffix(".md").read_text()
  assert "| 2-layer IWAE (k=5) | 5 | 200 / 3280 | 83.50 +- 0.50 | 2000 | 21 + 8 | 83.89 | -0.39 |" in table
  # --update with a one-layer run: its row sorts before the two-layer rows.
  proc = run_table1_report("--runs", str(evaluated[0].parent), "--out", str(out), "--update")
  assert proc.returncode == 0, proc.stderr[-3000:]
  models = [r["model"] for r in json.loads(out.with_suffix(".json").read_text())]
  assert models == ["VAE (k=1)", "2-layer VAE (k=1)", "2-layer IWAE (k=5)",
                    "2-layer ladder VAE (k=1)"]  # by layers, ladder last, then k
  proc = run_table1_report("--runs", f"{runs[0]},{runs[0]}", "--out", str(out))
  assert proc.returncode == 2
  assert "two runs of the row '2-layer IWAE (k=5)'" in proc.stderr


def test_table1_report_update_needs_an_existing_table(evaluated, tmp_path):
  out, _ = evaluated
  proc = run_table1_report("--runs", str(out.parent), "--out", str(tmp_path / "table"), "--update")
  assert proc.returncode == 2
  assert "table.json does not exist" in proc.stderr
  (tmp_path / "table.json").write_text('[{"no": "model"}]')
  proc = run_table1_report("--runs", str(out.parent), "--out", str(tmp_path / "table"), "--update")
  assert proc.returncode == 2
  assert proc.stderr.strip().startswith(f"error: --update: {tmp_path / 'table'}.json is not a table")

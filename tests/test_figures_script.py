"""experiments/figures.py end to end: the smoke configs trained through the CLI, then
each figure drawn from them, as a user runs it."""
import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from conftest import REPO

TRAIN = [sys.executable, str(REPO / "experiments" / "train.py")]
FIGURES = [sys.executable, str(REPO / "experiments" / "figures.py")]
CONFIGS = REPO / "experiments" / "configs"
PYRO = ("100.4", "61.9", "25.4", "71.8", "51.0", "24.2")
# Two lanes for the two cores; a lane's later runs reuse its earlier runs' compiles.
LANES = [
    [("vae2d", "vae_latent2d_smoke"), ("ae2d", "ae_vs_vae_2d_smoke"),
     ("beta8", "beta_vae_traversal_smoke", "--config.beta=8")],
    [("cvae_q", "cvae_quadrants_smoke"), ("nn_q", "cvae_quadrants_smoke", "--config.latent_dim=0"),
     ("cvae_label", "cvae_mnist_smoke")],
]


def _in_lanes(jobs: list[list], run) -> list:
  """Runs each lane's jobs in order, the lanes side by side; the results in job order."""
  results = [[None] * len(lane) for lane in jobs]

  def lane(i):
    for j, job in enumerate(jobs[i]):
      results[i][j] = run(job)

  threads = [threading.Thread(target=lane, args=(i,)) for i in range(len(jobs))]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  return [r for lane_results in results for r in lane_results]


@pytest.fixture(scope="module")
def env() -> dict:
  """The subprocesses' environment: conftest's (fast compiles, a shared compilation cache)."""
  return dict(os.environ)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_dir, env) -> dict:
  """{name: workdir} of the six smoke runs the figures need, each trained once."""
  root = tmp_path_factory.mktemp("runs")

  def train(job):
    name, config, *overrides = job
    proc = subprocess.run(
        TRAIN + ["--config", str(CONFIGS / f"{config}.py"), "--workdir", str(root / name),
                 f"--config.data_dir={data_dir}", "--config.num_image_samples=0", *overrides],
        capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
    return name, proc

  done = _in_lanes(LANES, train)
  for name, proc in done:
    assert proc.returncode == 0, f"{name}: {proc.stderr[-3000:]}"
  return {name: root / name for name, _ in done}


FIGURE_ARGS = {  # figure: (workdir names, extra flags)
    "class_grid": (["cvae_label"], []),
    "traversal": (["vae2d", "beta8"], ["--subset=1000"]),
    "ae_vs_vae": (["ae2d", "vae2d"], ["--subset=1000"]),
    "quadrants": (["nn_q", "cvae_q"], []),
}


@pytest.fixture(scope="module")
def figures(runs, tmp_path_factory, data_dir, env) -> dict:
  """{figure: (out folder, completed process)}, each figure drawn once."""
  root = tmp_path_factory.mktemp("figures")

  def draw(figure):
    names, extra = FIGURE_ARGS[figure]
    workdirs = ",".join(str(runs[n]) for n in names)
    proc = subprocess.run(
        FIGURES + [f"--figure={figure}", f"--workdirs={workdirs}", "--out", str(root / figure),
                   f"--data_dir={data_dir}", *extra],
        capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
    return figure, proc

  done = _in_lanes([["class_grid", "quadrants"], ["traversal", "ae_vs_vae"]], draw)
  for figure, proc in done:
    assert proc.returncode == 0, f"{figure}: {proc.stderr[-3000:]}"
  return {figure: (root / figure, proc) for figure, proc in done}


def _png(path) -> np.ndarray:
  matplotlib = pytest.importorskip("matplotlib")
  import matplotlib.image
  assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  image = matplotlib.image.imread(str(path))
  assert image.std() > 0.01  # not blank
  return image


def _summary(workdir) -> dict:
  return json.loads((workdir / "summary.json").read_text())


def test_class_grid_has_one_row_per_digit_and_one_column_per_draw(figures, runs):
  out, proc = figures["class_grid"]
  result = json.loads((out / "class_grid.json").read_text())
  assert result["rows"] == list(range(10)) and result["num_draws"] == 10
  assert result["grid_shape"] == [10, 10, 28, 28, 1]
  assert result["interpolation_shape"] == [10, 10, 28, 28, 1]
  assert result["interpolation_t"][0] == 0 and result["interpolation_t"][-1] == 1
  assert result["latent_dim"] == 10 and result["checkpoint_step"] == 2048 // 64
  assert result["test"] == _summary(runs["cvae_label"])["test"]
  grid, interpolation = _png(out / "class_grid.png"), _png(out / "class_interpolation.png")
  assert grid.shape[0] > 10 * 28 and grid.shape[1] > 10 * 28  # a tile per digit and draw
  assert interpolation.shape == grid.shape  # same layout, same labels' extent
  assert "class_grid: wrote into" in proc.stdout


def test_traversal_reports_the_kl_of_every_dimension_and_sweeps_the_largest(figures):
  out, _ = figures["traversal"]
  result = json.loads((out / "traversal.json").read_text())
  runs = result["runs"]
  assert [r["title"] for r in runs] == ["beta = 1", "beta = 8"]
  assert [len(r["kl_per_dim"]) for r in runs] == [2, 10]  # the runs' latent_dim
  assert [len(r["traversed_dims"]) for r in runs] == [2, 5]
  for r in runs:
    kl = np.array(r["kl_per_dim"])
    assert np.all(kl >= 0) and r["kl_total"] == pytest.approx(kl.sum())
    traversed = kl[r["traversed_dims"]]
    assert np.all(np.diff(traversed) <= 0)  # largest first
    rest = np.delete(kl, r["traversed_dims"])
    assert rest.size == 0 or traversed.min() >= rest.max()
  assert result["values"] == pytest.approx(np.linspace(-3, 3, 9).tolist())
  assert result["examples"] == 1000
  _png(out / "traversal.png")


def test_ae_vs_vae_states_each_grid_extent_and_reconstruction(figures):
  out, _ = figures["ae_vs_vae"]
  result = json.loads((out / "ae_vs_vae.json").read_text())
  ae, vae = result["models"]["AE"], result["models"]["VAE"]
  assert ae["objective"] == "ae" and vae["objective"] == "elbo"
  assert vae["extent"] == [-3.0, 3.0, -3.0, 3.0]
  lo, hi, lo2, hi2 = ae["extent"]
  assert lo < hi and (lo, hi) == (lo2, hi2)  # a square grid over the AE's codes
  for m in (ae, vae):
    assert len(m["code_mean"]) == len(m["code_std"]) == 2
    assert 0 <= m["codes_in_prior_box"] <= 1 and 0 <= m["prior_box_coverage"] <= 1
    # Init scores ~544 nats (784 log 2); one short epoch already does better.
    assert 50 < m["test_recon_at_mean"] < 544
  assert result["examples"] == 1000 and result["grid"] == 15
  _png(out / "ae_vs_vae.png")


def test_quadrants_table_holds_the_published_numbers_and_the_runs_nll(figures, runs):
  out, proc = figures["quadrants"]
  nn, cvae = _summary(runs["nn_q"])["test"], _summary(runs["cvae_q"])["test"]
  table = (out / "quadrants.md").read_text()
  for number in PYRO:
    assert number in table
  assert f"| NN baseline | {nn['nll']:.1f} ± {nn['nll_stderr']:.1f} | 100.4 | - | 61.9 |" in table
  assert f"| CVAE | {cvae['nll']:.1f} ± {cvae['nll_stderr']:.1f} | 71.8 | - | 51.0 |" in table
  result = json.loads((out / "quadrants.json").read_text())
  assert result["table"]["NN baseline"]["1"]["nll"] == nn["nll"]
  assert result["table"]["CVAE"]["1"]["nll"] == cvae["nll"]
  assert result["table"]["CVAE"]["1"]["pyro"] == 71.8 and set(result["table"]["CVAE"]) == {"1"}
  assert result["pyro"]["NN baseline"] == {"1": 100.4, "2": 61.9, "3": 25.4}
  completions = result["completions"]
  assert completions["observed_quadrants"] == 1 and len(completions["test_indices"]) == 10
  assert completions["rows"] == ["input", "truth", "NN baseline", "CVAE sample 1",
                                 "CVAE sample 2", "CVAE sample 3"]
  image = _png(out / "quadrant_completions.png")
  assert image.shape[1] > image.shape[0]  # 10 digits wide, 6 rows tall
  assert "| CVAE |" in proc.stdout


@pytest.mark.parametrize("figure,names,message", [
    ("nope", ["vae2d"], "unknown --figure='nope'"),
    ("class_grid", ["cvae_label", "cvae_label"], "takes --workdirs=CVAE_RUN, got 2"),
    ("quadrants", ["nn_q"], "got 1 workdir"),
    ("class_grid", ["vae2d"], "needs a label-conditioned CVAE"),
    ("ae_vs_vae", ["vae2d", "ae2d"], "the AE needs objective='ae'"),
    ("quadrants", ["cvae_q", "nn_q"], "NN,CVAE pairs"),
    ("quadrants", ["nn_q", "cvae_q", "nn_q", "cvae_q"], "give each setting once"),
])
def test_bad_arguments_are_one_line_and_status_2(runs, tmp_path, env, figure, names, message):
  workdirs = ",".join(str(runs[n]) for n in names)
  proc = subprocess.run(FIGURES + [f"--figure={figure}", f"--workdirs={workdirs}",
                                   "--out", str(tmp_path / "out")],
                        capture_output=True, text=True, timeout=120, cwd=REPO, env=env)
  assert proc.returncode == 2, proc.stderr[-2000:]
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and message in lines[0], proc.stderr[-2000:]

import subprocess
import sys

import numpy as np
import pytest

from vaejax import plots

matplotlib = pytest.importorskip("matplotlib")
import matplotlib.image  # noqa: E402

RNG = np.random.default_rng(0)


def _read_png(path) -> np.ndarray:
  with open(path, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  return matplotlib.image.imread(str(path))


def _aspect(path) -> float:
  image = _read_png(path)
  return image.shape[1] / image.shape[0]


def _images(*shape) -> np.ndarray:
  return RNG.uniform(size=shape).astype(np.float32)


def _traversal_panel(title: str, d: int = 2, s: int = 5, latent: int = 6) -> dict:
  return {"title": title, "images": _images(d, s, 4, 4, 1), "values": np.linspace(-3, 3, s),
          "dims": np.arange(d), "kl_per_dim": RNG.uniform(0, 3, latent)}


def _latent_panel(title: str) -> dict:
  return {"title": title, "means": RNG.normal(size=(30, 2)), "labels": RNG.integers(0, 10, 30),
          "manifold": _images(3, 3, 4, 4, 1), "extent": (-2, 2, -2, 2),
          "samples": _images(4, 4, 4, 1)}


def test_module_imports_neither_jax_nor_matplotlib():
  code = "import sys, vaejax.plots; print(sorted({'jax', 'matplotlib'} & set(sys.modules)))"
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == "[]"


def test_labelled_grid_is_wide_for_wide_grids(tmp_path):
  path = tmp_path / "g.png"
  plots.labelled_grid(str(path), _images(2, 8, 4, 4, 1), row_labels=["digit 3", "digit 7"],
                      col_labels=[f"draw {i}" for i in range(8)], title="class-conditioned")
  assert _aspect(path) > 1.5
  plots.labelled_grid(str(path), _images(6, 2, 4, 4, 3), row_labels=list("abcdef"))
  assert _aspect(path) < 1


@pytest.mark.parametrize("kwargs, message", [
    ({"images": np.zeros((2, 3, 4, 4)), "row_labels": ["a", "b"]}, "must be 5-D"),
    ({"images": np.zeros((2, 3, 4, 4, 2)), "row_labels": ["a", "b"]}, "1 or 3 channels"),
    ({"images": np.zeros((2, 3, 4, 4, 1)), "row_labels": ["a"]}, "1 row_labels for 2 rows"),
    ({"images": np.zeros((2, 3, 4, 4, 1)), "row_labels": ["a", "b"], "col_labels": ["x"]},
     "1 col_labels for 3 columns"),
])
def test_labelled_grid_rejects_bad_shapes(tmp_path, kwargs, message):
  with pytest.raises(ValueError, match=message):
    plots.labelled_grid(str(tmp_path / "g.png"), **kwargs)


def test_traversal_comparison_widens_with_panels(tmp_path):
  one, two = tmp_path / "1.png", tmp_path / "2.png"
  plots.traversal_comparison(str(one), [_traversal_panel("beta = 1")])
  plots.traversal_comparison(str(two), [_traversal_panel("beta = 1"),
                                        _traversal_panel("beta = 8", d=3, latent=10)])
  assert _aspect(two) > 1.6 * _aspect(one)


@pytest.mark.parametrize("change, message", [
    ({"images": np.zeros((2, 5, 4, 4))}, "must be 5-D"),
    ({"values": np.zeros(4)}, "2 dims and 4 values"),
    ({"dims": np.array([0, 6])}, "outside 0..5"),
    ({"kl_per_dim": None}, "lacks kl_per_dim"),
])
def test_traversal_comparison_rejects_bad_panels(tmp_path, change, message):
  panel = {**_traversal_panel("t"), **change}
  panel = {k: v for k, v in panel.items() if v is not None}
  with pytest.raises(ValueError, match=message):
    plots.traversal_comparison(str(tmp_path / "t.png"), [panel])


def test_latent_space_comparison_widens_with_panels(tmp_path):
  one, two = tmp_path / "1.png", tmp_path / "2.png"
  plots.latent_space_comparison(str(one), [_latent_panel("VAE")])
  plots.latent_space_comparison(str(two), [_latent_panel("deterministic AE"), _latent_panel("VAE")])
  assert _aspect(one) < 1 and _aspect(two) > 1.5 * _aspect(one)


@pytest.mark.parametrize("change, message", [
    ({"means": np.zeros((30, 3))}, r"means \[N, 2\] and labels \[N\]"),
    ({"labels": np.zeros(29)}, r"means \[N, 2\] and labels \[N\]"),
    ({"manifold": np.zeros((9, 4, 4, 1))}, "manifold .* must be 5-D"),
    ({"extent": (-2, 2)}, "extent must be"),
    ({"samples": np.zeros((4, 4, 4, 2))}, "1 or 3 channels"),
])
def test_latent_space_comparison_rejects_bad_panels(tmp_path, change, message):
  with pytest.raises(ValueError, match=message):
    plots.latent_space_comparison(str(tmp_path / "l.png"), [{**_latent_panel("t"), **change}])


def test_quadrant_completions_marks_missing_pixels(tmp_path):
  truth = _images(3, 8, 8, 1)
  observed = truth.copy()
  observed[:, 4:, :] = np.nan
  observed[:, :, 4:] = np.nan  # only the top-left quadrant is shown
  path = tmp_path / "q.png"
  plots.quadrant_completions(str(path), [observed, truth, _images(3, 8, 8, 3)],
                             titles=["input (1 quadrant)", "truth", "CVAE sample 1"])
  image = _read_png(path)[..., :3]
  assert image.shape[1] > image.shape[0]
  # The missing colour appears (the other rows are grey levels or random RGB, not this exact one).
  hits = np.all(np.abs(image - plots._MISSING) < 2 / 255, axis=-1).sum()
  assert hits > 0


@pytest.mark.parametrize("rows, titles, message", [
    ([np.zeros((3, 8, 8, 1))], ["a", "b"], "2 titles for 1 rows"),
    ([np.zeros((3, 8, 8, 1)), np.zeros((2, 8, 8, 1))], ["a", "b"], "differ in"),
    ([np.zeros((3, 8, 8))], ["a"], "must be 4-D"),
])
def test_quadrant_completions_rejects_bad_rows(tmp_path, rows, titles, message):
  with pytest.raises(ValueError, match=message):
    plots.quadrant_completions(str(tmp_path / "q.png"), rows, titles=titles)

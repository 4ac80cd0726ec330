import numpy as np
import pytest

from vaejax import viz

matplotlib = pytest.importorskip("matplotlib")
import matplotlib.image  # noqa: E402


def test_grid_png_round_trips_through_a_png_reader(tmp_path):
  images = np.random.default_rng(0).uniform(size=(10, 5, 4, 1)).astype(np.float32)
  grid = viz.image_grid(images, cols=4)
  assert grid.shape == (3 * 6 + 1, 4 * 5 + 1, 1)
  path = tmp_path / "g.png"
  viz.write_png(str(path), grid)
  back = matplotlib.image.imread(str(path))
  np.testing.assert_allclose(back, grid[..., 0] / 255.0, atol=1e-6)
  np.testing.assert_allclose(back[1:6, 1:5], images[0, ..., 0], atol=0.5 / 255 + 1e-6)


def test_rgb_png(tmp_path):
  rgb = (np.arange(2 * 3 * 3).reshape(2, 3, 3) * 10).astype(np.uint8)
  viz.write_png(str(tmp_path / "c.png"), rgb)
  np.testing.assert_allclose(matplotlib.image.imread(str(tmp_path / "c.png")), rgb / 255.0, atol=1e-6)


def test_interleave_rows_alternates_inputs_and_reconstructions():
  a, b = np.zeros((6, 1, 1, 1)), np.ones((6, 1, 1, 1))
  out = viz.interleave_rows(a, b, cols=3)
  assert out[:, 0, 0, 0].tolist() == [0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 1]

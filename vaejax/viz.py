"""Pictures written to files: image grids as PNG (no display, no plotting library)."""
from __future__ import annotations

import struct
import zlib

import numpy as np


def image_grid(images: np.ndarray, *, cols: int, pad: int = 1) -> np.ndarray:
  """[N, H, W, C] floats in [0, 1] -> one uint8 image [rows*(H+pad)+pad, ..., C]."""
  images = np.clip(np.asarray(images, np.float32), 0.0, 1.0)
  n, h, w, c = images.shape
  rows = -(-n // cols)
  grid = np.ones((rows * (h + pad) + pad, cols * (w + pad) + pad, c), np.float32)
  for i in range(n):
    r, q = divmod(i, cols)
    top, left = pad + r * (h + pad), pad + q * (w + pad)
    grid[top:top + h, left:left + w] = images[i]
  return np.round(grid * 255).astype(np.uint8)


def write_png(path: str, image: np.ndarray) -> None:
  """Writes uint8 [H, W] or [H, W, 1|3] as an 8-bit grayscale or RGB PNG."""
  image = np.asarray(image, np.uint8)
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  if image.ndim == 2:
    color_type, rows = 0, image
  elif image.ndim == 3 and image.shape[-1] == 3:
    color_type, rows = 2, image.reshape(image.shape[0], -1)
  else:
    raise ValueError(f"write_png needs [H, W], [H, W, 1] or [H, W, 3], got {image.shape}")
  height, width = image.shape[:2]
  # Each scanline starts with filter type 0 (none).
  raw = np.concatenate([np.zeros((height, 1), np.uint8), rows], axis=1).tobytes()

  def chunk(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))

  header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
  with open(path, "wb") as f:
    f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def save_grid(path: str, images: np.ndarray, *, cols: int = 8) -> None:
  write_png(path, image_grid(images, cols=cols))


def interleave_rows(top: np.ndarray, bottom: np.ndarray, *, cols: int) -> np.ndarray:
  """Stacks row blocks of `cols` images: inputs row, reconstructions row, and so on."""
  n = (min(len(top), len(bottom)) // cols) * cols
  blocks = [x for r in range(0, n, cols) for x in (top[r:r + cols], bottom[r:r + cols])]
  return np.concatenate(blocks)


# Plots below need matplotlib (the "dev" extra); it is imported when first used.

def pyplot():
  """matplotlib.pyplot on the non-interactive Agg backend (files only, no display);
  imported on first use, so importing vaejax does not need matplotlib."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def latent_scatter(path: str, means: np.ndarray, labels: np.ndarray) -> None:
  """Posterior means [N, D] coloured by digit; the first two principal components if D > 2."""
  means = np.asarray(means, np.float64)
  title = "posterior means"
  if means.shape[1] > 2:
    centred = means - means.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    means, title = centred @ vt[:2].T, "posterior means, first two principal components"
  elif means.shape[1] == 1:
    means = np.concatenate([means, np.zeros_like(means)], 1)
  plt = pyplot()
  fig, ax = plt.subplots(figsize=(6, 5))
  points = ax.scatter(means[:, 0], means[:, 1], c=labels, cmap="tab10", s=3, vmin=-0.5, vmax=9.5)
  fig.colorbar(points, ax=ax, ticks=range(10), label="digit")
  ax.set(title=title, xlabel="z[0]" if title == "posterior means" else "PC 1",
         ylabel="z[1]" if title == "posterior means" else "PC 2")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def training_curves(path: str, records: list[dict]) -> None:
  """Train loss (and recon/kl when logged) against step, from metrics.jsonl records."""
  plt = pyplot()
  fig, ax = plt.subplots(figsize=(6, 4))
  steps = [r["step"] for r in records]
  for key in ("train/loss", "train/recon", "train/kl"):
    if any(r.get(key) is not None for r in records):
      ax.plot(steps, [r.get(key) for r in records], label=key.split("/")[1])
  ax.set(xlabel="step", ylabel="nats per example", yscale="log")
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)

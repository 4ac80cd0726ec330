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

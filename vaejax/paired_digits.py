"""A second image modality for MNIST that shares only the digit class, built offline.

Shi et al. (2019) pair each MNIST digit with SVHN digits of the same class, so
the two modalities share the class and nothing else. SVHN is not on these
machines; `partner_images` builds the partner in the manner of PolyMNIST
(Sutter et al. 2021): for each example a DIFFERENT random MNIST image of the
same class from the same split, drawn on a random 28 x 28 crop of one of a few
colour textures, its stroke pixels showing the texture's inverted colour.

Why a fair stand-in: as with SVHN, the partner shares only the class (another
writer's digit, another position in the texture), is in colour (3 channels, a
different likelihood and encoder input) and puts clutter around the digit that
the latent must learn to ignore. It is easier than SVHN (no neighbouring
digits, no photographic blur, the same handwriting distribution), so its
coherences are an upper reference for MNIST-SVHN's, not a reproduction.

The textures are generated here (sums of random colour gratings), so the data
set is a pure function of the MNIST split and the seed; nothing is downloaded.
Where a network exists, `svhn_partners` pairs each digit with a random SVHN
digit of its class instead (TFDS's svhn_cropped, 32 x 32 x 3, downloaded and
prepared by TFDS on first use): the published MNIST-SVHN setting.
"""
from __future__ import annotations

import numpy as np

PARTNER_SHAPE = (28, 28, 3)
# config.partner -> the shape of one partner image.
PARTNER_SHAPES = {"textures": PARTNER_SHAPE, "svhn_cropped": (32, 32, 3)}
NUM_TEXTURES = 5
TEXTURE_SIZE = 128
_CHUNK = 1024  # examples per step of partner_images' arithmetic


def textures(seed: int = 0, num: int = NUM_TEXTURES, size: int = TEXTURE_SIZE) -> np.ndarray:
  """`num` colour textures, uint8 [num, size, size, 3]: per channel a sum of six
  random gratings (1-6 cycles per texture width), rescaled into [30, 225]."""
  rng = np.random.default_rng(seed)
  y, x = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
  out = np.empty((num, size, size, 3), np.float64)
  for t in range(num):
    for c in range(3):
      field = np.zeros((size, size))
      for _ in range(6):
        freq = rng.uniform(1, 6) * 2 * np.pi / size
        angle, phase = rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
        field += np.sin(freq * (x * np.cos(angle) + y * np.sin(angle)) + phase)
      out[t, :, :, c] = (field - field.min()) / (field.max() - field.min())
  return np.round(30 + 195 * out).astype(np.uint8)


def partner_images(images: np.ndarray, labels: np.ndarray, *, seed: int,
                   texture_seed: int = 0) -> np.ndarray:
  """The partner of each example, uint8 [N, 28, 28, 3] (module docstring).

  images: uint8 [N, 28, 28, 1] grey MNIST digits (0..255); labels: int [N].
  A class with one example pairs it with itself. Deterministic in seed.
  Raises ValueError for mismatched lengths or images of another shape.
  """
  labels = np.asarray(labels)
  if images.shape[1:] != (28, 28, 1) or len(images) != len(labels):
    raise ValueError(f"expected uint8 [N, 28, 28, 1] images with N labels, got {images.shape} "
                     f"and {labels.shape}")
  rng = np.random.default_rng(seed)
  partner = np.empty(len(labels), np.int64)
  for c in np.unique(labels):
    members = np.flatnonzero(labels == c)
    # A random other member: shift a random permutation's rank by 1..n-1 (no self-pairs).
    shift = rng.integers(1, max(len(members), 2), size=len(members)) % max(len(members), 1)
    order = rng.permutation(len(members))
    rank = np.empty_like(order)
    rank[order] = np.arange(len(members))
    partner[members] = members[order[(rank + shift) % len(members)]]
  bank = textures(texture_seed)
  which = rng.integers(0, len(bank), size=len(labels))
  top, left = (rng.integers(0, TEXTURE_SIZE - 28 + 1, size=len(labels)) for _ in range(2))
  crops = np.lib.stride_tricks.sliding_window_view(bank, (28, 28), axis=(1, 2))
  background = np.moveaxis(crops[which, top, left], 1, -1)  # uint8 [N, 28, 28, 3]
  out = np.empty(background.shape, np.uint8)
  for i in range(0, len(labels), _CHUNK):  # in chunks: a whole split's int32 is gigabytes
    out[i:i + _CHUNK] = blend(background[i:i + _CHUNK], images[partner[i:i + _CHUNK]])
  return out


def blend(background: np.ndarray, stroke: np.ndarray) -> np.ndarray:
  """Each pixel round(g (1 - s) + (255 - g) s) for background g and stroke s / 255
  (uint8 arrays that broadcast): the background where there is no stroke, its
  inverted colour where the stroke is full. Integer arithmetic, rounding half up:
  equal, for all 256 x 256 pairs (tested), to the float32 formula the data sets were
  first made with, and twice as fast."""
  g, s = background.astype(np.int32), stroke.astype(np.int32)
  # round(x / 255) for x = 255 g + (255 - 2 g) s >= 0; x / 255 is never a half integer.
  return ((2 * (255 * g + (255 - 2 * g) * s) + 255) // 510).astype(np.uint8)


def load_svhn(split: str, data_dir=None) -> tuple[np.ndarray, np.ndarray]:
  """SVHN's cropped digits through TFDS (downloaded and prepared in array_record
  format on first use, which needs a network): (uint8 [N, 32, 32, 3], int [N])."""
  import tensorflow_datasets as tfds
  source = tfds.data_source("svhn_cropped", split=split, data_dir=data_dir, download=True)
  records = source.__getitems__(list(range(len(source))))
  return (np.stack([np.asarray(r["image"], np.uint8) for r in records]),
          np.asarray([r["label"] for r in records], np.int64))


def svhn_partners(labels: np.ndarray, *, split: str, seed: int, data_dir=None,
                  loader=None) -> np.ndarray:
  """For each label a random SVHN image of that class from SVHN's `split` ('train'
  or 'test'), uint8 [N, 32, 32, 3]; `loader(split, data_dir)` returns SVHN's
  (images, labels) (default `load_svhn`). Raises ValueError when a class has no
  SVHN image."""
  images, partner_labels = (loader or load_svhn)(split, data_dir)
  rng = np.random.default_rng(seed)
  index = np.empty(len(labels), np.int64)
  for c in np.unique(labels):
    members = np.flatnonzero(partner_labels == c)
    if not len(members):
      raise ValueError(f"SVHN {split} has no image of class {c}")
    mine = np.flatnonzero(labels == c)
    index[mine] = rng.choice(members, size=len(mine))
  return images[index]

"""MNIST-family data sets as compact uint8 arrays, loaded offline or from TFDS;
character corpora (vaejax.corpora) through the same `load`.

Sources, tried in order for `load(name, split, data_dir=...)`:
  1. a prepared TFDS data set under data_dir (read with `tfds.data_source`,
     array_record format, no TensorFlow needed);
  2. the canonical raw files in data_dir (or data_dir/<name>/), each either
     gzipped or not: `*.amat` for binarized_mnist, IDX `*-ubyte` for mnist;
  3. a download of those raw files through TFDS's download manager (needs a
     network), into data_dir/downloads.
Raw files are verified by the size and sha256 of their uncompressed content,
against the installed tensorflow-datasets' record for binarized_mnist and the
published digests in MNIST_CHECKSUMS for mnist (TFDS records only mnist's .gz
downloads, which a rebuilt or decompressed copy cannot match); the file handling
lives in `vaejax.data_files`.
data_dir comes from the caller or the VAEJAX_DATA_DIR environment variable,
else TFDS's default (~/tensorflow_datasets or $TFDS_DATA_DIR).

Splits: "train", "validation" (or "valid"/"val"), "test", or a TFDS-style slice of
one with integer bounds and python semantics: "train[:50000]", "test[-1000:]".
MNIST's "validation" is the last 10,000 of its 60,000 "train" images.
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Optional

import numpy as np

from vaejax import data_files
# Public here too: the data API raises and checks against these.
from vaejax.data_files import (BINARIZED_TEST_CLASS_COUNTS, IMAGE_SHAPE,  # noqa: F401
                               MNIST_CHECKSUMS, DataError, expected_checksums)

DATA_DIR_ENV = "VAEJAX_DATA_DIR"
# Character corpora (vaejax.corpora): token ids instead of images.
CORPORA = ("names",)
DATASETS = tuple(data_files.RAW_FILES) + CORPORA
# Splits cut from another split's files: name -> (that split, its rows).
_DERIVED_SPLITS = {"mnist": {"validation": ("train", slice(50_000, None))}}
_SPLIT_ALIASES = {"valid": "validation", "val": "validation"}


@dataclasses.dataclass(frozen=True)
class Dataset:
  """images: uint8 [N, 28, 28, 1] with values in [0, max_value], or for a character
  corpus the token ids uint8 [N, T] (vaejax.tokens); labels: int32 [N] or None;
  extra: further per-example arrays [N, ...] by example key (a second modality);
  vocabulary: a corpus's tokens by id, () for images."""
  images: np.ndarray
  labels: Optional[np.ndarray]
  max_value: int  # 1 for statically binarised data, 255 for grayscale
  extra: dict = dataclasses.field(default_factory=dict)
  vocabulary: tuple = ()

  @property
  def example_key(self) -> str:
    """The example key of the main array: "tokens" for a corpus, else "image"."""
    return "tokens" if self.vocabulary else "image"

  def __len__(self) -> int:
    return int(self.images.shape[0])

  def take(self, n: int) -> "Dataset":
    """The first n examples (for shuffled splits such as the training sets)."""
    return self.select(np.arange(min(n, len(self))))

  def spread(self, n: int) -> "Dataset":
    """n evenly spaced examples: a class-balanced subset of a split stored sorted
    by class (the binarized-MNIST test split)."""
    return self.select(np.linspace(0, len(self) - 1, min(n, len(self))).round().astype(int))

  def select(self, index: np.ndarray | slice) -> "Dataset":
    labels = None if self.labels is None else self.labels[index]
    return Dataset(self.images[index], labels, self.max_value,
                   {k: v[index] for k, v in self.extra.items()}, self.vocabulary)

  def with_extra(self, **arrays: np.ndarray) -> "Dataset":
    return Dataset(self.images, self.labels, self.max_value, {**self.extra, **arrays},
                   self.vocabulary)


def resolve_data_dir(data_dir: Optional[str]) -> Optional[str]:
  return data_dir or os.environ.get(DATA_DIR_ENV) or None


def splits(name: str) -> list[str]:
  """The split names of a data set (each also accepted sliced, e.g. 'train[:1000]',
  except a corpus's)."""
  if name in CORPORA:
    return ["train", "validation", "test"]
  if name not in data_files.RAW_FILES:
    raise DataError(f"unknown dataset {name!r}; valid: {list(DATASETS)}")
  names = set(data_files.RAW_FILES[name]) | set(_DERIVED_SPLITS.get(name, {}))
  return [s for s in ("train", "validation", "test") if s in names]


def _normalise_split(name: str, split: str) -> tuple[str, tuple[slice, ...]]:
  """'validation[:100]' -> ('train', (slice(50000, None), slice(None, 100))) for mnist:
  the split whose files hold it and the row slices to apply, in order."""
  valid = splits(name)
  match = re.fullmatch(r"(\w+)(?:\[(-?\d+)?:(-?\d+)?\])?", split, re.ASCII)
  base = _SPLIT_ALIASES.get(match[1], match[1]) if match else None
  if base not in valid:
    raise DataError(f"dataset {name!r} has no split {split!r}; valid: {valid} (or "
                    f"'valid'/'val'), or a slice of one with integer bounds such as 'train[:1000]'")
  source, rows = _DERIVED_SPLITS.get(name, {}).get(base, (base, slice(None)))
  return source, (rows, slice(*(None if b is None else int(b) for b in match.group(2, 3))))


def load(name: str, split: str, data_dir: Optional[str] = None, *,
         download: bool = True) -> Dataset:
  """Loads one split (see module docstring for split names and sources) as a compact
  uint8 `Dataset`: images [N, 28, 28, 1], labels int32 [N] where known; for a
  corpus (CORPORA) token ids [N, T] from its package (data_dir unused)."""
  if name in CORPORA:
    from vaejax import corpora  # it builds on this module's Dataset
    return corpora.load(name, split)
  source, rows = _normalise_split(name, split)
  dataset = _load_split(name, source, data_dir, download)
  for index in rows:
    dataset = dataset.select(index)
  return dataset


def _load_split(name: str, split: str, data_dir: Optional[str], download: bool) -> Dataset:
  data_dir = resolve_data_dir(data_dir)
  search_dir = data_dir or data_files.default_tfds_dir()  # TFDS's own default location
  if data_files.tfds_prepared(name, search_dir):
    return Dataset(*data_files.read_tfds(name, split, search_dir))
  paths = data_files.find_raw_files(name, split, search_dir)
  if paths is None and download:
    paths = data_files.download_raw_files(name, split, search_dir)
  if paths is None:
    missing = ", ".join(data_files.RAW_FILES[name][split])
    where = f"in {search_dir!r} (or {os.path.join(search_dir, name)!r})"
    if not data_dir:
      where += f"; no data directory was given (pass --config.data_dir=DIR or set ${DATA_DIR_ENV})"
    raise DataError(
        f"{name} split {split!r}: could not find {missing} {where}. Provide the canonical "
        f"files in that folder (each gzipped or not), or a TFDS data set prepared there in "
        f"array_record format, or run on a machine with network access so they can be downloaded.")
  return Dataset(*data_files.read_raw_files(name, split, paths))


def check_images(images: np.ndarray, *, what: str, binary: bool = False) -> None:
  """Raises DataError naming the problem when images are unusable for training.

  images: [N, H, W, C] (uint8, or float in [0, 1]). binary: values must be 0/1
  (a Bernoulli likelihood on statically binarised data).
  """
  if images.ndim != 4:
    raise DataError(f"{what}: expected images of shape [N, H, W, C], got shape {images.shape}")
  if images.shape[0] == 0:
    raise DataError(f"{what}: the data set is empty")
  if not (np.issubdtype(images.dtype, np.integer) or np.issubdtype(images.dtype, np.floating)):
    raise DataError(f"{what}: expected a numeric dtype, got {images.dtype}")
  if np.issubdtype(images.dtype, np.floating):
    bad = ~np.isfinite(images)
    if bad.any():
      first = int(np.argwhere(bad.reshape(len(images), -1).any(axis=1))[0, 0])
      raise DataError(f"{what}: {int(bad.sum())} NaN/Inf values (first in example {first})")
    if images.min() < 0 or images.max() > 1:
      raise DataError(f"{what}: float pixel values must lie in [0, 1], got "
                      f"[{images.min():g}, {images.max():g}]")
  if binary and not np.isin(np.unique(images), (0, 1)).all():
    raise DataError(f"{what}: a statically binarised data set must hold only 0 and 1")


def check_labels(labels: Optional[np.ndarray], *, num_classes: int, what: str) -> None:
  """Raises DataError when a model needs class labels that are missing or outside
  [0, num_classes)."""
  if labels is None:
    raise DataError(f"{what}: the model needs class labels, and this split has none")
  labels = np.asarray(labels)
  if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
    bad = int(np.argmax((labels < 0) | (labels >= num_classes)))
    raise DataError(f"{what}: label {int(labels[bad])} of example {bad} is outside "
                    f"[0, {num_classes})")

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
downloads, which a rebuilt or decompressed copy cannot match).
data_dir comes from the caller or the VAEJAX_DATA_DIR environment variable,
else TFDS's default (~/tensorflow_datasets or $TFDS_DATA_DIR).

Splits: "train", "validation" (or "valid"/"val"), "test", or a TFDS-style slice of
one with integer bounds and python semantics: "train[:50000]", "test[-1000:]".
MNIST's "validation" is the last 10,000 of its 60,000 "train" images.
"""
from __future__ import annotations

import dataclasses
import glob
import gzip
import hashlib
import os
import re
import socket
import urllib.parse
from typing import Optional

import numpy as np

DATA_DIR_ENV = "VAEJAX_DATA_DIR"
IMAGE_SHAPE = (28, 28, 1)
# TFDS split name -> raw file of each data set (as TFDS downloads it).
_RAW_FILES = {
    "binarized_mnist": {"train": ("binarized_mnist_train.amat",),
                        "validation": ("binarized_mnist_valid.amat",),
                        "test": ("binarized_mnist_test.amat",)},
    "mnist": {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
              "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")},
}
# Character corpora (vaejax.corpora): token ids instead of images.
CORPORA = ("names",)
DATASETS = tuple(_RAW_FILES) + CORPORA
# Splits cut from another split's files: name -> (that split, its rows).
_DERIVED_SPLITS = {"mnist": {"validation": ("train", slice(50_000, None))}}
_SPLIT_ALIASES = {"valid": "validation", "val": "validation"}
# The widely published size and sha256 of each canonical MNIST IDX file, uncompressed.
MNIST_CHECKSUMS = {
    "train-images-idx3-ubyte": (
        47_040_016, "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
    "train-labels-idx1-ubyte": (
        60_008, "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
    "t10k-images-idx3-ubyte": (
        7_840_016, "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
    "t10k-labels-idx1-ubyte": (
        10_008, "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
}
# The binarized-MNIST test split is the MNIST test set sorted by class, in
# contiguous blocks of these sizes (class 0 first), so its labels are known.
BINARIZED_TEST_CLASS_COUNTS = (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)


class DataError(ValueError):
  """A data set is missing, corrupt or malformed; the message says how to fix it."""


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


def _default_tfds_dir() -> str:
  return os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")


def splits(name: str) -> list[str]:
  """The split names of a data set (each also accepted sliced, e.g. 'train[:1000]',
  except a corpus's)."""
  if name in CORPORA:
    return ["train", "validation", "test"]
  if name not in _RAW_FILES:
    raise DataError(f"unknown dataset {name!r}; valid: {list(DATASETS)}")
  names = set(_RAW_FILES[name]) | set(_DERIVED_SPLITS.get(name, {}))
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


def expected_checksums(name: str) -> dict[str, tuple[int, str]]:
  """filename -> (size in bytes, sha256) of each canonical file's uncompressed content:
  MNIST_CHECKSUMS for mnist, else as recorded by tensorflow-datasets."""
  if name == "mnist":
    return dict(MNIST_CHECKSUMS)
  import tensorflow_datasets as tfds  # heavy import, only when verifying files
  infos = tfds.builder_cls(name).url_infos
  return {info.filename or url.rsplit("/", 1)[-1]: (int(info.size), info.checksum)
          for url, info in infos.items()}


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
  search_dir = data_dir or _default_tfds_dir()  # TFDS's own default location
  if _tfds_prepared(name, search_dir):
    return _load_tfds(name, split, search_dir)
  paths = _find_raw_files(name, split, search_dir)
  if paths is None and download:
    paths = _download_raw_files(name, split, search_dir)
  if paths is None:
    missing = ", ".join(_RAW_FILES[name][split])
    where = f"in {search_dir!r} (or {os.path.join(search_dir, name)!r})"
    if not data_dir:
      where += f"; no data directory was given (pass --config.data_dir=DIR or set ${DATA_DIR_ENV})"
    raise DataError(
        f"{name} split {split!r}: could not find {missing} {where}. Provide the canonical "
        f"files in that folder (each gzipped or not), or a TFDS data set prepared there in "
        f"array_record format, or run on a machine with network access so they can be downloaded.")
  checksums = expected_checksums(name)
  # Downloaded files carry TFDS's hashed names, so each is checked as the file it stands for.
  contents = [_read_verified(path, filename.removesuffix(".gz"), checksums)
              for path, filename in zip(paths, _RAW_FILES[name][split])]
  if name == "binarized_mnist":
    images = _parse_amat(contents[0], paths[0])
    labels = _binarized_test_labels() if split == "test" else None
    return Dataset(images, labels, max_value=1)
  images = _parse_idx(contents[0], paths[0], ndim=3)
  labels = _parse_idx(contents[1], paths[1], ndim=1)
  if len(labels) != len(images):
    raise DataError(f"{paths[0]} has {len(images)} images but {paths[1]} has {len(labels)} labels")
  return Dataset(images[..., None], labels.astype(np.int32), max_value=255)


def _binarized_test_labels() -> np.ndarray:
  return np.repeat(np.arange(10, dtype=np.int32), BINARIZED_TEST_CLASS_COUNTS)


def _find_raw_files(name: str, split: str, data_dir: Optional[str]) -> Optional[list[str]]:
  if not data_dir:
    return None
  folders = [data_dir, os.path.join(data_dir, name), os.path.join(data_dir, "downloads")]
  found = []
  for filename in _RAW_FILES[name][split]:
    stem = filename.removesuffix(".gz")
    candidates = [os.path.join(f, n) for f in folders for n in (stem, stem + ".gz")]
    hit = next((c for c in candidates if os.path.isfile(c)), None)
    if hit is None:
      return None
    found.append(hit)
  return found


def _read_verified(path: str, filename: str, checksums: dict) -> bytes:
  """The uncompressed content of `path` (gzipped or not), once its size and sha256
  match checksums[filename], the record of the canonical uncompressed file."""
  with open(path, "rb") as f:
    raw = f.read()
  try:
    content = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
  except (OSError, EOFError) as e:
    raise DataError(f"{path} is not a readable gzip file ({e}); replace it with the canonical file") from e
  if filename not in checksums:
    raise DataError(f"no checksum is recorded for {filename}")
  size, sha256 = checksums[filename]
  digest = hashlib.sha256(content).hexdigest()
  if len(content) != size or digest != sha256:
    raise DataError(
        f"{path} is corrupt or not the canonical {filename}: its content has {len(content)} bytes "
        f"with sha256 {digest}, expected {size} bytes with sha256 {sha256}. Replace it with a fresh copy.")
  return content


def _parse_amat(content: bytes, path: str) -> np.ndarray:
  """'0 1 0 ...' lines of 784 pixels -> uint8 [N, 28, 28, 1] of 0/1."""
  chars = np.frombuffer(content, np.uint8)
  pixels = chars[(chars == ord("0")) | (chars == ord("1"))] - ord("0")
  lines = content.count(b"\n")
  if pixels.size != lines * 784:
    raise DataError(f"{path}: expected {lines} rows of 784 binary pixels, got {pixels.size} pixels")
  return pixels.reshape((lines,) + IMAGE_SHAPE)


def _parse_idx(content: bytes, path: str, ndim: int) -> np.ndarray:
  """IDX file (big-endian header, uint8 payload) -> uint8 array."""
  magic = int.from_bytes(content[:4], "big")
  if magic != 0x0800 + ndim:
    raise DataError(f"{path}: not an IDX file of {ndim} dimensions (magic {magic:#x})")
  dims = [int.from_bytes(content[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
  data = np.frombuffer(content, np.uint8, offset=4 + 4 * ndim)
  if data.size != int(np.prod(dims)):
    raise DataError(f"{path}: header says {dims}, payload has {data.size} bytes")
  return data.reshape(dims)


def _tfds_prepared(name: str, data_dir: str) -> bool:
  return bool(glob.glob(os.path.join(data_dir, name, "*", "dataset_info.json")))


def _load_tfds(name: str, split: str, data_dir: str) -> Dataset:
  import tensorflow_datasets as tfds
  try:
    source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
  except NotImplementedError as e:  # prepared as tfrecord: needs TensorFlow to read
    raise DataError(f"the TFDS data set {name} in {data_dir} is not in array_record format; "
                    f"prepare it with file_format='array_record' or provide the raw files") from e
  records = source.__getitems__(list(range(len(source))))
  images = np.stack([np.asarray(r["image"], np.uint8) for r in records])
  labels = np.asarray([r["label"] for r in records], np.int32) if "label" in records[0] else None
  if labels is None and name == "binarized_mnist" and split == "test":
    labels = _binarized_test_labels()
  return Dataset(images.reshape((-1,) + IMAGE_SHAPE), labels, 1 if name == "binarized_mnist" else 255)


def _download_raw_files(name: str, split: str, data_dir: str) -> Optional[list[str]]:
  """Downloads the canonical files with TFDS's download manager; None when offline."""
  import tensorflow_datasets as tfds
  urls = {info.filename or url.rsplit("/", 1)[-1]: url
          for url, info in tfds.builder_cls(name).url_infos.items()}
  wanted = {f: urls[f] for f in _RAW_FILES[name][split]}
  if not all(_reachable(url) for url in wanted.values()):
    return None  # offline: fail fast instead of TFDS's minutes of retries
  target = os.path.join(data_dir, "downloads")
  try:
    manager = tfds.download.DownloadManager(download_dir=target)
    paths = manager.download(wanted)
  except Exception:  # no network, proxy refusal, ...: report as "not found" with advice
    return None
  return [os.fspath(paths[f]) for f in _RAW_FILES[name][split]]


def _reachable(url: str, timeout: float = 3.0) -> bool:
  parsed = urllib.parse.urlparse(url)
  port = parsed.port or (443 if parsed.scheme == "https" else 80)
  try:
    socket.create_connection((parsed.hostname, port), timeout=timeout).close()
    return True
  except OSError:
    return False


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

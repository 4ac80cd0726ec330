"""The canonical files behind `vaejax.data`: where they are looked for, their
checksums, amat and IDX parsing, TFDS data sets prepared on disk, and downloads.

Each reader returns (images uint8 [N, 28, 28, 1], labels int32 [N] or None,
max_value), the fields of a `vaejax.data.Dataset`; a missing, corrupt or
malformed file raises DataError naming it.
"""
from __future__ import annotations

import glob
import gzip
import hashlib
import os
import socket
import urllib.parse
from typing import Optional

import numpy as np

IMAGE_SHAPE = (28, 28, 1)
# TFDS split name -> raw file of each data set (as TFDS downloads it).
RAW_FILES = {
    "binarized_mnist": {"train": ("binarized_mnist_train.amat",),
                        "validation": ("binarized_mnist_valid.amat",),
                        "test": ("binarized_mnist_test.amat",)},
    "mnist": {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
              "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")},
}
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


def default_tfds_dir() -> str:
  """Where TFDS keeps its data sets: $TFDS_DATA_DIR, else ~/tensorflow_datasets."""
  return os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")


def expected_checksums(name: str) -> dict[str, tuple[int, str]]:
  """filename -> (size in bytes, sha256) of each canonical file's uncompressed content:
  MNIST_CHECKSUMS for mnist, else as recorded by tensorflow-datasets."""
  if name == "mnist":
    return dict(MNIST_CHECKSUMS)
  import tensorflow_datasets as tfds  # heavy import, only when verifying files
  infos = tfds.builder_cls(name).url_infos
  return {info.filename or url.rsplit("/", 1)[-1]: (int(info.size), info.checksum)
          for url, info in infos.items()}


def read_raw_files(name: str, split: str, paths: list[str]
                   ) -> tuple[np.ndarray, Optional[np.ndarray], int]:
  """(images, labels, max_value) from the split's raw files (`find_raw_files` or
  `download_raw_files`), each verified against `expected_checksums` first."""
  checksums = expected_checksums(name)
  # Downloaded files carry TFDS's hashed names, so each is checked as the file it stands for.
  contents = [_read_verified(path, filename.removesuffix(".gz"), checksums)
              for path, filename in zip(paths, RAW_FILES[name][split])]
  if name == "binarized_mnist":
    images = _parse_amat(contents[0], paths[0])
    return images, _binarized_test_labels() if split == "test" else None, 1
  images = _parse_idx(contents[0], paths[0], ndim=3)
  labels = _parse_idx(contents[1], paths[1], ndim=1)
  if len(labels) != len(images):
    raise DataError(f"{paths[0]} has {len(images)} images but {paths[1]} has {len(labels)} labels")
  return images[..., None], labels.astype(np.int32), 255


def _binarized_test_labels() -> np.ndarray:
  return np.repeat(np.arange(10, dtype=np.int32), BINARIZED_TEST_CLASS_COUNTS)


def find_raw_files(name: str, split: str, data_dir: Optional[str]) -> Optional[list[str]]:
  """Paths of the split's raw files in data_dir, data_dir/<name> or data_dir/downloads
  (each gzipped or not); None unless all are there."""
  if not data_dir:
    return None
  folders = [data_dir, os.path.join(data_dir, name), os.path.join(data_dir, "downloads")]
  found = []
  for filename in RAW_FILES[name][split]:
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
    raise DataError(f"{path} is not a readable gzip file ({e}); replace it with the "
                    f"canonical file") from e
  if filename not in checksums:
    raise DataError(f"no checksum is recorded for {filename}")
  size, sha256 = checksums[filename]
  digest = hashlib.sha256(content).hexdigest()
  if len(content) != size or digest != sha256:
    raise DataError(
        f"{path} is corrupt or not the canonical {filename}: its content has {len(content)} "
        f"bytes with sha256 {digest}, expected {size} bytes with sha256 {sha256}. Replace it "
        f"with a fresh copy.")
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


def tfds_prepared(name: str, data_dir: str) -> bool:
  """Whether data_dir holds the data set as prepared by TFDS."""
  return bool(glob.glob(os.path.join(data_dir, name, "*", "dataset_info.json")))


def read_tfds(name: str, split: str, data_dir: str
              ) -> tuple[np.ndarray, Optional[np.ndarray], int]:
  """(images, labels, max_value) of a split prepared by TFDS in array_record format."""
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
  return images.reshape((-1,) + IMAGE_SHAPE), labels, 1 if name == "binarized_mnist" else 255


def download_raw_files(name: str, split: str, data_dir: str) -> Optional[list[str]]:
  """Downloads the canonical files with TFDS's download manager; None when offline."""
  import tensorflow_datasets as tfds
  urls = {info.filename or url.rsplit("/", 1)[-1]: url
          for url, info in tfds.builder_cls(name).url_infos.items()}
  wanted = {f: urls[f] for f in RAW_FILES[name][split]}
  if not all(_reachable(url) for url in wanted.values()):
    return None  # offline: fail fast instead of TFDS's minutes of retries
  target = os.path.join(data_dir, "downloads")
  try:
    manager = tfds.download.DownloadManager(download_dir=target)
    paths = manager.download(wanted)
  except Exception:  # no network, proxy refusal, ...: report as "not found" with advice
    return None
  return [os.fspath(paths[f]) for f in RAW_FILES[name][split]]


def _reachable(url: str, timeout: float = 3.0) -> bool:
  parsed = urllib.parse.urlparse(url)
  port = parsed.port or (443 if parsed.scheme == "https" else 80)
  try:
    socket.create_connection((parsed.hostname, port), timeout=timeout).close()
    return True
  except OSError:
    return False

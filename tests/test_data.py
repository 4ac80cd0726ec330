"""Loaders on the canonical files: shapes, dtypes, checksums and clear errors."""
import gzip
import os
import shutil

import numpy as np
import pytest

from vaejax import data, data_files


@pytest.mark.parametrize("split,n", [("train", 50_000), ("valid", 10_000), ("test", 10_000)])
def test_binarized_mnist_splits(data_dir, split, n):
  ds = data.load("binarized_mnist", split, data_dir, download=False)
  assert ds.images.shape == (n, 28, 28, 1) and ds.images.dtype == np.uint8
  assert set(np.unique(ds.images)) == {0, 1} and ds.max_value == 1
  # About 13% of binarised MNIST pixels are on.
  assert 0.10 < ds.images.mean() < 0.16
  if split == "test":
    assert ds.labels.shape == (n,) and ds.labels.dtype == np.int32
  else:
    assert ds.labels is None


def test_binarized_test_labels_have_the_mnist_test_class_counts(data_dir):
  labels = data.load("binarized_mnist", "test", data_dir, download=False).labels
  mnist = data.load("mnist", "test", data_dir, download=False)
  np.testing.assert_array_equal(np.bincount(labels), np.bincount(mnist.labels))
  assert np.all(np.diff(labels) >= 0)


def test_mnist_test_split(data_dir):
  ds = data.load("mnist", "test", data_dir, download=False)
  assert ds.images.shape == (10_000, 28, 28, 1) and ds.images.dtype == np.uint8
  assert ds.max_value == 255 and ds.images.max() == 255
  assert ds.labels[:5].tolist() == [7, 2, 1, 0, 4]  # the well-known first test labels


@pytest.fixture(scope="module")
def mnist_train(data_dir):
  return data.load("mnist", "train", data_dir, download=False)


def test_mnist_train_split(mnist_train):
  ds = mnist_train
  assert ds.images.shape == (60_000, 28, 28, 1) and ds.images.dtype == np.uint8
  assert ds.labels.shape == (60_000,) and ds.labels.dtype == np.int32
  assert ds.max_value == 255 and ds.images.max() == 255
  assert ds.labels[:5].tolist() == [5, 0, 4, 1, 9]  # the well-known first train labels


def _copy_mnist_train(data_dir, tmp_path, *, gzipped: bool, flip: int | None = None):
  """Writes the train images to tmp_path (gzipped or not, one pixel byte changed when
  flip is given) beside a copy of the canonical labels file."""
  src = os.path.join(data_dir, "mnist", "train-images-idx3-ubyte")
  content = bytearray(open(src, "rb").read())
  assert content[:4] == b"\x00\x00\x08\x03"  # the data dir holds the rebuilt, uncompressed file
  if flip is not None:
    content[16 + flip] ^= 0xFF  # a pixel: the IDX header is 16 bytes
  name = "train-images-idx3-ubyte" + (".gz" if gzipped else "")
  (tmp_path / name).write_bytes(gzip.compress(bytes(content), 1) if gzipped else bytes(content))
  shutil.copy(os.path.join(data_dir, "mnist", "train-labels-idx1-ubyte.gz"), tmp_path)


def test_mnist_files_are_verified_by_their_uncompressed_content(tmp_path, data_dir, mnist_train):
  # The rebuilt training images are stored uncompressed, the labels as the original .gz.
  assert mnist_train.images.shape[0] == 60_000  # so both passed verification
  _copy_mnist_train(data_dir, tmp_path, gzipped=True)
  copy = data.load("mnist", "train", str(tmp_path), download=False)
  np.testing.assert_array_equal(copy.images, mnist_train.images)
  np.testing.assert_array_equal(copy.labels, mnist_train.labels)


@pytest.mark.parametrize("gzipped", [False, True])
def test_corrupt_mnist_file_is_refused_with_both_digests(tmp_path, data_dir, gzipped):
  _copy_mnist_train(data_dir, tmp_path, gzipped=gzipped, flip=12_345)
  with pytest.raises(data.DataError, match=r"train-images-idx3-ubyte.* is corrupt.*sha256") as e:
    data.load("mnist", "train", str(tmp_path), download=False)
  message = str(e.value)
  assert "\n" not in message and str(tmp_path) in message
  assert data.MNIST_CHECKSUMS["train-images-idx3-ubyte"][1] in message  # expected
  assert message.count("sha256 ") == 2  # actual and expected


def test_mnist_validation_and_sliced_splits(data_dir, mnist_train):
  val = data.load("mnist", "validation", data_dir, download=False)
  assert len(val) == 10_000
  np.testing.assert_array_equal(val.images, mnist_train.images[50_000:])
  np.testing.assert_array_equal(val.labels, mnist_train.labels[50_000:])
  np.testing.assert_array_equal(data.load("mnist", "val", data_dir, download=False).labels, val.labels)
  head = data.load("mnist", "train[:50000]", data_dir, download=False)
  assert len(head) == 50_000
  np.testing.assert_array_equal(head.labels, mnist_train.labels[:50_000])
  assert len(data.load("mnist", "train[50000:]", data_dir, download=False)) == 10_000
  test = data.load("mnist", "test[:100]", data_dir, download=False)
  assert len(test) == 100 and test.labels[:5].tolist() == [7, 2, 1, 0, 4]
  tail = data.load("mnist", "validation[-3:]", data_dir, download=False)  # a slice of a slice
  np.testing.assert_array_equal(tail.labels, mnist_train.labels[-3:])
  assert len(data.load("binarized_mnist", "valid[10:30]", data_dir, download=False)) == 20


@pytest.mark.parametrize("split", ["train[a:]", "train[:5", "train[1:2:3]", "train[]", "[:5]", "dev[:5]"])
def test_malformed_split_lists_the_valid_ones(split):
  with pytest.raises(data.DataError, match=r"valid: \['train', 'validation', 'test'\]"):
    data.load("mnist", split, download=False)


def test_downloaded_files_are_verified_by_content(tmp_path, data_dir, monkeypatch):
  # Offline stand-in for TFDS's download manager, which stores files under hashed names.
  import tensorflow_datasets as tfds

  class FakeManager:
    def __init__(self, download_dir):
      self.dir = download_dir

    def download(self, wanted):
      os.makedirs(self.dir, exist_ok=True)
      paths = {}
      for filename in wanted:
        paths[filename] = os.path.join(self.dir, "cvdf-datasets_mnist_" + filename.replace(".", "Xy3.", 1))
        shutil.copy(os.path.join(data_dir, "mnist", filename), paths[filename])
      return paths

  monkeypatch.setattr(data_files, "_reachable", lambda url: True)
  monkeypatch.setattr(tfds.download, "DownloadManager", FakeManager)
  assert data.load("mnist", "test", str(tmp_path)).labels[:5].tolist() == [7, 2, 1, 0, 4]


def test_data_dir_from_environment(data_dir, monkeypatch):
  monkeypatch.setenv(data.DATA_DIR_ENV, data_dir)
  assert len(data.load("binarized_mnist", "validation", download=False)) == 10_000


def test_checksums_come_from_tensorflow_datasets():
  sums = data.expected_checksums("binarized_mnist")
  assert sums["binarized_mnist_test.amat"] == (
      15_680_000, "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c")


def test_missing_file_names_the_file_and_how_to_provide_it(tmp_path, monkeypatch):
  with pytest.raises(data.DataError, match=r"could not find train-images-idx3-ubyte\.gz"):
    data.load("mnist", "train", str(tmp_path), download=False)
  with pytest.raises(data.DataError, match="binarized_mnist_valid.amat"):
    data.load("binarized_mnist", "valid", str(tmp_path), download=False)
  monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
  with pytest.raises(data.DataError, match="VAEJAX_DATA_DIR"):
    data.load("binarized_mnist", "valid", None, download=False)


def test_corrupt_file_is_refused_with_its_path(tmp_path, data_dir):
  src = os.path.join(data_dir, "binarized_mnist", "binarized_mnist_test.amat.gz")
  content = bytearray(gzip.decompress(open(src, "rb").read()))
  content[1000] = ord("1") if content[1000] == ord("0") else ord("0")  # one flipped pixel
  dst = tmp_path / "binarized_mnist_test.amat"
  dst.write_bytes(bytes(content))
  with pytest.raises(data.DataError, match=r"binarized_mnist_test\.amat is corrupt.*sha256"):
    data.load("binarized_mnist", "test", str(tmp_path), download=False)
  # An uncompressed exact copy is accepted.
  dst.write_bytes(gzip.decompress(open(src, "rb").read()))
  assert len(data.load("binarized_mnist", "test", str(tmp_path), download=False)) == 10_000


def test_truncated_gzip_is_refused(tmp_path, data_dir):
  src = os.path.join(data_dir, "mnist", "t10k-images-idx3-ubyte.gz")
  for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
    shutil.copy(os.path.join(data_dir, "mnist", name), tmp_path / name)
  (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(open(src, "rb").read()[:5000])
  with pytest.raises(data.DataError, match="t10k-images-idx3-ubyte.gz"):
    data.load("mnist", "test", str(tmp_path), download=False)


def test_unknown_dataset_and_split():
  with pytest.raises(data.DataError, match="valid: \\['binarized_mnist', 'mnist', 'names'\\]"):
    data.load("cifar", "train")
  with pytest.raises(data.DataError, match=r"no split 'dev'; valid: \['train', 'validation', 'test'\]"):
    data.load("mnist", "dev")


@pytest.mark.parametrize("images,match", [
    (np.zeros((4, 28, 28)), "shape"),
    (np.full((2, 2, 2, 1), np.nan, np.float32), "NaN"),
    (np.full((2, 2, 2, 1), 1.5, np.float32), r"\[0, 1\]"),
    (np.full((2, 2, 2, 1), 3, np.uint8), "only 0 and 1"),
    (np.zeros((0, 2, 2, 1), np.uint8), "empty"),
])
def test_check_images_names_the_problem(images, match):
  with pytest.raises(data.DataError, match=match):
    data.check_images(images, what="test data", binary=True)


def test_spread_subset_of_the_sorted_test_split_is_class_balanced(data_dir):
  test = data.load("binarized_mnist", "test", data_dir, download=False)
  counts = np.bincount(test.spread(1000).labels, minlength=10)
  assert counts.min() >= 85 and counts.max() <= 115, counts
  assert np.bincount(test.take(1000).labels).tolist() == [980, 20]  # why take() is wrong here

"""The digit classifier that judges generated images (vaejax.classifier)."""
import jax
import numpy as np
import pytest

from vaejax import classifier


def _noisy_patterns(key, patterns, n):
  """n images: pattern (label % 10) with 10% of its pixels flipped; uint8 0/255."""
  labels = np.arange(n) % 10
  flips = np.asarray(jax.random.bernoulli(key, 0.1, (n,) + patterns.shape[1:]))
  return (np.abs(patterns[labels] - flips) * 255).astype(np.uint8), labels


def test_classifier_separates_ten_noisy_patterns_and_refuses_bad_labels():
  patterns = np.asarray(jax.random.bernoulli(jax.random.PRNGKey(0), 0.5, (10, 28, 28, 1)), int)
  images, labels = _noisy_patterns(jax.random.PRNGKey(1), patterns, 640)
  params = classifier.train(images, labels, key=jax.random.PRNGKey(2), epochs=2, batch_size=64,
                            log=lambda *a: None)
  test_images, test_labels = _noisy_patterns(jax.random.PRNGKey(3), patterns, 200)
  assert classifier.accuracy(params, test_images / 255.0, test_labels) > 0.95
  probs = np.asarray(classifier.probabilities(params, test_images[:5] / 255.0))
  np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
  with pytest.raises(ValueError, match="labels must be in 0..9"):
    classifier.train(images, labels + 1, key=jax.random.PRNGKey(2), epochs=1)


def test_load_or_train_trains_once_then_reads_the_saved_classifier(tmp_path):
  patterns = np.asarray(jax.random.bernoulli(jax.random.PRNGKey(0), 0.5, (10, 12, 12, 1)), int)
  images, labels = _noisy_patterns(jax.random.PRNGKey(1), patterns, 128)
  calls = []

  def training_data():
    calls.append(1)
    return images, labels, {"test": (images[:20] / 255.0, labels[:20])}

  kwargs = dict(key=jax.random.PRNGKey(2), epochs=1, log=lambda *a: None)
  trained, info = classifier.load_or_train(str(tmp_path), (12, 12, 1), training_data, **kwargs)
  assert calls == [1] and info["epochs"] == 1 and 0 <= info["test_accuracy"] <= 1
  loaded, loaded_info = classifier.load_or_train(str(tmp_path), (12, 12, 1), training_data,
                                                 **kwargs)
  assert calls == [1] and loaded_info == info  # read, not retrained
  for a, b in zip(jax.tree_util.tree_leaves(trained), jax.tree_util.tree_leaves(loaded)):
    np.testing.assert_array_equal(a, b)
  with pytest.raises(ValueError, match="another shape"):
    classifier.load_or_train(str(tmp_path), (28, 28, 1), training_data, **kwargs)

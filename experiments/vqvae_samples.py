"""Are a learned prior's samples digits? Classify them with an MNIST classifier.

  python experiments/vqvae_samples.py --workdir runs/vqvae_prior \
      --classifier_dir runs/digit_classifier --data_dir ../shared/data

Draws --num_samples codes from the run's prior (model vqvae_prior, or any
unconditional model), decodes them to Bernoulli means, and reports the share that
a digit classifier (vaejax.classifier) puts in one class with probability above
--threshold, beside the same share for real test images (the ceiling). The
classifier is trained on MNIST's training split and saved in --classifier_dir the
first time (its test accuracy on grey and on binarised test images in
classifier.json), then reused. Writes sample_classes.json, sample_classes.md and
classified_samples.png (the first 100 samples) into --out (default
WORKDIR/sample_classes).
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

_WORKDIR = flags.DEFINE_string("workdir", None, "A trained run with an unconditional prior.")
_CLASSIFIER = flags.DEFINE_string("classifier_dir", None,
                                  "Folder of the digit classifier (trained there if absent).")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "MNIST files (default $VAEJAX_DATA_DIR).")
_NUM = flags.DEFINE_integer("num_samples", 1000, "Prior samples to classify.")
_THRESHOLD = flags.DEFINE_float("threshold", 0.9, "Confidence a sample must exceed.")
_EPOCHS = flags.DEFINE_integer("classifier_epochs", 4, "Epochs when training the classifier.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the prior samples (and of the classifier).")
_OUT = flags.DEFINE_string("out", None, "Output folder (default WORKDIR/sample_classes).")
flags.mark_flags_as_required(["workdir", "classifier_dir"])


def load_or_train_classifier(folder: str, data_dir, epochs: int, seed: int):
  """(params, info) from folder/params.msgpack, or trained on MNIST and saved there."""
  import jax
  import numpy as np
  from vaejax import classifier, data

  def training_data():
    train, test = data.load("mnist", "train", data_dir), data.load("mnist", "test", data_dir)
    grey = test.images.astype(np.float32) / 255.0
    binary = np.asarray(jax.random.bernoulli(jax.random.PRNGKey(1), grey), np.float32)
    return train.images, train.labels, {"test": (grey, test.labels),
                                        "binarized_test": (binary, test.labels)}
  return classifier.load_or_train(folder, data.IMAGE_SHAPE, training_data,
                                  key=jax.random.PRNGKey(seed), epochs=epochs)


def confident_share(probs, threshold: float) -> float:
  return float((probs.max(-1) > threshold).mean())


def main(argv):
  del argv
  import jax
  import numpy as np
  import vaejax
  from vaejax import classifier, data, viz
  try:
    run = vaejax.load_run(_WORKDIR.value)
    params, info = load_or_train_classifier(_CLASSIFIER.value, _DATA_DIR.value, _EPOCHS.value,
                                            _SEED.value)
    real = run.examples("test", data_dir=_DATA_DIR.value)
  except (ValueError, data.DataError, OSError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  samples = np.asarray(run.sample(key=jax.random.PRNGKey(_SEED.value), num_samples=_NUM.value))
  probs = np.concatenate([np.asarray(classifier.probabilities(params, samples[i:i + 500]))
                          for i in range(0, len(samples), 500)])
  real_probs = np.asarray(classifier.probabilities(params, np.asarray(real["image"][:_NUM.value])))
  out = _OUT.value or os.path.join(_WORKDIR.value, "sample_classes")
  os.makedirs(out, exist_ok=True)
  result = {
      "workdir": _WORKDIR.value, "model": run.config.model, "step": run.step,
      "num_samples": _NUM.value, "threshold": _THRESHOLD.value, "seed": _SEED.value,
      "confident_share": confident_share(probs, _THRESHOLD.value),
      "real_test_confident_share": confident_share(real_probs, _THRESHOLD.value),
      "class_counts": np.bincount(probs.argmax(-1), minlength=10).tolist(),
      "classifier": info}
  with open(os.path.join(out, "sample_classes.json"), "w") as f:
    json.dump(result, f, indent=1)
  table = ["| images | share classified with p > %.2f |" % _THRESHOLD.value, "|---|---|",
           f"| {_NUM.value} prior samples | {result['confident_share']:.3f} |",
           f"| {len(real_probs)} real test images | {result['real_test_confident_share']:.3f} |"]
  with open(os.path.join(out, "sample_classes.md"), "w") as f:
    f.write("\n".join(table) + f"\n\nclass counts of the samples: {result['class_counts']}\n"
            f"classifier: {info}\n")
  viz.write_png(os.path.join(out, "classified_samples.png"), viz.image_grid(samples[:100], cols=10))
  print("\n".join(table))
  print(f"class counts {result['class_counts']} | {out}")


if __name__ == "__main__":
  app.run(main)

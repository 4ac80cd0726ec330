"""Are a learned prior's samples digits? Classify them with an MNIST classifier.

  python experiments/vqvae_samples.py --workdir runs/vqvae_prior \
      --classifier_dir runs/digit_classifier --data_dir ../shared/data

Draws --num_samples codes from the run's prior (model vqvae_prior, or any
unconditional model), decodes them to Bernoulli means, and reports the share that
a digit classifier (vaejax.classifier) puts in one class with probability above
--threshold, beside the same share for --num_samples real test images (evenly
spaced over the split; the ceiling) and for the
model's reconstructions of them (decoded posterior means: what a prior matching
the encoder's aggregate posterior would give through this decoder, so the gap
between the two shares is the prior's, the rest the decoder's). The
classifier is trained on MNIST's training split and saved in --classifier_dir the
first time (its test accuracy on grey and on binarised test images in
classifier.json), then reused. Writes sample_classes.json, sample_classes.md and
classified_samples.png (the first 100 samples) into --out (default
WORKDIR/sample_classes).

--temperatures 1,0.8,...: also draw from the tempered prior (each code from
softmax(logits / T), `code_prior.AutoregressiveCodes.sample`; vqvae_prior runs
only), with the same keys, one row per T; classified_samples_T<T>.png for T != 1.
The JSON's top-level temperature, share and class counts are T = 1's (else the
first T's); by_temperature holds every row.
"""
import json
import math
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
_TEMPERATURES = flags.DEFINE_list("temperatures", ["1.0"],
                                  "Sampling temperatures of the prior (1: the prior itself).")
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


def parse_temperatures(values) -> list[float]:
  """--temperatures as floats; ValueError unless a non-empty list of finite T > 0."""
  try:
    temperatures = [float(t) for t in values]
  except ValueError:
    raise ValueError(f"--temperatures takes numbers, got {','.join(values)!r}") from None
  if not temperatures or not all(math.isfinite(t) and t > 0 for t in temperatures):
    raise ValueError(f"--temperatures must be one or more finite numbers > 0, got {temperatures}")
  return temperatures


def check_samplable(run, temperatures) -> None:
  """ValueError unless run's model is unconditional and, for any T != 1, its prior
  has tempered sampling (a `temperature` argument, as vqvae_prior's has)."""
  import inspect
  from vaejax.models import batched
  if batched.is_conditional(run.model):
    raise ValueError(f"{run.workdir}: the {run.config.model!r} model is conditional; prior "
                     f"samples here need an unconditional prior")
  if any(t != 1.0 for t in temperatures) and "temperature" not in inspect.signature(
      run.model.prior(run.params, None).sample).parameters:
    raise ValueError(f"the {run.config.model!r} prior has no tempered sampling (vqvae_prior "
                     f"has); use --temperatures=1")


def tempered_samples(run, *, key, num: int, temperature: float):
  """Decoded draws of run's prior at `temperature`: [num, H, W, C] in [0, 1]; the
  draws of run.sample(key=key, num_samples=num) at temperature 1."""
  import jax
  if temperature == 1.0:
    return run.sample(key=key, num_samples=num)

  @jax.jit  # params as an argument, not a closed-over constant (as vaejax.Run does)
  def draw(params, keys):
    prior = run.model.prior(params, None)
    z = jax.vmap(lambda k: prior.sample(key=k, temperature=temperature))(keys)
    return jax.vmap(lambda v: run.model.mean_image(params, None, v))(z)
  return draw(run.params, jax.random.split(key, num))


def main(argv):
  del argv
  import jax
  import numpy as np
  import vaejax
  from vaejax import classifier, data, viz
  classify = classifier.probabilities_in_batches
  try:
    if _NUM.value < 1:
      raise ValueError(f"--num_samples must be >= 1, got {_NUM.value}")
    temperatures = parse_temperatures(_TEMPERATURES.value)
    run = vaejax.load_run(_WORKDIR.value)
    check_samplable(run, temperatures)
    params, info = load_or_train_classifier(_CLASSIFIER.value, _DATA_DIR.value, _EPOCHS.value,
                                            _SEED.value)
    # Evenly spaced: binarized MNIST's test split is sorted by class.
    real = run.examples("test", num=_NUM.value, data_dir=_DATA_DIR.value)
  except (ValueError, data.DataError, OSError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  real_probs = classify(params, np.asarray(real["image"]))
  recon_probs = classify(params, np.asarray(run.reconstruct(real)))
  out = _OUT.value or os.path.join(_WORKDIR.value, "sample_classes")
  os.makedirs(out, exist_ok=True)
  rows = []
  for temperature in temperatures:
    samples = np.asarray(tempered_samples(run, key=jax.random.PRNGKey(_SEED.value),
                                          num=_NUM.value, temperature=temperature))
    probs = classify(params, samples)
    rows.append({"temperature": temperature,
                 "confident_share": confident_share(probs, _THRESHOLD.value),
                 "class_counts": np.bincount(probs.argmax(-1), minlength=10).tolist()})
    name = ("classified_samples.png" if temperature == 1.0
            else f"classified_samples_T{temperature:g}.png")
    viz.write_png(os.path.join(out, name), viz.image_grid(samples[:100], cols=10))
  main_row = next((r for r in rows if r["temperature"] == 1.0), rows[0])
  result = {
      "workdir": _WORKDIR.value, "model": run.config.model, "step": run.step,
      "num_samples": _NUM.value, "threshold": _THRESHOLD.value, "seed": _SEED.value,
      "temperature": main_row["temperature"], "confident_share": main_row["confident_share"],
      "real_test_confident_share": confident_share(real_probs, _THRESHOLD.value),
      "reconstruction_confident_share": confident_share(recon_probs, _THRESHOLD.value),
      "real_test_class_counts": (np.bincount(np.asarray(real["label"]), minlength=10).tolist()
                                 if "label" in real else None),
      "class_counts": main_row["class_counts"], "by_temperature": rows,
      "classifier": info}
  with open(os.path.join(out, "sample_classes.json"), "w") as f:
    json.dump(result, f, indent=1)
  table = ["| images | temperature | share classified with p > %.2f | class counts |"
           % _THRESHOLD.value, "|---|---|---|---|"]
  table += [f"| {_NUM.value} prior samples | {r['temperature']:g} | {r['confident_share']:.3f} "
            f"| {r['class_counts']} |" for r in rows]
  table.append(f"| {len(real_probs)} real test images | | "
               f"{result['real_test_confident_share']:.3f} | |")
  table.append(f"| their {len(recon_probs)} reconstructions | | "
               f"{result['reconstruction_confident_share']:.3f} | |")
  with open(os.path.join(out, "sample_classes.md"), "w") as f:
    f.write("\n".join(table) + f"\n\nclassifier: {info}\n")
  print("\n".join(table))
  print(out)


if __name__ == "__main__":
  app.run(main)

"""Multimodal VAEs side by side: coherences, latent classification and likelihoods.

  python3 experiments/compare_multimodal.py \\
      --workdirs runs/mvae_pairs,runs/mmvae_pairs,runs/mopoe_pairs \\
      --classifier_dir runs/classifiers --data_dir ../shared/data --out results/multimodal

For each run (model mvae, mmvae or mopoe), on the whole test split, as in Shi et
al. (2019) and Sutter et al. (2021):
  cross A->B   the share of test examples whose modality B, decoded (means) from
               ONE draw of q(z|x_A) with every other modality absent, a digit
               classifier puts in the example's class; a label modality is its
               decoder's most probable class
  joint        the share of --joint_samples prior draws whose decoded modalities
               all get the same class
  probe <m>    latent classification: a linear probe (logistic regression) fitted
               on the posterior means of the first --probe_train examples of the
               run's training split given <m> alone (or all), scored on the test
               split's
  -log p       importance-sampled -log p(X) and -log p(x_m) with --importance_samples
               draws of q(z|X) (or q(z|x_m)) over --importance_subset evenly spaced
               test examples, in nats; and the run's test neg_elbo from its summary
               (over its eval_subset, if it set one): each model's own bound, so
               MVAE's joint ELBO, MMVAE's stratified ELBO and MoPoE's subset bound
One classifier per image modality (vaejax.classifier) is trained on MNIST's
training split (with its partners) and saved under --classifier_dir/<modality>
the first time; its test accuracy (on the test inputs as the run sees them, and
for MNIST on the grey digits) goes into the results. Writes multimodal.json,
multimodal.md (the table), <run>_generation.png per run (inputs of each image
modality, their reconstructions, cross generations from each other modality
alone, and joint generations from the prior) and <run>/, the run's record.
"""
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # noqa: E402

_WORKDIRS = flags.DEFINE_list("workdirs", None, "Runs of model mvae, mmvae or mopoe.")
_CLASSIFIER = flags.DEFINE_string("classifier_dir", None, "Folder of the per-modality classifiers.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "MNIST files (default $VAEJAX_DATA_DIR).")
_OUT = flags.DEFINE_string("out", None, "Output folder.")
_JOINT = flags.DEFINE_integer("joint_samples", 10_000, "Prior draws for the joint coherence.")
_IMPORTANCE = flags.DEFINE_integer("importance_samples", 1000, "Draws per -log p (0: skip).")
_IMPORTANCE_SUBSET = flags.DEFINE_integer(
    "importance_subset", 1000, "Evenly spaced test examples for -log p (0: all of them).")
_PROBE = flags.DEFINE_integer("probe_train", 10_000, "Training examples for the linear probe.")
_TEST = flags.DEFINE_integer("test_subset", 0, "Evenly spaced test examples (0: all).")
_TRAIN = flags.DEFINE_integer("train_subset", 0,
                              "First training examples for the classifiers (0: all; smoke tests).")
_EPOCHS = flags.DEFINE_integer("classifier_epochs", 4, "Epochs of each classifier.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the draws and of the classifiers.")
flags.mark_flags_as_required(["workdirs", "classifier_dir", "out"])
BATCH = 500  # examples per jitted call


def classifiers(run, test, log):
  """({image modality: classifier params}, {modality: test accuracy}), each classifier
  read from --classifier_dir, or trained on MNIST's training split (`classifier_examples`)
  and saved there. Accuracy on the test inputs as the run sees them, and for MNIST
  also on its grey test digits."""
  import jax
  import numpy as np
  from vaejax import classifier, data
  params, accuracy, train = {}, {}, {}  # train: classifier_examples, built on first need
  for m in run.model.modalities:
    if m.is_label:
      continue

    def training_data(name=m.name):
      if not train:
        train.update(classifier_examples(run))
      return (np.asarray(train[name]), np.asarray(train["label"]),
              {"test": (np.asarray(test[name]), np.asarray(test["label"]))})
    params[m.name], info = classifier.load_or_train(
        os.path.join(_CLASSIFIER.value, m.name), m.shape, training_data,
        key=jax.random.fold_in(jax.random.PRNGKey(_SEED.value), 100), epochs=_EPOCHS.value,
        binarize=m.name == "image", log=log)
    accuracy[m.name] = classifier.accuracy(params[m.name], np.asarray(test[m.name]),
                                           np.asarray(test["label"]))
    if m.name == "image":
      grey = data.load("mnist", "test", _DATA_DIR.value or run.config.data_dir or None)
      accuracy["image_grey"] = classifier.accuracy(
          params[m.name], grey.images.astype(np.float32) / 255.0, grey.labels)
    log(f"classifier {m.name}: {info}, test accuracy {accuracy}")
  return params, accuracy


class Probe:
  """Jitted posterior draws, means and decodings of one run, batch by batch."""

  def __init__(self, run, classifier_params):
    import jax
    import numpy as np
    self.run, self.params, self.names = run, run.params, run.model.names
    self.classifier_params = classifier_params
    model = run.model

    def draw(params, batch, mask, key, start):
      keys = jax.random.split(jax.random.fold_in(key, start), len(batch["label"]))
      return jax.vmap(lambda x, k: model.posterior(params, {**x, "mask": mask}).sample(key=k))(
          batch, keys)

    def mean(params, batch, mask):
      return jax.vmap(lambda x: model.posterior(params, {**x, "mask": mask}).mean)(batch)

    def decode(params, name, z):
      return jax.vmap(lambda z_i: model.mean_of(params, name, z_i))(z)

    self._draw, self._mean = jax.jit(draw), jax.jit(mean)
    self._decode = jax.jit(decode, static_argnums=1)
    self.only = {n: np.asarray(np.asarray(self.names) == n, np.float32) for n in self.names}
    self.all = np.ones(len(self.names), np.float32)

  def _batches(self, fn, examples):
    import numpy as np
    n = len(examples["label"])
    return np.concatenate([np.asarray(fn({k: v[i:i + BATCH] for k, v in examples.items()}, i))
                           for i in range(0, n, BATCH)])

  def draws(self, examples, mask, key):
    """One draw of q(z|x_mask) per example: [N, D]."""
    return self._batches(lambda b, i: self._draw(self.params, b, mask, key, i), examples)

  def means(self, examples, mask):
    """The posterior means given x_mask: [N, D]."""
    return self._batches(lambda b, i: self._mean(self.params, b, mask), examples)

  def decode(self, name, z):
    return self._decode(self.params, name, z)

  def classes(self, name, z):
    """The class of modality `name` decoded from z [N, D]: [N] (numpy); a label is its
    decoder's most probable class, an image its classifier's."""
    import numpy as np
    from vaejax import classifier
    out = []
    for i in range(0, len(z), BATCH):
      means = self.decode(name, z[i:i + BATCH])
      if name in self.classifier_params:
        means = classifier.probabilities(self.classifier_params[name], means)
      out.append(np.asarray(means).argmax(-1))
    return np.concatenate(out)


def classifier_examples(run):
  """MNIST's whole training split (or its first --train_subset) with the partner
  modality, uint8 as stored: what the classifiers learn from."""
  from vaejax import data, run_data
  train = data.load("mnist", "train", _DATA_DIR.value or run.config.data_dir or None)
  train = run_data.with_partners(run.config, train, "train")
  if _TRAIN.value:
    train = train.take(_TRAIN.value)
  return {"image": train.images, "label": train.labels, **train.extra}


def probe_inputs(run):
  """The first --probe_train examples of the run's own training split, as its
  evaluation reads examples (floats in [0, 1]; under dynamic binarisation one
  fixed draw)."""
  from vaejax import run_data
  config = run.config.copy_and_resolve_references()
  if _DATA_DIR.value:
    config.data_dir = _DATA_DIR.value
  train, _ = run_data.load_data(config)
  examples = run_data.examples(config, train.take(_PROBE.value), as_float=True)
  return {k: v for k, v in examples.items() if k in run.model.names or k == "label"}


def evaluate_run(workdir, log):
  import jax
  import jax.numpy as jnp
  import numpy as np
  import vaejax
  from vaejax import classifier, evaluate, models
  run = vaejax.load_run(workdir)
  if run.config.model not in models.MULTIMODAL:
    raise ValueError(f"{workdir} holds a model={run.config.model!r} run, not one of "
                     f"{list(models.MULTIMODAL)}")
  names = run.model.names
  test = run.examples("test", num=_TEST.value, data_dir=_DATA_DIR.value)
  test = {k: v for k, v in test.items() if k in names or k == "label"}
  classifier_params, classifier_accuracy = classifiers(run, test, log)
  probe = Probe(run, classifier_params)
  labels, key = np.asarray(test["label"]), jax.random.PRNGKey(_SEED.value)
  result = {"workdir": workdir, "model": run.config.model, "step": run.step,
            "modalities": list(names), "test_examples": len(labels),
            "classifier_accuracy": classifier_accuracy}
  for a in names:  # cross coherence: B from one draw of q(z|x_A)
    z = probe.draws(test, probe.only[a], jax.random.fold_in(key, names.index(a)))
    for b in names:
      if b != a:
        result[f"cross_{a}_to_{b}"] = float(np.mean(probe.classes(b, z) == labels))
  z = jax.random.normal(jax.random.fold_in(key, 10), (_JOINT.value, run.model.latent_dim))
  classes = np.stack([probe.classes(n, z) for n in names])
  result["joint"] = float(np.mean(np.all(classes == classes[0], axis=0)))
  fit = probe_inputs(run)
  for which in names + ("all",):
    mask = probe.all if which == "all" else probe.only[which]
    result[f"probe_{which}"] = classifier.linear_probe_accuracy(
        probe.means(fit, mask), np.asarray(fit["label"]), probe.means(test, mask), labels)
  with open(os.path.join(workdir, "summary.json")) as f:
    result["test_neg_elbo"] = json.load(f)["test"].get("neg_elbo")
  if _IMPORTANCE.value:
    draws = _IMPORTANCE.value
    size = min(_IMPORTANCE_SUBSET.value or len(labels), len(labels))
    rows = np.linspace(0, len(labels) - 1, size).round().astype(int)
    subset = {name: np.asarray(v)[rows] for name, v in test.items()}
    result["importance_examples"] = size
    for which in ("all",) + names:
      mask = probe.all if which == "all" else probe.only[which]
      log_p = evaluate.importance_log_likelihood(
          run.model, run.params, {**subset, "mask": jnp.asarray(np.tile(mask, (size, 1)))},
          key=jax.random.fold_in(key, 12), num_samples=draws, chunk_size=math.gcd(draws, 250))
      result[f"nll_{which}"] = float(-np.mean(np.asarray(log_p)))  # host sync: report
  name = os.path.basename(os.path.normpath(workdir))
  picture(probe, test, jax.random.fold_in(key, 13),
          os.path.join(_OUT.value, f"{name}_generation.png"))
  return result


def picture(probe, test, key, path):
  """Rows of 10 test examples: for each image modality its inputs, reconstructions
  from all modalities, its generation from each other modality alone; then 10
  joint draws from the prior, one row per image modality."""
  import jax
  import numpy as np
  from vaejax import viz
  model = probe.run.model
  images = [m.name for m in model.modalities if not m.is_label]
  pick = np.linspace(0, len(test["label"]) - 1, 10).round().astype(int)
  batch = {k: np.asarray(v)[pick] for k, v in test.items()}

  def rgb(x):
    x = np.asarray(x)
    return np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x

  rows, z_all = [], probe.draws(batch, probe.all, key)
  for n in images:
    rows += [rgb(batch[n]), rgb(probe.decode(n, z_all))]
    rows += [rgb(probe.decode(n, probe.draws(batch, probe.only[other], key)))
             for other in probe.names if other != n]
  z = jax.random.normal(jax.random.fold_in(key, 1), (10, model.latent_dim))
  rows += [rgb(probe.decode(n, z)) for n in images]
  viz.write_png(path, viz.image_grid(np.concatenate(rows), cols=10))


def table(results):
  names = results[0]["modalities"]
  pairs = [(a, b) for a in names for b in names if a != b]
  cols = ([f"{a}->{b}" for a, b in pairs] + ["joint"] + [f"probe {n}" for n in names + ["all"]]
          + ["test -ELBO"] + [f"-log p({n})" for n in ["X"] + names])
  keys = ([f"cross_{a}_to_{b}" for a, b in pairs] + ["joint"]
          + [f"probe_{n}" for n in names + ["all"]] + ["test_neg_elbo"]
          + [f"nll_{n}" for n in ["all"] + names])
  lines = ["| run | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
  for r in results:
    cells = ["-" if r.get(k) is None else
             ("%.3f" if k.startswith(("cross", "joint", "probe")) else "%.2f") % r[k]
             for k in keys]
    run = os.path.basename(os.path.normpath(r["workdir"]))
    lines.append(f"| {run} ({r['model']}, step {r['step']}) | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # orbax's restore chatter
  from vaejax import data
  os.makedirs(_OUT.value, exist_ok=True)
  log = lambda *a: print(*a, flush=True)  # noqa: E731
  try:
    results = [evaluate_run(w, log) for w in _WORKDIRS.value]
  except (ValueError, data.DataError, OSError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  if len({tuple(r["modalities"]) for r in results}) != 1:
    print("error: the runs have different modalities; compare runs of one data set",
          file=sys.stderr)
    sys.exit(2)
  from vaejax import runs
  for w in _WORKDIRS.value:  # each run's record (summary, config, curves, pictures) beside
    runs.copy_run_record(w, os.path.join(_OUT.value, os.path.basename(os.path.normpath(w))))
  with open(os.path.join(_OUT.value, "multimodal.json"), "w") as f:
    json.dump(results, f, indent=1)
  text = table(results)
  with open(os.path.join(_OUT.value, "multimodal.md"), "w") as f:
    f.write(text + "\n")
  print(text)


if __name__ == "__main__":
  app.run(main)

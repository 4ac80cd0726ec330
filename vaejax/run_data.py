"""From a config to its data: the checked train and evaluation sets, the digit
partners of two-modality models, and the example pytrees a run trains and
evaluates on (fixed binarised test pixels under dynamic binarisation).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from vaejax import config as config_lib, data, models, paired_digits


def example_shape(config) -> tuple[int, ...]:
  """The shape of one example's main array: (28, 28, 1) images, or (T,) tokens."""
  if config.dataset in data.CORPORA:
    from vaejax import corpora
    return corpora.example_shape(config.dataset)
  return data.IMAGE_SHAPE


def load_data(config) -> tuple[data.Dataset, dict[str, data.Dataset]]:
  """(train set, {"test": ..., ["validation": ...]}), checked for the model's needs.
  Raises data.DataError for missing or unusable data (images, labels) and
  ConfigError when config.batch_size exceeds the training examples."""
  data_dir = config.data_dir or None
  train = data.load(config.dataset, "train", data_dir)
  evals = {"test": data.load(config.dataset, "test", data_dir)}
  if config.validation_split:  # mnist's validation split is train[50000:]: read the file once
    train, evals["validation"] = train.select(slice(None, 50000)), train.select(slice(50000, None))
  if "image2" in models.required_keys(config):  # partners from the whole split, then subsets
    train = with_partners(config, train, "train")
    evals = {k: with_partners(config, v, k) for k, v in evals.items()}
  if config.train_subset:
    train = train.take(config.train_subset)
  if config.eval_subset:
    evals = {k: v.spread(config.eval_subset) for k, v in evals.items()}
  binary = config.dataset == "binarized_mnist"
  for split, ds in [("train", train), *evals.items()]:
    if ds.vocabulary:  # a corpus: token ids, checked when it was read
      continue
    data.check_images(ds.images, what=f"{config.dataset} {split}", binary=binary)
    if "label" in models.required_keys(config):
      data.check_labels(ds.labels, num_classes=models.cvae.NUM_CLASSES,
                        what=f"{config.dataset} {split}")
  if len(train) < config.batch_size:
    raise config_lib.ConfigError(f"config.batch_size={config.batch_size} exceeds the "
                                 f"{len(train)} training examples")
  return train, evals


PARTNER_SEEDS = {"train": 0, "test": 1, "validation": 2}


def with_partners(config, dataset: data.Dataset, split: str) -> data.Dataset:
  """dataset with extra["image2"]: each digit's partner of the same class
  (vaejax.paired_digits; config.partner: textures, or SVHN through TFDS), drawn
  with the split's seed in PARTNER_SEEDS."""
  base = split.split("[")[0]  # a sliced split draws with its split's seed
  base = {"valid": "validation", "val": "validation"}.get(base, base)
  if config.partner == "svhn_cropped":  # MNIST's validation rows pair with SVHN train
    partners = paired_digits.svhn_partners(
        dataset.labels, split="test" if base == "test" else "train", seed=PARTNER_SEEDS[base],
        data_dir=data.resolve_data_dir(config.data_dir or None))
  else:
    partners = paired_digits.partner_images(dataset.images, dataset.labels,
                                            seed=PARTNER_SEEDS[base])
  return dataset.with_extra(image2=partners)


# Evaluation data under dynamic binarisation: ONE fixed Bernoulli draw of the grey test
# set, the same for every run and seed, so that runs are compared on the same pixels.
EVAL_BINARIZATION_KEY = 20151001


def examples(config, dataset: data.Dataset, *, as_float: bool = False) -> dict:
  """The example pytree of a whole data set: {"image": [N, H, W, C]} plus the keys
  the model needs ("label": int32 [N]); for a corpus {"tokens": int32 [N, T]}. Images
  stay uint8 unless as_float (then float32 in [0, 1], for evaluation; with dynamic
  binarisation the fixed binarised draw keyed by EVAL_BINARIZATION_KEY). A second
  image modality ("image2", uint8 [N, H', W', 3]) likewise, never binarised."""
  if dataset.vocabulary:
    return {"tokens": jnp.asarray(dataset.images, jnp.int32)}
  images = dataset.images
  if as_float:
    images = jnp.asarray(images, jnp.float32) / dataset.max_value
    if config.dynamic_binarization:
      key = jax.random.PRNGKey(EVAL_BINARIZATION_KEY)
      images = jax.random.bernoulli(key, images).astype(jnp.float32)
  out = {"image": images}
  for key in models.required_keys(config):
    if key == "label":
      out["label"] = dataset.labels
    else:  # a grey-level image modality (uint8 0..255), never binarised
      out[key] = (jnp.asarray(dataset.extra[key], jnp.float32) / 255.0 if as_float
                  else dataset.extra[key])
  return out

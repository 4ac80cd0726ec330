"""Pictures of a trained model written into its workdir: prior samples,
reconstructions and, for a class-conditioned CVAE, one row of samples per class;
for a model of a character corpus, text instead (vaejax.texts).
Models are any `vaejax.models.base.LatentVariableModel`; images are PNG grids."""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from vaejax import viz


def write_run_pictures(config, model, params, test_examples, workdir, *, key) -> dict:
  """samples.png (prior draws; for a conditional model under test examples'
  conditions), reconstructions.png, and for a class-conditioned CVAE
  class_samples.png (one row per digit, one column per prior draw).

  Returns the grids written, {name: uint8 [H, W, C]} ({} when
  config.num_image_samples is 0), for other writers (TensorBoard).
  """
  n = config.num_image_samples
  if not n:
    return {}
  if "tokens" in test_examples:  # a corpus: text, not pictures
    from vaejax import texts
    return texts.write_run_texts(config, model, params, test_examples, workdir, key=key)
  cols = int(np.ceil(np.sqrt(n)))
  num_test = len(test_examples["image"])
  inputs = jax.tree_util.tree_map(lambda a: a[:: max(1, num_test // n)][:n], test_examples)
  image = _image_fn(model, params)
  samples = jax.vmap(lambda x, k: image(x, model.prior(params, x).sample(key=k), k))(
      inputs, jax.random.split(key, len(inputs["image"])))
  grids = {"samples": viz.image_grid(np.asarray(samples), cols=cols)}
  recons = jax.vmap(lambda x, k: image(x, model.posterior(params, x).mean, k))(
      inputs, jax.random.split(jax.random.fold_in(key, 1), len(inputs["image"])))
  grids["reconstructions"] = viz.image_grid(
      viz.interleave_rows(np.asarray(inputs["image"]), np.asarray(recons), cols=cols), cols=cols)
  if config.model == "cvae" and config.condition == "label":
    grid = class_conditioned_samples(model, params, key=key, num_draws=cols)
    grids["class_samples"] = viz.image_grid(np.asarray(grid).reshape((-1,) + grid.shape[2:]),
                                            cols=cols)
  for name, grid in grids.items():
    viz.write_png(os.path.join(workdir, f"{name}.png"), grid)
  return grids


def _image_fn(model, params):
  """image(x, z, key) -> [H, W, C] in [0, 1]: E[x|z], or for an autoregressive
  decoder (`autoregressive`, models.base) each row's probabilities given the rows sampled
  above it from z alone, so the picture shows what z carries (teacher forcing on
  x would draw x whatever z holds)."""
  if getattr(model, "autoregressive", False):
    return lambda x, z, k: model.ancestral_sample(params, z, key=k)["mean"].reshape(
        model.image_shape)
  return lambda x, z, k: model.mean_image(params, x, z)


def class_conditioned_samples(model, params, *, key: jax.Array, num_draws: int,
                              num_classes: int = 10) -> jax.Array:
  """E[x|z, c] for z ~ p(z|c): [num_classes, num_draws, H, W, C]; draw j uses the
  same key for every class (the columns share a style under a standard prior)."""
  def one(label, k):
    x = {"image": jnp.zeros(model.image_shape), "label": label}
    return model.mean_image(params, x, model.prior(params, x).sample(key=k))
  keys = jax.random.split(key, num_draws)
  return jax.vmap(lambda c: jax.vmap(lambda k: one(c, k))(keys))(jnp.arange(num_classes))

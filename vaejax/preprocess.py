"""On-device preprocessing of a train batch: uint8 images to floats in [0, 1],
dynamic binarisation (one key per global example index), token casts and word
dropout's keep masks. The train step calls it with a key folded from its step.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from vaejax.objectives import example_keys

# Further image modalities of a batch dict: uint8 0..255 grey levels, scaled, never binarised.
GREY_MODALITIES = ("image2",)


def make_preprocess(max_value: int, dynamic_binarization: bool, word_dropout: float = 0.0):
  """A batch of uint8 images [B, H, W, C] (a bare array, or the "image" leaf of
  a batch dict; labels pass through, GREY_MODALITIES are scaled) -> float32 in [0, 1];
  Bernoulli-resampled per example (dynamic binarisation) when asked, one key
  per global example index. A corpus batch {"tokens": [B, T]} becomes int32.

  word_dropout > 0 adds "keep" [B, T] (T the tokens, or the image rows): 0 with
  probability word_dropout, a decoder input the sequence model replaces by UNK
  (Bowman et al. 2016); a bare image batch then becomes {"image", "keep"}.
  """
  def images(batch: jax.Array, key: jax.Array, example_offset) -> jax.Array:
    x = batch.astype(jnp.float32) / max_value
    if dynamic_binarization:
      keys = example_keys(key, x.shape[0], example_offset)
      x = jax.vmap(lambda k, p: jax.random.bernoulli(k, p).astype(jnp.float32))(keys, x)
    return x

  def keep(batch, key, example_offset):
    steps = batch["tokens"] if "tokens" in batch else batch["image"]
    keys = example_keys(key, steps.shape[0], example_offset)
    return jax.vmap(lambda k: jax.random.bernoulli(k, 1.0 - word_dropout, steps.shape[1:2])
                    .astype(jnp.float32))(keys)

  def preprocess(batch, *, key: jax.Array, example_offset=0):
    if not isinstance(batch, dict):
      if not word_dropout:
        return images(batch, key, example_offset)
      batch = {"image": batch}
    out = dict(batch)
    if word_dropout:  # two purposes, two keys (without dropout, key binarises as before)
      key, dropout_key = jax.random.split(key)
      out["keep"] = keep(batch, dropout_key, example_offset)
    if "tokens" in batch:
      out["tokens"] = batch["tokens"].astype(jnp.int32)
    else:
      grey = {k: batch[k].astype(jnp.float32) / 255.0 for k in GREY_MODALITIES if k in batch}
      out.update(grey, image=images(batch["image"], key, example_offset))
    return out
  return preprocess

"""A small convolutional digit classifier, the yardstick for generated images.

Sample quality is measured the way the VQ-VAE and multimodal literature does:
a classifier trained on real MNIST says which digit a generated image shows and
how sure it is (e.g. the share of samples classified with probability > 0.9, or
cross-modal coherence). Images are [H, W, 1] in [0, 1]: grey levels, binarised
pixels or a decoder's Bernoulli means alike; training sees each batch as grey
levels or as one Bernoulli draw of them (half the steps each), so that binary
and grey inputs are both in its training distribution.
"""
from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from vaejax import nets

NUM_CLASSES = 10


class DigitClassifier(nn.Module):
  """[B, 28, 28, 1] in [0, 1] -> logits [B, 10]: two 3x3 conv layers of stride 2
  (32, 64 channels), a 3x3 conv, a 128-unit hidden layer, dropout-free."""

  @nn.compact
  def __call__(self, x):
    h = nn.relu(nets.PatchConv(32, 3, 2, name="conv_0")(x))
    h = nn.relu(nets.PatchConv(64, 3, 2, name="conv_1")(h))
    h = nn.relu(nets.PatchConv(64, 3, name="conv_2")(h))
    h = nn.relu(nn.Dense(128, name="hidden")(h.reshape(h.shape[:-3] + (-1,))))
    return nn.Dense(NUM_CLASSES, name="logits")(h)


def init(key: jax.Array, image_shape=(28, 28, 1)):
  """The classifier's initial params for images [H, W, C] = image_shape."""
  return _init(key, tuple(image_shape))


# One compiled program rather than one small compile per initialiser call.
@functools.partial(jax.jit, static_argnums=1)
def _init(key, image_shape):
  return DigitClassifier().init(key, jnp.zeros((1,) + image_shape))["params"]


@jax.jit
def probabilities(params, images: jax.Array) -> jax.Array:
  """Class probabilities [B, 10] for images [B, H, W, 1] in [0, 1]."""
  return jax.nn.softmax(DigitClassifier().apply({"params": params}, images), axis=-1)


def probabilities_in_batches(params, images: np.ndarray, *, batch_size: int = 1000) -> np.ndarray:
  """`probabilities` of many images [N, H, W, 1] in [0, 1], batch_size at a time, on
  the host: [N, 10]."""
  return np.concatenate([np.asarray(probabilities(params, jnp.asarray(images[i:i + batch_size])))
                         for i in range(0, len(images), batch_size)])  # host syncs: evaluation


def accuracy(params, images: np.ndarray, labels: np.ndarray, *, batch_size: int = 1000) -> float:
  """Share of images [N, H, W, 1] in [0, 1] whose most probable class is the label."""
  probs = probabilities_in_batches(params, images, batch_size=batch_size)
  return float(np.mean(probs.argmax(-1) == np.asarray(labels)))


def train(images: np.ndarray, labels: np.ndarray, *, key: jax.Array, epochs: int = 4,
          batch_size: int = 128, learning_rate: float = 1e-3, binarize: bool = True, log=print):
  """Params fitted by Adam on softmax cross-entropy, each epoch in one jitted scan.

  images: uint8 [N, H, W, C] grey levels (0..255); labels: int [N] in 0..9.
  binarize: every other batch is a Bernoulli draw of its grey levels (for
  classifying binary images and Bernoulli means alike); False for colour images.
  Raises ValueError for labels outside 0..9 or mismatched lengths.
  """
  labels = np.asarray(labels)
  if len(images) != len(labels):
    raise ValueError(f"{len(images)} images but {len(labels)} labels")
  if labels.min() < 0 or labels.max() >= NUM_CLASSES:
    raise ValueError(f"labels must be in 0..{NUM_CLASSES - 1}")
  init_key, key = jax.random.split(key)
  params = init(init_key, images.shape[1:])
  optimizer = optax.adam(learning_rate)
  steps = len(images) // batch_size
  data, targets = jnp.asarray(images), jnp.asarray(labels, jnp.int32)

  def loss_fn(p, x, y):
    logits = DigitClassifier().apply({"params": p}, x)
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))

  @jax.jit
  def epoch(params, opt_state, epoch_key):
    perm = jax.random.permutation(jax.random.fold_in(epoch_key, 0), len(images))

    def step(carry, i):
      params, opt_state = carry
      idx = jax.lax.dynamic_slice_in_dim(perm, i * batch_size, batch_size)
      x = data[idx].astype(jnp.float32) / 255.0
      step_key = jax.random.fold_in(epoch_key, i + 1)
      binary = jax.random.bernoulli(step_key, x).astype(jnp.float32)
      if binarize:
        x = jnp.where(i % 2 == 0, x, binary)  # grey and binarised batches in turn
      loss, grads = jax.value_and_grad(loss_fn)(params, x, targets[idx])
      updates, opt_state = optimizer.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), loss

    (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), jnp.arange(steps))
    return params, opt_state, jnp.mean(losses)

  opt_state = optimizer.init(params)
  for e in range(epochs):
    params, opt_state, loss = epoch(params, opt_state, jax.random.fold_in(key, e))
    log(f"classifier epoch {e + 1}/{epochs}: train cross-entropy {float(loss):.4f}")  # host sync
  return params


def load_or_train(folder: str, image_shape, training_data, *, key: jax.Array, epochs: int = 4,
                  binarize: bool = True, log=print):
  """(params, info) read from folder/params.msgpack, or trained (`train`) and saved
  there with folder/classifier.json. training_data() -> (train_images uint8 [N, H, W, C],
  train_labels [N], eval_sets {name: (images float [n, H, W, C] in [0, 1], labels)})
  is called only to train; info = {"epochs", "<name>_accuracy" per eval set}. A
  classifier saved for images of another shape than image_shape raises ValueError."""
  import json
  import os

  import flax.serialization
  path, info_path = os.path.join(folder, "params.msgpack"), os.path.join(folder, "classifier.json")
  template = jax.eval_shape(functools.partial(init, image_shape=image_shape),  # shapes only
                            jax.random.PRNGKey(0))
  if os.path.exists(path):
    with open(path, "rb") as f:
      params = flax.serialization.from_bytes(template, f.read())
    if jax.tree_util.tree_map(np.shape, params) != jax.tree_util.tree_map(np.shape, template):
      raise ValueError(f"{path} holds a classifier for images of another shape than "
                       f"{tuple(image_shape)}")
    with open(info_path) as f:
      return params, json.load(f)
  train_images, train_labels, eval_sets = training_data()
  params = train(train_images, train_labels, key=key, epochs=epochs, binarize=binarize, log=log)
  info = {"epochs": epochs}
  for name, (images, labels) in eval_sets.items():
    info[f"{name}_accuracy"] = accuracy(params, images, labels)
  os.makedirs(folder, exist_ok=True)
  with open(path, "wb") as f:
    f.write(flax.serialization.to_bytes(params))
  with open(info_path, "w") as f:
    json.dump(info, f, indent=1)
  return params, info


def linear_probe_accuracy(train_features: np.ndarray, train_labels: np.ndarray,
                          test_features: np.ndarray, test_labels: np.ndarray, *,
                          steps: int = 500, l2: float = 1e-4) -> float:
  """Test accuracy of multinomial logistic regression on features [N, D] (e.g.
  posterior means: the latent classification accuracy of the multimodal
  literature), fitted full-batch by L-BFGS on standardised features."""
  mean, std = train_features.mean(0), train_features.std(0) + 1e-6
  x = jnp.asarray((train_features - mean) / std)
  y = jnp.asarray(train_labels, jnp.int32)
  params = _fit_logistic_regression(x, y, jnp.float32(l2), steps=steps)
  logits = jnp.asarray((test_features - mean) / std) @ params["w"] + params["b"]
  return float(np.mean(np.asarray(jnp.argmax(logits, -1)) == np.asarray(test_labels)))


# The data are arguments, not closed-over constants, so that probes of the same
# shape (one per modality subset) share one compiled fit.
@functools.partial(jax.jit, static_argnames="steps")
def _fit_logistic_regression(x, y, l2, *, steps):
  """{"w": [D, 10], "b": [10]} minimising the mean cross-entropy + l2 * |w|^2 on x [N, D]."""
  def loss(p):
    logits = x @ p["w"] + p["b"]
    return (jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))
            + l2 * jnp.sum(jnp.square(p["w"])))

  solver = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(loss)

  def step(carry, _):
    params, state = carry
    value, grad = value_and_grad(params, state=state)
    updates, state = solver.update(grad, state, params, value=value, grad=grad, value_fn=loss)
    return (optax.apply_updates(params, updates), state), None

  params = {"w": jnp.zeros((x.shape[1], NUM_CLASSES)), "b": jnp.zeros(NUM_CLASSES)}
  (params, _), _ = jax.lax.scan(step, (params, solver.init(params)), None, length=steps)
  return params

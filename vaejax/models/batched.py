"""Batched use of any trained model: encode, decode, sample, reconstruct, interpolate,
traverse, decode a 2-D latent grid.

Every function is written once on the protocol (`base.LatentVariableModel`) and
vmapped over a leading batch axis, so it serves every model family. They are
pure and jit-friendly: close over the model (a static setting) and jit, e.g.
`jax.jit(functools.partial(sample, model), static_argnames="num_samples")`;
`vaejax.load_run` returns a run whose methods do exactly that.

Shapes: B examples, images [B, H, W, C] float in [0, 1], latents [B, latent_dim].
A batch of examples is an image array or a dict of arrays with a leading B axis
({"image": [B, H, W, C], "label": [B] int32}), as in training. A conditional
model (a CVAE) takes its condition from the examples: `labels=` for a label CVAE
builds them; a quadrant CVAE reads the observed quadrants of the example images.
"""
from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from vaejax import distributions
from vaejax.models.base import Example, LatentVariableModel, Params, image_of


def is_conditional(model: LatentVariableModel) -> bool:
  """Whether the model's prior or decoder read a condition from the example."""
  return getattr(model, "condition", None) is not None


def _check_images(x: Example, model: LatentVariableModel, what: str) -> int:
  """The batch size of `x`; ValueError for integer or wrongly shaped images (or
  token ids [B, T] of the wrong length or dtype, for a model of a corpus)."""
  if isinstance(x, dict) and "tokens" in x:
    ids = x["tokens"]
    if not jnp.issubdtype(ids.dtype, jnp.integer) or tuple(ids.shape[1:]) != tuple(model.image_shape):
      raise ValueError(f"{what}: tokens must be int ids [B, {model.image_shape[0]}], got "
                       f"{ids.dtype} {tuple(ids.shape)}")
    return ids.shape[0]
  images = image_of(x)
  if not jnp.issubdtype(images.dtype, jnp.floating):
    raise ValueError(f"{what}: images must be float in [0, 1] (got {images.dtype}); "
                     f"divide uint8 pixels by 255, or use Run.examples(), which does")
  if tuple(images.shape[1:]) != tuple(model.image_shape):
    raise ValueError(f"{what}: images must be [B, {', '.join(map(str, model.image_shape))}] "
                     f"(batched), got shape {tuple(images.shape)}")
  return images.shape[0]


def label_examples(model: LatentVariableModel, labels: jax.Array) -> dict:
  """Examples that carry only class labels [B] int (blank images): the condition a
  label CVAE samples under."""
  labels = jnp.asarray(labels, jnp.int32)
  return {"image": jnp.zeros((labels.shape[0],) + tuple(model.image_shape), jnp.float32),
          "label": labels}


def encode(model: LatentVariableModel, params: Params, x: Example
           ) -> distributions.DiagGaussian | distributions.PointMass:
  """q(z|x) for a batch: a DiagGaussian whose mean and log_var are [B, latent_dim];
  for a deterministic encoder (the AAE's, the VQ-VAE's nearest codes, int32) a
  PointMass whose mean is its value [B, latent_dim].

  For a hierarchical posterior, the Gaussians of its layers along the mean path.
  """
  _check_images(x, model, "encode")

  def one(e):
    q = model.posterior(params, e)
    if isinstance(q, distributions.PointMass):
      return q
    return distributions.DiagGaussian(q.mean, q.log_var)

  return jax.vmap(one)(x)


def decode(model: LatentVariableModel, params: Params, z: jax.Array,
           x: Optional[Example] = None) -> jax.Array:
  """E[x|z] in [0, 1]: [B, H, W, C] for z [B, latent_dim] (the Bernoulli means, the
  continuous-Bernoulli means, or the clipped Gaussian means). A conditional model
  decodes under the conditions of the examples x (B of them); ValueError without.
  An autoregressive sequence model (`autoregressive`, models.base) decodes greedily from z
  alone: the rows' probabilities given the greedy rows above [B, H, W, C], or the
  greedy token ids [B, T]."""
  if getattr(model, "autoregressive", False):
    def greedy(zi):
      path = model.ancestral_sample(params, zi, key=jax.random.PRNGKey(0), greedy=True)
      if model.observation == "tokens":
        return path["sample"]
      return path["mean"].reshape(model.image_shape)
    return jax.vmap(greedy)(z)
  if x is None:
    if is_conditional(model):
      raise ValueError("decode: a conditional model decodes under a condition: pass the "
                       "examples x (e.g. label_examples(model, labels))")
    return jax.vmap(lambda zi: model.mean_image(params, None, zi))(z)
  _check_images(x, model, "decode")
  return jax.vmap(lambda e, zi: model.mean_image(params, e, zi))(x, z)


def sample(model: LatentVariableModel, params: Params, *, key: jax.Array,
           num_samples: Optional[int] = None, condition: Optional[Example] = None,
           labels: Optional[jax.Array] = None) -> jax.Array:
  """E[x|z] for z ~ p(z) (or p(z|c)): [B, H, W, C] in [0, 1].

  Unconditional: B = num_samples. Conditional: one draw per example of
  `condition` (examples carrying the condition), or per entry of `labels` [B]
  for a label CVAE. Raises ValueError when the arguments do not fit the model.
  """
  if is_conditional(model):
    if (condition is None) == (labels is None):
      raise ValueError("sample: a conditional model needs exactly one of condition= "
                       "(examples) or labels=")
    condition = label_examples(model, labels) if labels is not None else condition
    num = _check_images(condition, model, "sample")
  else:
    if condition is not None or labels is not None or not num_samples:
      raise ValueError("sample: an unconditional model takes num_samples= (>= 1) and no "
                       "condition or labels")
    num, condition = int(num_samples), None
  keys = jax.random.split(key, num)
  if condition is None:
    prior = model.prior(params, None)
    z = jax.vmap(lambda k: prior.sample(key=k))(keys)
  else:
    z = jax.vmap(lambda e, k: model.prior(params, e).sample(key=k))(condition, keys)
  return decode(model, params, z, condition)


def reconstruct(model: LatentVariableModel, params: Params, x: Example, *,
                key: Optional[jax.Array] = None) -> jax.Array:
  """E[x|z] at the posterior mean of each example (or, given a key, at one draw
  z ~ q(z|x)): [B, H, W, C] in [0, 1]."""
  if key is None:
    z = encode(model, params, x).mean
  else:  # one draw z ~ q(z|x) per example (layer by layer for a hierarchical q)
    num = _check_images(x, model, "reconstruct")
    z = jax.vmap(lambda e, k: model.posterior(params, e).sample(key=k))(
        x, jax.random.split(key, num))
  return decode(model, params, z, x if is_conditional(model) else None)


def interpolate(model: LatentVariableModel, params: Params, x0: Example, x1: Example, *,
                num_steps: int) -> jax.Array:
  """Decoded points on the line between posterior means, z_t = (1 - t) z0 + t z1
  for t = 0, 1/(num_steps - 1), ..., 1: [B, num_steps, H, W, C] in [0, 1].

  x0 and x1 are batches of B examples each; a conditional model decodes every
  step under x0's condition. ValueError when num_steps < 2, or for discrete latents
  (a VQ-VAE's code indices have no line between them).
  """
  if num_steps < 2:
    raise ValueError(f"interpolate: num_steps must be >= 2 (the two ends), got {num_steps}")
  z0, z1 = encode(model, params, x0).mean, encode(model, params, x1).mean
  if not jnp.issubdtype(z0.dtype, jnp.floating):
    raise ValueError(f"interpolate: the model's latents are discrete ({z0.dtype} codes), "
                     f"so there is no line between two of them")
  t = jnp.asarray(np.linspace(0.0, 1.0, num_steps), z0.dtype)[None, :, None]
  z = (1.0 - t) * z0[:, None] + t * z1[:, None]  # [B, num_steps, latent_dim]
  num = z.shape[0]
  flat_z = z.reshape(num * num_steps, -1)
  condition = None
  if is_conditional(model):
    condition = jax.tree_util.tree_map(lambda a: jnp.repeat(a, num_steps, axis=0), x0)
  images = decode(model, params, flat_z, condition)
  return images.reshape((num, num_steps) + images.shape[1:])


def _posterior_mean(model: LatentVariableModel, params: Params, x: Example, who: str) -> jax.Array:
  """The posterior mean [latent_dim] of one example x (no batch axis)."""
  batch = jax.tree_util.tree_map(lambda a: jnp.asarray(a)[None], x)
  z = encode(model, params, batch).mean[0]
  if not jnp.issubdtype(z.dtype, jnp.floating):
    raise ValueError(f"{who}: the model's latents are discrete ({z.dtype} codes)")
  return z


def _repeated(x: Example, num: int) -> Example:
  return jax.tree_util.tree_map(lambda a: jnp.repeat(jnp.asarray(a)[None], num, axis=0), x)


def check_dims(dims: np.ndarray, latent_dim: int) -> None:
  """ValueError unless dims is a 1-D array of latent dimensions in [0, latent_dim)."""
  if dims.ndim != 1 or not np.issubdtype(dims.dtype, np.integer) or np.any(dims < 0) \
      or np.any(dims >= latent_dim):
    raise ValueError(f"traverse: dims={dims.tolist()} must be a list of latent dimensions "
                     f"in [0, {latent_dim})")


def traverse(model: LatentVariableModel, params: Params, x: Example, *, dims,
             values) -> jax.Array:
  """Latent traversals from one example: [D, S, H, W, C] in [0, 1].

  Row d decodes (`decode`) the posterior mean of q(z|x) with dimension dims[d] set
  to each of `values` [S] in turn, the other dimensions held (Higgins et al. 2017,
  beta-VAE, Fig. 7), under x's condition. x: one example without a batch axis;
  dims: [D] ints indexing the flat latent (for a hierarchical model, whose decoder
  reads z1 only, a higher layer's dimension leaves its row unchanged). An
  autoregressive model decodes greedily, as in `decode` (token ids [D, S, T] for a
  corpus). ValueError for discrete latents or, when dims are concrete, a dimension
  outside [0, latent_dim).
  """
  z = _posterior_mean(model, params, x, "traverse")
  try:
    check_dims(np.asarray(dims), z.shape[0])
  except jax.errors.TracerArrayConversionError:  # traced under jit: Run.traverse checks first
    pass
  dims, values = jnp.asarray(dims), jnp.asarray(values, z.dtype)
  swept = jax.vmap(lambda d: jnp.tile(z, (len(values), 1)).at[:, d].set(values))(dims)
  images = decode(model, params, swept.reshape(-1, z.shape[0]),
                  _repeated(x, swept.shape[0] * len(values)))
  return images.reshape(swept.shape[:2] + images.shape[1:])


def decode_grid(model: LatentVariableModel, params: Params, *, low: float, high: float,
                num: int, x: Optional[Example] = None) -> jax.Array:
  """E[x|z] over a num x num grid of a 2-D latent: [num, num, H, W, C] in [0, 1].

  With g = linspace(low, high, num), entry [i, j] decodes z = (g[j], g[num - 1 - i]):
  z[0] rises left to right and z[1] bottom to top, as in a scatter plot of the codes
  (the layout of Kingma & Welling 2014, Fig. 4, whose grid is spaced by the Gaussian
  inverse CDF; this one is linear). A conditional model decodes under one example
  x's condition (no batch axis); an autoregressive one greedily, as in `decode`.
  ValueError unless latent_dim == 2.
  """
  if model.latent_dim != 2:
    raise ValueError(f"decode_grid: needs a 2-D latent, the model's has {model.latent_dim}")
  g = np.linspace(low, high, num)
  z = jnp.asarray(np.stack(np.meshgrid(g, g[::-1]), -1).reshape(-1, 2), jnp.float32)
  images = decode(model, params, z, None if x is None else _repeated(x, num * num))
  return images.reshape((num, num) + images.shape[1:])

"""Encoders and decoders: shapes for both image sizes, one example in, bounded log-variance."""
import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vaejax import estimators, models, nets, objectives


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
@pytest.mark.parametrize("image_shape", [(28, 28, 1), (32, 32, 3)])
def test_shapes_and_a_finite_gradient(architecture, image_shape):
  model = models.make_vae(architecture=architecture, image_shape=image_shape, latent_dim=6,
                          hidden=(32,))
  params = jax.jit(model.init)(jax.random.PRNGKey(0))
  x = jax.random.uniform(jax.random.PRNGKey(1), image_shape)
  q = jax.eval_shape(model.posterior, params, x)
  assert q.mean.shape == (6,) and q.log_var.shape == (6,)
  assert jax.eval_shape(model.decode, params, q.mean).shape == image_shape
  batch = jnp.stack([x, 1 - x])
  loss_fn = objectives.make_batch_loss(model, estimators.make_estimator("elbo").per_example)
  (loss, _), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(
      params, batch, key=jax.random.PRNGKey(2))
  assert np.isfinite(float(loss))
  assert all(np.isfinite(g).all() and np.abs(g).sum() > 0
             for g in jax.tree_util.tree_leaves(grads["decoder"]))


def test_log_variance_is_soft_clipped():
  raw = jnp.array([-1e6, -5.0, 0.0, 5.0, 1e6])
  clipped = nets.soft_clip(raw, nets.LOG_VAR_BOUND)
  assert float(jnp.max(jnp.abs(clipped))) <= nets.LOG_VAR_BOUND
  np.testing.assert_allclose(clipped[1:4], raw[1:4], rtol=0.01)  # within 1% for |x| <= 5
  assert float(jax.grad(lambda v: nets.soft_clip(v, 30.0))(0.0)) == pytest.approx(1.0)


def test_gaussian_head_is_two_dense_layers_applied_as_one_matmul():
  class TwoDense(nn.Module):  # the head as it was: two separate nn.Dense layers
    @nn.compact
    def __call__(self, h):
      mean = nn.Dense(6, name="mean")(h)
      return mean, nets.soft_clip(nn.Dense(6, name="log_var")(h), nets.LOG_VAR_BOUND)

  h = jax.random.normal(jax.random.PRNGKey(1), (3, 10))
  params = nets.GaussianHead(6).init(jax.random.PRNGKey(0), h)
  reference = TwoDense().init(jax.random.PRNGKey(0), h)
  # Same parameter names, shapes and init values, so checkpoints and seeds carry over.
  assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(reference)
  jax.tree_util.tree_map(np.testing.assert_array_equal, params, reference)
  params = jax.tree_util.tree_map(lambda p: p + 0.1, params)  # non-zero biases
  for got, want in zip(nets.GaussianHead(6).apply(params, h), TwoDense().apply(params, h)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  loss = lambda module: lambda p: sum(jnp.sum(jnp.sin(o)) for o in module.apply(p, h))  # noqa: E731
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                         jax.grad(loss(nets.GaussianHead(6)))(params), jax.grad(loss(TwoDense()))(params))


def test_unknown_names_are_refused():
  with pytest.raises(ValueError, match=r"unknown architecture 'resnet'; valid: \['mlp', 'conv'\]"):
    models.make_vae(architecture="resnet", image_shape=(28, 28, 1), latent_dim=2, hidden=(8,))
  with pytest.raises(ValueError, match="unknown likelihood"):
    models.make_vae(architecture="mlp", image_shape=(28, 28, 1), latent_dim=2, hidden=(8,),
                    likelihood="poisson")


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
def test_bfloat16_compute_keeps_float32_params_and_matches_float32(architecture):
  make = lambda dtype: models.make_vae(  # noqa: E731
      architecture=architecture, image_shape=(28, 28, 1), latent_dim=8, hidden=(64,),
      compute_dtype=dtype)
  model32, model16 = make("float32"), make("bfloat16")
  params = jax.jit(model32.init)(jax.random.PRNGKey(0))
  # Same parameter tree, float32, so a run can switch compute dtype.
  params16 = jax.eval_shape(model16.init, jax.random.PRNGKey(0))
  assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(params16)
  assert all(p.dtype == jnp.float32 for p in jax.tree_util.tree_leaves(params16))
  batch = (jax.random.uniform(jax.random.PRNGKey(1), (16, 28, 28, 1)) > 0.5).astype(jnp.float32)
  losses, grads = {}, {}
  for name, model in (("f32", model32), ("bf16", model16)):
    loss_fn = objectives.make_batch_loss(model, estimators.make_estimator("elbo").per_example)
    (loss, metrics), g = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(
        params, batch, key=jax.random.PRNGKey(2))
    assert metrics["loss"].dtype == jnp.float32
    assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(g))
    losses[name], grads[name] = float(loss), g
  # bfloat16 keeps ~3 significant digits per product; accumulation is float32.
  assert losses["bf16"] == pytest.approx(losses["f32"], rel=1e-2)
  assert losses["bf16"] != losses["f32"]  # the bf16 path really ran in bf16
  g32 = np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(grads["f32"])])
  g16 = np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(grads["bf16"])])
  # Same direction up to bf16 rounding (measured cosine: 0.99+ MLP, 0.987 conv at init);
  # an unrelated gradient would give ~0.
  assert np.dot(g32, g16) / (np.linalg.norm(g32) * np.linalg.norm(g16)) > 0.97


def test_unknown_compute_dtype_is_refused():
  with pytest.raises(ValueError, match="unknown compute dtype 'float16'"):
    models.make_vae(architecture="mlp", image_shape=(28, 28, 1), latent_dim=2, hidden=(8,),
                    compute_dtype="float16")


def test_depth_to_space_places_each_channel_block_in_its_pixel():
  # [2, 3, 4 * 5] -> [4, 6, 5]: output pixel (2i + a, 2j + b) holds channels
  # (a * 2 + b) * 5 ... + 5 of input pixel (i, j).
  x = jnp.arange(2 * 3 * 20, dtype=jnp.float32).reshape(2, 3, 20)
  y = nets.depth_to_space(x, 2)
  assert y.shape == (4, 6, 5)
  for i, j, a, b in itertools.product(range(2), range(3), range(2), range(2)):
    np.testing.assert_array_equal(y[2 * i + a, 2 * j + b], x[i, j, (2 * a + b) * 5:(2 * a + b + 1) * 5])
  # Leading (batch) axes pass through.
  np.testing.assert_array_equal(nets.depth_to_space(jnp.stack([x, -x]), 2), jnp.stack([y, -y]))


@pytest.mark.parametrize("strides, shape", [(1, (7, 7, 5)), (2, (28, 28, 1)), (2, (14, 13, 3))])
def test_patch_conv_equals_flax_conv_with_the_same_params(strides, shape):
  x = jax.random.normal(jax.random.PRNGKey(0), (2,) + shape)
  conv = nn.Conv(6, (3, 3), strides=(strides, strides))
  params = conv.init(jax.random.PRNGKey(1), x)
  patch = nets.PatchConv(6, 3, strides)
  assert jax.tree_util.tree_map(jnp.shape, patch.init(jax.random.PRNGKey(1), x)) == \
      jax.tree_util.tree_map(jnp.shape, params)
  np.testing.assert_allclose(patch.apply(params, x), conv.apply(params, x), rtol=1e-5, atol=1e-5)
  # ... and the same gradients with respect to params and input.
  loss = lambda m: lambda p, v: jnp.sum(jnp.sin(m.apply(p, v)))  # noqa: E731
  g_patch = jax.grad(loss(patch), argnums=(0, 1))(params, x)
  g_conv = jax.grad(loss(conv), argnums=(0, 1))(params, x)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4),
                         g_patch, g_conv)

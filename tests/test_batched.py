"""vaejax.models.batched: encode/decode/sample/reconstruct/interpolate/traverse/decode_grid
on any model."""
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vaejax import models
from vaejax.models import batched, cvae

SHAPE = (28, 28, 1)


@pytest.fixture(scope="module")
def vae():
  model = models.make_vae(architecture="mlp", image_shape=SHAPE, latent_dim=3, hidden=(16,))
  return model, model.init(jax.random.PRNGKey(0))


@pytest.fixture(scope="module")
def label_cvae():
  model = cvae.make_cvae(architecture="mlp", image_shape=SHAPE, latent_dim=3, hidden=(16,),
                         condition="label", prior="learned")
  return model, model.init(jax.random.PRNGKey(1))


def _images(n, seed=0):
  return (jax.random.uniform(jax.random.PRNGKey(seed), (n,) + SHAPE) < 0.3).astype(jnp.float32)


def test_encode_equals_per_example_posterior(vae):
  model, params = vae
  x = _images(4)
  q = batched.encode(model, params, x)
  assert q.mean.shape == q.log_var.shape == (4, 3)
  one = model.posterior(params, x[2])
  np.testing.assert_allclose(q.mean[2], one.mean, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(q.log_var[2], one.log_var, rtol=1e-6, atol=1e-6)


def test_sample_shapes_range_and_key_dependence(vae):
  model, params = vae
  a = batched.sample(model, params, key=jax.random.PRNGKey(0), num_samples=5)
  b = batched.sample(model, params, key=jax.random.PRNGKey(1), num_samples=5)
  assert a.shape == (5,) + SHAPE and a.dtype == jnp.float32
  assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
  assert not np.allclose(a, b)
  # Draw i is E[x|z_i] with z_i from the i-th split key.
  z0 = model.prior(params, None).sample(key=jax.random.split(jax.random.PRNGKey(0), 5)[0])
  np.testing.assert_allclose(a[0], model.mean_image(params, None, z0), rtol=1e-6, atol=1e-6)


def test_reconstruct_and_interpolation_ends(vae):
  model, params = vae
  x0, x1 = _images(3, seed=1), _images(3, seed=2)
  recon0, recon1 = (batched.reconstruct(model, params, x) for x in (x0, x1))
  assert recon0.shape == (3,) + SHAPE
  path = batched.interpolate(model, params, x0, x1, num_steps=4)
  assert path.shape == (3, 4) + SHAPE
  np.testing.assert_allclose(path[:, 0], recon0, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(path[:, -1], recon1, rtol=1e-5, atol=1e-6)
  # A posterior draw is not the mean.
  drawn = batched.reconstruct(model, params, x0, key=jax.random.PRNGKey(3))
  assert not np.allclose(drawn, recon0)


def test_traverse_sweeps_one_dimension_of_the_posterior_mean_per_row(label_cvae):
  model, params = label_cvae
  x = {"image": _images(1)[0], "label": jnp.int32(7)}
  values = np.linspace(-2.0, 2.0, 5)
  rows = batched.traverse(model, params, x, dims=[2, 0], values=values)
  assert rows.shape == (2, 5) + SHAPE
  mean = model.posterior(params, x).mean
  for r, d in enumerate((2, 0)):
    for s, v in enumerate(values):
      z = mean.at[d].set(v)
      np.testing.assert_allclose(rows[r, s], model.mean_image(params, x, z), rtol=1e-5, atol=1e-6)
  other = batched.traverse(model, params, dict(x, label=jnp.int32(1)), dims=[2], values=values)
  assert not np.allclose(other[0], rows[0])  # decoded under x's own label
  with pytest.raises(ValueError, match=r"traverse: dims=\[3\] must be .* in \[0, 3\)"):
    batched.traverse(model, params, x, dims=[3], values=values)


def test_decode_grid_lays_z0_across_and_z1_up(vae):
  model = models.make_vae(architecture="mlp", image_shape=SHAPE, latent_dim=2, hidden=(16,))
  params = model.init(jax.random.PRNGKey(4))
  grid = batched.decode_grid(model, params, low=-2.0, high=2.0, num=3)
  assert grid.shape == (3, 3) + SHAPE
  for i, z1 in enumerate((2.0, 0.0, -2.0)):  # top row: the largest z[1]
    for j, z0 in enumerate((-2.0, 0.0, 2.0)):
      expected = model.mean_image(params, None, jnp.array([z0, z1], jnp.float32))
      np.testing.assert_allclose(grid[i, j], expected, rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="needs a 2-D latent, the model's has 3"):
    batched.decode_grid(*vae, low=-1.0, high=1.0, num=2)


def test_deterministic_and_discrete_encoders_give_point_masses():
  """The AAE's deterministic encoder and the VQ-VAE's nearest codes encode to a
  PointMass; reconstructions decode its value; interpolation runs between AAE
  codes and refuses VQ-VAE code indices (no line between two of them)."""
  from vaejax import config as config_lib, distributions
  from vaejax.models import vqvae
  config = config_lib.base_config()
  config.update(model="aae", latent_dim=2, hidden=(16,), discriminator_hidden=(8,))
  aae = models.make(config, SHAPE)
  vq = vqvae.make_vqvae(image_shape=(8, 8, 1), features=(4, 8), num_codes=6, code_dim=3)
  for model, x in ((aae, _images(3)), (vq, _images(3)[:, :8, :8])):
    params = model.init(jax.random.PRNGKey(0))
    q = batched.encode(model, params, x)
    assert isinstance(q, distributions.PointMass)
    np.testing.assert_allclose(q.mean[1], model.posterior(params, x[1]).mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(batched.reconstruct(model, params, x)[1],
                               model.mean_image(params, None, q.mean[1]), rtol=1e-6, atol=1e-6)
  assert q.mean.dtype == jnp.int32 and q.mean.shape == (3, 4)  # a 2 x 2 grid of code indices
  with pytest.raises(ValueError, match="discrete"):
    batched.interpolate(vq, params, x, x, num_steps=3)
  with pytest.raises(ValueError, match=r"traverse: the model's latents are discrete"):
    batched.traverse(vq, params, x[0], dims=[0], values=[0.0, 1.0])
  aae_params = aae.init(jax.random.PRNGKey(0))
  path = batched.interpolate(aae, aae_params, _images(3), _images(3, seed=1), num_steps=3)
  np.testing.assert_allclose(path[:, 0], batched.reconstruct(aae, aae_params, _images(3)),
                             rtol=1e-5, atol=1e-6)


def test_conditional_sample_uses_labels(label_cvae):
  model, params = label_cvae
  labels = jnp.array([0, 7, 7])
  key = jax.random.PRNGKey(0)
  out = batched.sample(model, params, key=key, labels=labels)
  assert out.shape == (3,) + SHAPE
  # The same key under different labels draws from different p(z|c) and decodes under c.
  keys = jax.random.split(key, 3)
  x = batched.label_examples(model, labels)
  want = jax.vmap(lambda e, k: model.mean_image(params, e, model.prior(params, e).sample(key=k)))(
      x, keys)
  np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-6)
  same = batched.sample(model, params, key=key, condition=x)
  np.testing.assert_array_equal(out, same)


def test_bad_arguments_name_the_problem(vae, label_cvae):
  model, params = vae
  with pytest.raises(ValueError, match="float in"):
    batched.encode(model, params, (_images(2) * 255).astype(jnp.uint8))
  with pytest.raises(ValueError, match="batched"):
    batched.encode(model, params, _images(1)[0])
  with pytest.raises(ValueError, match="num_samples"):
    batched.sample(model, params, key=jax.random.PRNGKey(0))
  with pytest.raises(ValueError, match="num_steps"):
    batched.interpolate(model, params, _images(1), _images(1), num_steps=1)
  cmodel, cparams = label_cvae
  with pytest.raises(ValueError, match="exactly one of"):
    batched.sample(cmodel, cparams, key=jax.random.PRNGKey(0), num_samples=3)
  with pytest.raises(ValueError, match="condition"):
    batched.decode(cmodel, cparams, jnp.zeros((2, 3)))


def test_jitted_functions_do_not_retrace(vae):
  model, params = vae

  @jax.jit
  @chex.assert_max_traces(n=1)
  def reconstruct(params, x):
    return batched.reconstruct(model, params, x)

  @functools.partial(jax.jit, static_argnames="num_samples")
  @chex.assert_max_traces(n=1)
  def sample(params, *, key, num_samples):
    return batched.sample(model, params, key=key, num_samples=num_samples)

  for seed in range(3):
    reconstruct(params, _images(2, seed))
    sample(params, key=jax.random.PRNGKey(seed), num_samples=4)

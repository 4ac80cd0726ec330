"""Encoders and decoders: shapes for both image sizes, one example in, bounded log-variance."""
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
  params = model.init(jax.random.PRNGKey(0))
  x = jax.random.uniform(jax.random.PRNGKey(1), image_shape)
  q = model.posterior(params, x)
  assert q.mean.shape == (6,) and q.log_var.shape == (6,)
  assert model.decode(params, q.mean).shape == image_shape
  batch = jnp.stack([x, 1 - x])
  loss_fn = objectives.make_batch_loss(model, estimators.make_estimator("elbo").per_example)
  (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, key=jax.random.PRNGKey(2))
  assert np.isfinite(float(loss))
  assert all(np.isfinite(g).all() and np.abs(g).sum() > 0
             for g in jax.tree_util.tree_leaves(grads["decoder"]))


def test_log_variance_is_soft_clipped():
  raw = jnp.array([-1e6, -5.0, 0.0, 5.0, 1e6])
  clipped = nets.soft_clip(raw, nets.LOG_VAR_BOUND)
  assert float(jnp.max(jnp.abs(clipped))) <= nets.LOG_VAR_BOUND
  np.testing.assert_allclose(clipped[1:4], raw[1:4], rtol=0.01)  # within 1% for |x| <= 5
  assert float(jax.grad(lambda v: nets.soft_clip(v, 30.0))(0.0)) == pytest.approx(1.0)


def test_unknown_names_are_refused():
  with pytest.raises(ValueError, match=r"unknown architecture 'resnet'; valid: \['mlp', 'conv'\]"):
    models.make_vae(architecture="resnet", image_shape=(28, 28, 1), latent_dim=2, hidden=(8,))
  with pytest.raises(ValueError, match="unknown likelihood"):
    models.make_vae(architecture="mlp", image_shape=(28, 28, 1), latent_dim=2, hidden=(8,),
                    likelihood="poisson")

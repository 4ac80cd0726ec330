"""config.output_bias_init='data_mean': the decoder's output bias starts at the
log-odds of the mean training pixel (Burda et al. 2015's code)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vaejax

from vaejax import builders, config as config_lib, data, experiment, models
from vaejax.models import base, cvae, hvae, ladder, vae

SHAPE = (4, 5, 1)


def _images():
  """uint8 [50, 4, 5, 1] whose pixel (0, 0) is always 0 and pixel (0, 1) always 255."""
  images = np.random.RandomState(0).randint(0, 256, size=(50,) + SHAPE).astype(np.uint8)
  images[:, 0, 0], images[:, 0, 1] = 0, 255
  return images


def test_data_mean_logits_are_the_clipped_log_odds_of_each_pixels_mean():
  images = _images()
  logits = base.data_mean_logits(images, 255)
  assert logits.shape == SHAPE and logits.dtype == np.float32
  mean = images[:, 1:].astype(np.float64).mean(0) / 255  # rows below the constant pixels
  np.testing.assert_allclose(logits[1:], np.log(mean / (1 - mean)), rtol=1e-6)
  # Constant pixels are clipped to [1e-3, 1 - 1e-3] rather than sent to -inf / +inf.
  np.testing.assert_allclose(logits[0, 0, 0], np.log(1e-3 / (1 - 1e-3)), rtol=1e-6)
  np.testing.assert_allclose(logits[0, 1, 0], -np.log(1e-3 / (1 - 1e-3)), rtol=1e-6)


MODELS = {
    "vae": vae.make_vae(architecture="mlp", image_shape=SHAPE, latent_dim=3, hidden=(7,)),
    "cvae": cvae.make_cvae(architecture="mlp", image_shape=SHAPE, latent_dim=3, hidden=(7,)),
    # The deterministic baseline p(x|c): no latent, the decoder alone.
    "cvae_nn": cvae.make_cvae(architecture="mlp", image_shape=SHAPE, latent_dim=0, hidden=(7,)),
    "hvae": hvae.make_hvae(image_shape=SHAPE, latent_dims=(3, 2), hidden=((7,), (6,))),
    "ladder": ladder.make_ladder_vae(image_shape=SHAPE, latent_dims=(3, 2), hidden=((7,), (6,))),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_the_bias_is_the_one_that_feeds_the_likelihood_and_nothing_else_changes(name):
  """With the output layer's kernel zeroed, p(x|z) at any z is Bernoulli(sigmoid(bias)):
  so the bias set is the likelihood's (not some hidden layer's), and every other
  parameter is the plain init's."""
  model = MODELS[name]
  bias = base.data_mean_logits(_images(), 255)
  plain = model.init(jax.random.PRNGKey(0))
  params = model.with_output_bias(plain, bias)
  out_path = ("decoder", "x", "out") if name in ("hvae", "ladder") else ("decoder", "out")
  flat_plain = dict(jax.tree_util.tree_leaves_with_path(plain))
  changed = [jax.tree_util.keystr(p) for p, leaf in jax.tree_util.tree_leaves_with_path(params)
             if not np.array_equal(leaf, flat_plain[p])]
  assert changed == ["".join(f"['{k}']" for k in out_path + ("bias",))]
  out = params
  for k in out_path:
    out = out[k]
  out["kernel"] = jnp.zeros_like(out["kernel"])
  x = {"image": jnp.ones(SHAPE), "label": jnp.int32(3)} if name.startswith("cvae") else jnp.ones(SHAPE)
  for seed in range(3):
    z = jax.random.normal(jax.random.PRNGKey(seed), (model.latent_dim,))
    np.testing.assert_allclose(model.mean_image(params, x, z), jax.nn.sigmoid(bias), rtol=1e-6)


def test_a_convolutional_decoder_is_refused():
  model = vae.make_vae(architecture="conv", image_shape=(28, 28, 1), latent_dim=2, hidden=(8, 16))
  with pytest.raises(ValueError, match="MLP decoder"):
    model.with_output_bias(model.init(jax.random.PRNGKey(0)), np.zeros((28, 28, 1)))


def test_build_init_starts_the_run_from_the_training_sets_mean():
  config = config_lib.base_config()
  config.update(model="hvae", dataset="mnist", dynamic_binarization=True, analytic_kl=False,
                latent_dims=(3, 2), layer_hidden=((7,), (6,)), activation="tanh",
                output_bias_init="data_mean")
  config_lib.validate(config)
  images = _images()
  train = data.Dataset(images, np.zeros(len(images), np.int32), max_value=255)
  model = models.make(config, SHAPE)
  params = builders.build_init(config, model, train)(jax.random.PRNGKey(0))
  np.testing.assert_array_equal(params["decoder"]["x"]["out"]["bias"],
                                base.data_mean_logits(images, 255).reshape(-1))
  config.output_bias_init = "zeros"  # the model's own (eager) init, bit for bit
  jitted, eager = (jax.tree_util.tree_leaves(p) for p in (
      builders.build_init(config, model, train)(jax.random.PRNGKey(0)),
      model.init(jax.random.PRNGKey(0))))
  assert len(jitted) == len(eager)
  for a, b in zip(jitted, eager):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("change, message", [
    (dict(architecture="conv"), "architecture='mlp'"),
    (dict(model="aae", latent_dim=2), "not model='aae'"),
    (dict(likelihood="gaussian_fixed"), "likelihood in"),
    (dict(output_bias_init="mean"), "is not valid"),
    (dict(num_replicas=2, architecture="conv"), "replica 0: .*architecture='mlp'"),
])
def test_configs_it_cannot_apply_to_are_refused(change, message):
  config = config_lib.base_config()
  config.output_bias_init = "data_mean"
  config.update(**change)
  with pytest.raises(config_lib.ConfigError, match=message):
    config_lib.validate(config)


def test_a_run_starts_from_the_bias_and_keeps_its_init_when_resumed(tmp_path, data_dir):
  """experiment.run applies it (after 2 Adam steps of 1e-3 the bias is within 0.01 of
  the training set's log-odds, which reach -6.9 at the border pixels), and a resume
  with the other value is refused even with allow_config_change: the run's records
  would name an init it never had."""
  from conftest import REPO
  config = config_lib.load_config_file(str(REPO / "experiments" / "configs" / "vae_smoke.py"))
  config.update(data_dir=data_dir, train_subset=64, eval_subset=32, batch_size=32,
                output_bias_init="data_mean", num_image_samples=0, tensorboard=False,
                checkpoint_every=0, log_every=0, eval_batch_size=32)
  experiment.run(config, str(tmp_path), quiet=True)
  run = vaejax.load_run(str(tmp_path))
  train = data.load(config.dataset, "train", data_dir).take(64)
  logits = base.data_mean_logits(train.images, train.max_value).reshape(-1)
  assert logits.min() < -6
  np.testing.assert_allclose(run.params["decoder"]["out"]["bias"], logits, atol=0.01)
  config.update(output_bias_init="zeros", epochs=2)
  with pytest.raises(experiment.RunError, match="started with output_bias_init='data_mean'"):
    experiment.run(config, str(tmp_path), allow_config_change=True, quiet=True)

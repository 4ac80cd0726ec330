"""Every invalid config value is refused before compiling, naming the key."""
import pytest

from vaejax import config as config_lib


@pytest.mark.parametrize("key,value,match", [
    ("latent_dim", 0, r"config.latent_dim=0 must be >= 1"),
    ("batch_size", 0, r"config.batch_size=0 must be >= 1"),
    ("num_samples", 0, r"config.num_samples=0 must be >= 1"),
    ("beta", -0.5, r"config.beta=-0.5 must be >= 0"),
    ("learning_rate", 0.0, r"config.learning_rate=0.0 must be > 0"),
    ("learning_rate", -1e-3, r"must be > 0"),
    ("epochs", 0, r"config.epochs=0 must be >= 1"),
    ("estimator", "magic", r"config.estimator='magic' is not valid; choose one of \['pathwise'"),
    ("objective", "elbow", r"choose one of \['elbo', 'iwae', 'ae', 'vq', 'code_prior', 'aae', 'wae', 'mvae', 'mmvae', 'mopoe'\]"),
    ("architecture", "resnet", r"config.architecture='resnet'.*\['mlp', 'conv'\]"),
    ("dataset", "cifar", r"config.dataset='cifar'"),
    ("parallel", "tpu", r"\['none', 'pmap', 'sharding'\]"),
    ("likelihood", "poisson", r"config.likelihood='poisson'"),
    ("hidden", (500, 0), r"config.hidden=\(500, 0\) must be a non-empty tuple of positive ints"),
])
def test_bad_values_are_named(key, value, match):
  config = config_lib.base_config()
  with config.unlocked():
    config[key] = value
  with pytest.raises(config_lib.ConfigError, match=match):
    config_lib.validate(config)


def test_batch_must_divide_over_devices():
  config = config_lib.base_config()
  config.batch_size = 100
  with pytest.raises(config_lib.ConfigError, match="does not divide over 8 devices"):
    config_lib.validate(config, num_devices=8)
  config_lib.validate(config, num_devices=4)


def test_base_config_is_valid():
  config_lib.validate(config_lib.base_config())


def test_smoke_config_applies_the_shared_sizes_then_the_overrides_and_names_a_missing_key(
    tmp_path):
  full = tmp_path / "full.py"
  full.write_text("from vaejax.config import base_config\n\n\ndef get_config():\n"
                  "  c = base_config()\n  c.hidden = (500, 500)\n  c.latent_dim = 50\n"
                  "  return c\n")
  smoke = config_lib.smoke_config(str(full), latent_dim=3, checkpoint_every=16)
  assert smoke.hidden == config_lib.SMOKE_SIZES["hidden"]
  assert smoke.train_subset == config_lib.SMOKE_SIZES["train_subset"]
  assert (smoke.latent_dim, smoke.checkpoint_every) == (3, 16)
  config_lib.validate(smoke)
  with pytest.raises(config_lib.ConfigError, match=r"full\.py has no key 'latent_dims_typo'"):
    config_lib.smoke_config(str(full), latent_dims_typo=3)


def test_burda_learning_rate_schedule():
  from vaejax import experiment
  config = config_lib.load_config_file(
      str(__import__("pathlib").Path(__file__).parents[1] / "experiments" / "configs" / "iwae_table1.py"))
  config_lib.validate(config)
  assert config.epochs == sum(3 ** i for i in range(8)) == 3280
  schedule = experiment.learning_rate(config, steps_per_epoch=10)
  # Epoch 0 at 1e-3; epochs 1-3 at 1e-3 * 10^(-1/7); epochs 4-12 at 10^(-2/7); the last stage i=7.
  for epoch, i in [(0, 0), (1, 1), (3, 1), (4, 2), (12, 2), (13, 3), (1093, 7), (3279, 7)]:
    assert float(schedule(epoch * 10)) == pytest.approx(1e-3 * 10 ** (-i / 7), rel=1e-5), epoch
  config.lr_schedule = "constant"
  assert experiment.learning_rate(config, 10) == 1e-3
  config.lr_schedule, config.epochs = "cosine", 4
  cosine = experiment.learning_rate(config, 10)
  for step, value in [(0, 1e-3), (20, 5e-4), (40, 0.0)]:  # half way down at half the run
    assert float(cosine(step)) == pytest.approx(value, abs=1e-9), step
  config.lr_schedule = "linear"
  with pytest.raises(config_lib.ConfigError, match=r"config.lr_schedule='linear'"):
    config_lib.validate(config)


def test_a_key_added_since_the_checkpoint_counts_as_unchanged_only_at_its_default():
  from vaejax import resume
  run = resume.config_to_dict(config_lib.base_config())
  old_checkpoint = {k: v for k, v in run.items() if k != "compute_dtype"}
  assert resume.changed_config_keys(old_checkpoint, run) == []
  assert resume.changed_config_keys(old_checkpoint, {**run, "compute_dtype": "bfloat16"}) == [
      "compute_dtype"]
  assert resume.changed_config_keys(run, {**run, "learning_rate": 0.5}) == ["learning_rate"]


@pytest.mark.parametrize("overrides,match", [
    (dict(model="gan"), r"config.model='gan' is not valid; choose one of \['vae', 'cvae', 'hvae', 'ladder', 'vqvae', 'vqvae_prior', 'aae', 'wae', 'mvae', 'mmvae', 'mopoe', 'seqvae'\]"),
    (dict(model="cvae"), r"model='cvae' with condition='label' needs labelled training data; "
                         r"dataset='binarized_mnist' has no training labels"),
    (dict(model="cvae", condition="text", dataset="mnist", dynamic_binarization=True),
     r"config.condition='text' is not valid; choose one of \['label', 'quadrants'\]"),
    (dict(model="cvae", observed_quadrants=4), r"config.observed_quadrants=4 is not valid"),
    (dict(prior="learned"), r"config.prior='learned' applies to model='cvae' only"),
    (dict(dataset="mnist"), r"likelihood='bernoulli' needs 0/1 pixels but dataset='mnist' is "
                            r"grey-level.*continuous_bernoulli.*bernoulli_grey"),
    (dict(free_bits=0.5, estimator="stl"), r"free_bits and config.capacity_max need the closed-form"),
    (dict(free_bits=0.5, capacity_max=10.0), r"alternatives"),
    (dict(objective="iwae", kl_warmup_steps=100), r"kl_warmup_steps=100 shapes the ELBO's KL"),
    (dict(validation_split=True), r"validation_split applies to dataset='mnist' only"),
    (dict(capacity_max=25.0, capacity_steps=100, kl_warmup_steps=50),
     r"capacity_max ramps its own target C\(t\); set kl_warmup_steps=0"),
    (dict(objective="ae", eval_importance_samples=100), r"objective='ae' has no posterior variance"),
    (dict(objective="iwae", capacity_gamma=10.0), r"capacity_gamma=10.0 shapes the ELBO's KL"),
    (dict(model="aae", objective="aae", estimator="adversarial", latent_dim=2,
          latent_prior="mixture2d", supervised=True),
     r"config.supervised needs labelled training data; dataset='binarized_mnist' has none"),
    (dict(model="wae", objective="wae", estimator="mmd", latent_dim=2, latent_prior="mixture2d",
          supervised=True), r"config.supervised is the AAE's"),
    (dict(model="aae", objective="aae", estimator="adversarial", dataset="mnist",
          dynamic_binarization=True, supervised=True), r"use latent_prior='mixture2d' or"),
    (dict(model="aae", objective="elbo"), r"these families train on their own objectives"),
    (dict(latent_dim=2, latent_prior="swissroll2d"), r"'swissroll2d' has no density"),
    (dict(latent_prior="mixture2d"), r"lives in 2-D: set latent_dim=2 \(it is 20\)"),
    (dict(model="cvae", condition="quadrants", latent_dim=2, latent_prior="mixture2d"),
     r"latent_prior='mixture2d' applies to model='vae', 'aae' or 'wae' only"),
    (dict(mmd_weight=5.0), r"config.mmd_weight applies to model='aae' or 'wae' only"),
    (dict(model="aae", objective="aae", estimator="adversarial", mmd_weight=5.0),
     r"config.mmd_weight applies to model='wae' only"),
    (dict(model="wae", objective="wae", estimator="mmd", batch_size=1),
     r"the WAE's MMD term needs >= 2 examples per batch"),
])
def test_model_and_data_mismatches_are_one_line_errors(overrides, match):
  config = config_lib.base_config()
  with config.unlocked():
    config.update(overrides)
  with pytest.raises(config_lib.ConfigError, match=match) as error:
    config_lib.validate(config)
  assert "\n" not in str(error.value)


def test_grey_mnist_is_accepted_with_a_grey_likelihood_or_binarisation():
  for overrides in (dict(likelihood="continuous_bernoulli"), dict(likelihood="bernoulli_grey"),
                    dict(dynamic_binarization=True),
                    dict(model="cvae", latent_dim=0, dynamic_binarization=True)):
    config = config_lib.base_config()
    config.update(dict(dataset="mnist", **overrides))
    config_lib.validate(config)


def test_labels_out_of_range_are_named():
  import numpy as np
  from vaejax import data
  with pytest.raises(data.DataError, match=r"mnist train: label 10 of example 2 is outside \[0, 10\)"):
    data.check_labels(np.array([0, 9, 10, 3]), num_classes=10, what="mnist train")
  with pytest.raises(data.DataError, match="needs class labels, and this split has none"):
    data.check_labels(None, num_classes=10, what="binarized_mnist train")

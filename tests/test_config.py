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
    ("objective", "elbow", r"choose one of \['elbo', 'iwae', 'ae'\]"),
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
  config.lr_schedule = "cosine"
  with pytest.raises(config_lib.ConfigError, match=r"config.lr_schedule='cosine'"):
    config_lib.validate(config)


def test_a_key_added_since_the_checkpoint_counts_as_unchanged_only_at_its_default():
  from vaejax import experiment
  run = experiment.config_to_dict(config_lib.base_config())
  old_checkpoint = {k: v for k, v in run.items() if k != "compute_dtype"}
  assert experiment.changed_config_keys(old_checkpoint, run) == []
  assert experiment.changed_config_keys(old_checkpoint, {**run, "compute_dtype": "bfloat16"}) == [
      "compute_dtype"]
  assert experiment.changed_config_keys(run, {**run, "learning_rate": 0.5}) == ["learning_rate"]

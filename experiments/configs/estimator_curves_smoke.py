"""estimator_curves.py at a size that runs in seconds (for tests)."""
import os

from vaejax.config import load_config_file


def get_config():
  config = load_config_file(os.path.join(os.path.dirname(__file__), "estimator_curves.py"))
  config.hidden = (32,)
  config.latent_dim = 4
  config.num_samples = 3
  config.estimators = ("elbo/pathwise", "elbo/score_function:moving_average", "iwae/dreg",
                       "iwae/vimco")
  config.train_steps = 20
  config.eval_every = 10
  config.train_subset = 1000
  config.eval_subset = 100
  config.variance_draws = 16
  config.snr_examples = 4
  return config

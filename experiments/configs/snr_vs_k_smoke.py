"""snr_vs_k.py at a size that runs in seconds (for tests)."""
import os

from vaejax.config import load_config_file


def get_config():
  config = load_config_file(os.path.join(os.path.dirname(__file__), "snr_vs_k.py"))
  config.hidden = (32,)
  config.latent_dim = 4
  config.ks = (1, 4)
  config.num_draws = 16
  config.snr_examples = 4
  config.train_steps = 20
  config.linear_gaussian_dim = 3
  config.train_subset = 1000
  config.eval_subset = 100
  return config

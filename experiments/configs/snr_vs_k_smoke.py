"""snr_vs_k.py at a size that runs in seconds (for tests)."""
import importlib.util
import os

_spec = importlib.util.spec_from_file_location(
    "snr_vs_k", os.path.join(os.path.dirname(__file__), "snr_vs_k.py"))
_full = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_full)


def get_config():
  config = _full.get_config()
  config.hidden = (32,)
  config.latent_dim = 4
  config.ks = (1, 4)
  config.num_draws = 16
  config.snr_examples = 4
  config.train_steps = 20
  config.train_subset = 1000
  config.eval_subset = 100
  return config

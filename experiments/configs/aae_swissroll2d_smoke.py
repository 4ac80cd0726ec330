"""aae_swissroll2d.py on a slice of MNIST, sized to run in seconds."""
import os

from vaejax.config import load_config_file


def get_config():
  config = load_config_file(os.path.join(os.path.dirname(__file__), "aae_mixture2d_smoke.py"))
  config.latent_prior = "swissroll2d"
  return config

"""ae_vs_vae_2d.py on a slice of MNIST, sized to run in seconds (the same slice
and network as vae_latent2d_smoke.py)."""
import os

from vaejax.config import load_config_file


def get_config():
  config = load_config_file(os.path.join(os.path.dirname(__file__), "vae_latent2d_smoke.py"))
  config.objective = "ae"
  return config

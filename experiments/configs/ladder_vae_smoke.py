"""ladder_vae.py at a size that runs in seconds (for tests)."""
import os

from vaejax.config import load_config_file


def get_config():
  config = load_config_file(os.path.join(os.path.dirname(__file__), "hvae2_iwae_table_smoke.py"))
  config.model = "ladder"
  config.kl_warmup_steps = 16
  return config

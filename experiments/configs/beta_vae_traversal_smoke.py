"""beta_vae_traversal.py on a slice of MNIST, sized to run in seconds."""
import os

from vaejax.config import smoke_config


def get_config():
  return smoke_config(os.path.join(os.path.dirname(__file__), "beta_vae_traversal.py"),
                      kl_warmup_steps=16)  # half the single epoch's 32 steps

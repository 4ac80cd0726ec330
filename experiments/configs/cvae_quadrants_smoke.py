"""cvae_quadrants.py on a slice of MNIST, sized to run in seconds."""
import os

from vaejax.config import smoke_config


def get_config():
  return smoke_config(os.path.join(os.path.dirname(__file__), "cvae_quadrants.py"),
                      latent_dim=8,
                      checkpoint_every=16,
                      eval_importance_samples=20)

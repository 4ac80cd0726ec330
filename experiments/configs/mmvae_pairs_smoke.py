"""mmvae_pairs.py on a slice of MNIST, sized to run in seconds."""
import os

from vaejax.config import smoke_config


def get_config():
  return smoke_config(os.path.join(os.path.dirname(__file__), "mmvae_pairs.py"),
                      train_subset=1024,
                      eval_subset=200,
                      hidden=(32,),
                      latent_dim=4,
                      checkpoint_every=16,
                      eval_batch_size=100,
                      num_samples=4)

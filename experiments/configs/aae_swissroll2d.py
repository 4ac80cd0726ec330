"""The supervised adversarial autoencoder with a swiss-roll prior (Makhzani et al.
2015, Fig. 4 right): each digit's 2-D codes pushed to its own tenth of the roll, a
prior with no density (vaejax.latent_priors), known only through samples.
Otherwise aae_mixture2d.py, at the batch size and epochs it was measured with.

  python3 experiments/train.py --config experiments/configs/aae_swissroll2d.py \\
      --workdir runs/aae_swissroll2d --config.data_dir=../shared/data
"""
import os

from vaejax.config import load_config_file


def get_config():
  config = load_config_file(os.path.join(os.path.dirname(__file__), "aae_mixture2d.py"))
  config.latent_prior = "swissroll2d"
  config.batch_size = 100
  config.epochs = 20
  config.log_every = 600
  config.checkpoint_every = 3000
  return config

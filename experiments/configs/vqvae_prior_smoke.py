"""vqvae_prior.py at a size that runs in seconds (for tests); pass the workdir of a
vqvae_mnist_smoke.py run as --config.vqvae_workdir."""
import os

from vaejax.config import load_config_file


def get_config():
  config = load_config_file(os.path.join(os.path.dirname(__file__), "vqvae_prior.py"))
  config.prior_width = 16
  config.prior_depth = 1
  config.prior_heads = 2
  config.batch_size = 32
  config.epochs = 2
  config.train_subset = 640
  config.eval_subset = 256
  config.log_every = 10
  config.checkpoint_every = 20
  config.num_image_samples = 16
  return config

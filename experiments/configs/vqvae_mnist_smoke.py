"""vqvae_mnist.py at a size that runs in seconds (for tests)."""
import os

from vaejax.config import load_config_file


def get_config():
  config = load_config_file(os.path.join(os.path.dirname(__file__), "vqvae_mnist.py"))
  config.hidden = (8, 16)
  config.num_codes = 32
  config.code_dim = 4
  config.restart_after_steps = 5
  config.batch_size = 32
  config.epochs = 2
  config.train_subset = 640
  config.eval_subset = 256
  config.log_every = 10
  config.checkpoint_every = 20
  config.num_image_samples = 16
  return config

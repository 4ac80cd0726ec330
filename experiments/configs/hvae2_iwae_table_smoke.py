"""hvae2_iwae_table.py at a size that runs in seconds (for tests)."""
import os

from vaejax.config import load_config_file


def get_config():
  config = load_config_file(os.path.join(os.path.dirname(__file__), "hvae2_iwae_table.py"))
  config.latent_dims = (8, 4)
  config.layer_hidden = ((32,), (16,))
  config.train_subset = 2048
  config.eval_subset = 200
  config.batch_size = 64
  config.learning_rate = 3e-3
  config.epochs = 1
  config.log_every = 8
  config.checkpoint_every = 16
  config.eval_batch_size = 200
  config.eval_importance_samples = 100
  config.num_image_samples = 16
  return config

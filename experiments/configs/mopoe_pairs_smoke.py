"""mopoe_pairs.py on a slice of MNIST, sized to run in seconds."""
import os

from vaejax.config import load_config_file


def get_config():
  config = load_config_file(os.path.join(os.path.dirname(__file__), "mopoe_pairs.py"))
  config.train_subset = 1024
  config.eval_subset = 200
  config.hidden = (32,)
  config.latent_dim = 4
  config.batch_size = 64
  config.epochs = 1
  config.log_every = 8
  config.checkpoint_every = 16
  config.eval_batch_size = 100
  config.num_image_samples = 16
  return config

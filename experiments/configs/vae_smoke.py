"""The reference pipeline on a slice of the real data, sized to run in seconds."""
from vaejax.config import base_config


def get_config():
  config = base_config()
  config.dataset = "binarized_mnist"
  config.train_subset = 2048
  config.eval_subset = 1000
  config.hidden = (64,)
  config.latent_dim = 8
  config.batch_size = 64
  config.epochs = 1
  config.log_every = 8
  config.checkpoint_every = 16
  config.eval_batch_size = 500
  config.num_image_samples = 16
  return config

"""mvae_mnist_label.py on a slice of MNIST, sized to run in seconds."""
import os

from vaejax.config import load_config_file


def get_config():
  config = load_config_file(os.path.join(os.path.dirname(__file__), "mvae_mnist_label.py"))
  config.train_subset = 2048
  config.eval_subset = 500
  config.hidden = (64,)
  config.latent_dim = 8
  config.batch_size = 64
  config.epochs = 1
  config.log_every = 8
  config.checkpoint_every = 32
  config.eval_batch_size = 250
  config.num_image_samples = 16
  return config

"""vrae_seq_mnist.py on a slice of binarised MNIST with tiny GRUs, sized to run in seconds."""
import os

from vaejax.config import load_config_file


def get_config():
  config = load_config_file(os.path.join(os.path.dirname(__file__), "vrae_seq_mnist.py"))
  config.train_subset = 512
  config.eval_subset = 100
  config.batch_size = 64
  config.epochs = 1
  config.rnn_hidden = 32
  config.latent_dim = 4
  config.eval_importance_samples = 10
  config.log_every = 4
  config.checkpoint_every = 8
  config.eval_batch_size = 100
  config.num_image_samples = 16
  return config

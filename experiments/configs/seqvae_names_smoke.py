"""seqvae_names.py on a few hundred names with tiny GRUs, sized to run in seconds."""
import os

from vaejax.config import load_config_file


def get_config():
  config = load_config_file(os.path.join(os.path.dirname(__file__), "seqvae_names.py"))
  config.train_subset = 512
  config.eval_subset = 200
  config.batch_size = 64
  config.epochs = 2
  config.rnn_hidden = 32
  config.embed_dim = 16
  config.latent_dim = 4
  config.kl_warmup_steps = 10
  config.eval_importance_samples = 10
  config.log_every = 4
  config.checkpoint_every = 8
  config.eval_batch_size = 100
  config.num_image_samples = 16
  return config

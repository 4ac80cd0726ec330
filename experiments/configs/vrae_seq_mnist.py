"""Sequential MNIST with a variational recurrent autoencoder (Fabius & van
Amersfoort 2014): each binarised image is 28 steps of 28 Bernoulli pixels (its
rows). A GRU encoder reads the rows; z sets the initial state of a GRU decoder
that reads the previous row (decoder_input='none' gives a decoder driven by z
alone, whose rows are independent given z).

The test NLL is importance-sampled with k = 1000 on 2,000 evenly spaced test
digits (eval_subset; k x N decoder passes of 28 steps each cost minutes on a
CPU); the MLP VAE to set beside it is the same command with
--config.model=vae (the default MLP, one hidden layer of 500 units; the sequence keys
here are at their defaults). experiments/results/README.md gives both commands.
"""
from vaejax.config import base_config


def get_config():
  config = base_config()
  config.dataset = "binarized_mnist"
  config.model = "seqvae"
  config.rnn_cell = "gru"
  config.rnn_hidden = 256
  config.latent_dim = 32
  config.decoder_input = "previous"
  config.latent_feed = "initial"
  config.batch_size = 128
  config.learning_rate = 1e-3
  config.grad_clip_norm = 5.0
  config.epochs = 20
  config.eval_subset = 2000
  config.eval_importance_samples = 1000
  config.eval_collapse_metrics = True
  config.log_every = 200
  config.checkpoint_every = 2000
  return config

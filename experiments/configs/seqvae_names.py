"""The sentence VAE (Bowman et al. 2016) on the census surnames (`names` package),
one character per step: GRU encoder and decoder, z setting the decoder's initial
state, with Bowman's two fixes against posterior collapse, logistic KL annealing
and word (here character) dropout.

The rows of Bowman et al.'s table are keys of this config:
  sentence VAE, fixes on      (these defaults)
  sentence VAE, no fixes      --config.kl_warmup_steps=0 --config.word_dropout=0
  RNN language model          --config.latent_dim=0 --config.kl_warmup_steps=0
                              --config.word_dropout=0
Test NLL is importance-sampled (k = eval_importance_samples) with perplexity per
character (EOS included); the collapse metrics (active units, I(x; z)) and the
decoder's accuracy with z replaced by a prior draw are in summary.json;
samples.txt holds prior samples, reconstructions and homotopies.
"""
from vaejax.config import base_config


def get_config():
  config = base_config()
  config.dataset = "names"
  config.model = "seqvae"
  config.rnn_cell = "gru"
  config.rnn_hidden = 256
  config.embed_dim = 64
  config.latent_dim = 16
  config.decoder_input = "previous"
  config.latent_feed = "initial"
  config.word_dropout = 0.3
  config.kl_warmup_steps = 5000
  config.kl_warmup_shape = "sigmoid"
  config.batch_size = 128
  config.learning_rate = 1e-3
  config.grad_clip_norm = 5.0
  config.epochs = 20
  config.eval_importance_samples = 500
  config.eval_collapse_metrics = True
  config.eval_batch_size = 1000
  config.log_every = 200
  config.checkpoint_every = 2000
  return config

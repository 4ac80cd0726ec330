"""VQ-VAE (van den Oord et al. 2017) on statically binarised MNIST (Larochelle's
split), K = 512 codes of dimension 16 on a 7 x 7 grid, EMA codebook (decay 0.99)
with restarts of codes unused for 100 batches; Bernoulli likelihood, beta = 0.25.
For the plain codebook-loss version (the issue's comparison):
--config.codebook_update=loss --config.restart_after_steps=0.

  python experiments/train.py --config experiments/configs/vqvae_mnist.py \
      --workdir runs/vqvae_mnist --config.data_dir=../shared/data

summary.json: test neg_elbo (recon + 49 log 512 nats: the bound under the uniform
training prior), test codes_used and perplexity over the whole test set.
"""
from vaejax.config import base_config


def get_config():
  config = base_config()
  config.dataset = "binarized_mnist"
  config.model = "vqvae"
  config.objective = "vq"
  config.estimator = "straight_through"
  config.architecture = "conv"
  config.hidden = (32, 64)
  config.num_codes = 512
  config.code_dim = 16
  config.commitment_cost = 0.25
  config.codebook_update = "ema"
  config.ema_decay = 0.99
  config.restart_after_steps = 100
  config.batch_size = 128
  config.learning_rate = 1e-3
  config.epochs = 20
  config.log_every = 390
  config.checkpoint_every = 1950
  return config

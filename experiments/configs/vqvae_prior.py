"""Stage 2 of the VQ-VAE: a causal-transformer prior (2 layers, width 64, 4 heads)
fitted by maximum likelihood to the 7 x 7 codes that a trained VQ-VAE's frozen
encoder gives the training images (binarised MNIST); pictures are prior samples
through the frozen decoder. Its size: prior_width, prior_depth, prior_heads;
prior_dropout regularises a big one (dropout in training only: the train prior_nll
is measured under it, the test one without).

  python experiments/train.py --config experiments/configs/vqvae_prior.py \
      --workdir runs/vqvae_prior --config.vqvae_workdir=runs/vqvae_mnist \
      --config.data_dir=../shared/data

summary.json: test neg_elbo = recon - log p(z_q(x)) nats, the bound on -log p(x)
with the learned prior (beside the uniform prior's recon + 49 log K in the VQ-VAE
run's summary), and prior_nll = -log p(z_q(x)).
"""
from vaejax.config import base_config


def get_config():
  config = base_config()
  config.dataset = "binarized_mnist"
  config.model = "vqvae_prior"
  config.objective = "code_prior"
  config.estimator = "maximum_likelihood"
  config.vqvae_workdir = ""  # required: the VQ-VAE run's workdir
  config.prior_width = 64
  config.prior_depth = 2
  config.prior_heads = 4
  config.batch_size = 128
  config.learning_rate = 1e-3
  config.epochs = 10
  config.log_every = 390
  config.checkpoint_every = 1950
  return config

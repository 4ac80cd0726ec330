"""beta-VAE latent traversals (Higgins et al. 2017): a VAE with 10-D z on
dynamically binarised MNIST (60k train), 784-500-10 MLPs, 30 epochs, the KL
weight warmed up linearly from 0 to beta over the first 10 epochs (so that a
large beta does not close every dimension before the decoder learns to use one).

beta = 1 is the plain VAE; beta = 8 keeps fewer, more disentangled dimensions
(larger KL each). Burgess et al. (2018)'s capacity control is the alternative to
a large beta: beta=1, kl_warmup_steps=0, capacity_max=C nats reached over
capacity_steps. Run beta = 1 and beta = 8, then compare their traversals:

  python3 experiments/train.py --config experiments/configs/beta_vae_traversal.py \\
      --workdir runs/beta1 --config.data_dir=../shared/data
  python3 experiments/train.py --config experiments/configs/beta_vae_traversal.py \\
      --workdir runs/beta8 --config.data_dir=../shared/data --config.beta=8
  # or capacity control instead of beta = 8:
  ... --workdir runs/cap25 --config.kl_warmup_steps=0 --config.capacity_max=25 \\
      --config.capacity_steps=9380
  python3 experiments/figures.py --figure=traversal --workdirs=runs/beta1,runs/beta8 \\
      --out figures/traversal
"""
from vaejax.config import base_config


def get_config():
  config = base_config()
  config.dataset = "mnist"
  config.dynamic_binarization = True
  config.model = "vae"
  config.hidden = (500,)
  config.latent_dim = 10
  config.beta = 1.0
  config.kl_warmup_steps = 4690  # about 10 epochs of 468 steps
  config.batch_size = 128
  config.learning_rate = 1e-3
  config.epochs = 30
  config.log_every = 468  # one epoch: 60000 // 128 steps
  config.checkpoint_every = 2340  # every 5 epochs
  return config

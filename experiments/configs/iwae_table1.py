"""Burda et al. (2015), Table 1, statically binarized MNIST, one stochastic layer:
784-200-200-50 tanh MLP, batch 20, Adam(b1=0.9, b2=0.999, eps=1e-4), learning rate
1e-3 * 10^(-i/7) for 3^i epochs, i = 0..7 (3280 epochs). Published test NLL (k=5000):
VAE 88.71, IWAE k=5 87.63, IWAE k=50 87.10.

  # the VAE row (k=1)
  python experiments/train.py --config experiments/configs/iwae_table1.py --workdir runs/table1_vae
  # the IWAE rows
  python experiments/train.py --config experiments/configs/iwae_table1.py --workdir runs/table1_k5 \
      --config.objective=iwae --config.num_samples=5
  # then: python experiments/evaluate.py --workdir runs/table1_vae --k 5000
"""
from vaejax.config import base_config


def get_config():
  config = base_config()
  config.dataset = "binarized_mnist"
  config.hidden = (200, 200)
  config.latent_dim = 50
  config.activation = "tanh"
  config.batch_size = 20
  config.learning_rate = 1e-3
  config.lr_schedule = "burda"
  config.adam_eps = 1e-4
  config.epochs = 3280
  config.log_every = 25_000  # ten epochs
  config.checkpoint_every = 25_000  # ten epochs: a killed run loses at most ~30 s of work
  return config

"""The 2-D latent demo (Kingma & Welling 2014, Fig. 4): a VAE with z in R^2 on
dynamically binarised MNIST (60k train), 784-512-256-2 MLPs (decoder mirrored),
20 epochs. Its posterior means of the test digits cluster by class inside the
N(0, I) bulk, so decoding a grid over [-3, 3]^2 shows every digit and prior draws
decode to digits.

Run it with ae_vs_vae_2d.py (the same network trained as a plain autoencoder):

  python3 experiments/train.py --config experiments/configs/vae_latent2d.py \\
      --workdir runs/vae_2d --config.data_dir=../shared/data
  python3 experiments/train.py --config experiments/configs/ae_vs_vae_2d.py \\
      --workdir runs/ae_2d --config.data_dir=../shared/data
  python3 experiments/figures.py --figure=ae_vs_vae --workdirs=runs/ae_2d,runs/vae_2d \\
      --out figures/ae_vs_vae
"""
from vaejax.config import base_config


def get_config():
  config = base_config()
  config.dataset = "mnist"
  config.dynamic_binarization = True
  config.model = "vae"
  config.hidden = (512, 256)
  config.latent_dim = 2
  config.batch_size = 128
  config.learning_rate = 1e-3
  config.epochs = 20
  config.log_every = 468  # one epoch: 60000 // 128 steps
  config.checkpoint_every = 2340  # every 5 epochs
  return config

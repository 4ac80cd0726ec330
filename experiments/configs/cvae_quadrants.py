"""Sohn et al. (2015)'s image completion on MNIST, as in the Pyro reproduction: given
1, 2 or 3 quadrants of a digit (bottom-left; left half; all but bottom-right),
model the missing pixels. CVAE: q(z|x, c), learned prior p(z|c), p(x_missing|z, c),
784-500-500 MLPs, 200-dim z. latent_dim=0 trains the deterministic NN baseline.

Protocol here: dynamically binarised MNIST (60k train), test on one fixed binary
draw of the 10k test digits, -log p(x_missing | x_observed) importance-sampled
with k = 1000 draws from q (test["nll"], nats over the missing pixels).

  python3 experiments/train.py --config experiments/configs/cvae_quadrants.py \\
      --workdir runs/cvae_q1 --config.data_dir=../shared/data --config.observed_quadrants=1
  ... --config.latent_dim=0 --workdir runs/nn_q1                      # the NN baseline
"""
from vaejax.config import base_config


def get_config():
  config = base_config()
  config.dataset = "mnist"
  config.dynamic_binarization = True
  config.model = "cvae"
  config.condition = "quadrants"
  config.observed_quadrants = 1
  config.prior = "learned"
  config.hidden = (500, 500)
  config.latent_dim = 200
  config.batch_size = 128
  config.learning_rate = 1e-3
  config.epochs = 30
  config.log_every = 468  # one epoch: 60000 // 128 steps
  config.checkpoint_every = 4680  # every 10 epochs
  config.eval_importance_samples = 1000
  config.num_image_samples = 16
  return config

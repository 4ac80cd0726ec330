"""The adversarial autoencoder of Makhzani et al. (2015) on MNIST with an 8-D
N(0, I) prior: 784-1000-1000-8 encoder, mirrored decoder, a 1000-1000
discriminator (their MNIST networks), dynamically binarised training on the
first 50,000 training images; the last 10,000 are the validation split on which
experiments/aae_report.py chooses the Parzen-window bandwidth (the paper's
protocol: its Table 1 reports 340 +- 2 nats on the MNIST test set).

  python3 experiments/train.py --config experiments/configs/aae_mnist.py \\
      --workdir runs/aae_mnist --config.data_dir=../shared/data
  python3 experiments/aae_report.py --runs aae=runs/aae_mnist --parzen aae \\
      --out runs/aae_report --data_dir ../shared/data
"""
from vaejax.config import base_config


def get_config():
  config = base_config()
  config.dataset = "mnist"
  config.dynamic_binarization = True
  config.validation_split = True
  config.model = "aae"
  config.objective = "aae"
  config.estimator = "adversarial"
  config.latent_dim = 8
  config.latent_prior = "gaussian"
  config.hidden = (1000, 1000)
  config.discriminator_hidden = (1000, 1000)
  config.batch_size = 100
  # One Adam per phase, beta1 = 0.5 as is usual for adversarial updates (aae_mixture2d.py).
  config.learning_rate = 1e-3
  config.discriminator_learning_rate = 1e-4
  config.generator_learning_rate = 1e-3
  config.adam_b1 = 0.5
  config.gradient_penalty = 1.0
  config.epochs = 20
  config.log_every = 500  # one epoch: 50000 // 100 steps
  config.checkpoint_every = 2500
  return config

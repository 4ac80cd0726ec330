"""The Wasserstein autoencoder with the MMD penalty (WAE-MMD, Tolstikhin et al. 2018)
on MNIST: the networks of aae_mnist.py without the discriminator; lambda = 10 and
the inverse multiquadratic kernel summed over the paper's widths
(vaejax.discrepancies), an 8-D N(0, I) prior; the Parzen bandwidth is chosen on
the validation split as for the AAE.

  python3 experiments/train.py --config experiments/configs/wae_mnist.py \\
      --workdir runs/wae_mnist --config.data_dir=../shared/data
"""
import os

from vaejax.config import load_config_file


def get_config():
  config = load_config_file(os.path.join(os.path.dirname(__file__), "aae_mnist.py"))
  config.model = "wae"
  config.objective = "wae"
  config.estimator = "mmd"
  config.mmd_weight = 10.0
  config.discriminator_hidden = (500, 500)  # the default: unused by the WAE
  config.discriminator_learning_rate = 0.0
  config.generator_learning_rate = 0.0
  config.adam_b1 = 0.9
  config.gradient_penalty = 0.0
  return config

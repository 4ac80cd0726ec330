"""MoPoE (mixture of the subsets' products of experts, Sutter et al. 2021) on the two image
modalities of mmvae_pairs.py, with its nets, latent and weights, so that the three
aggregations compare side by side (experiments/compare_multimodal.py).

  python3 experiments/train.py --config experiments/configs/mopoe_pairs.py \\
      --workdir runs/mopoe_pairs --config.data_dir=../shared/data
"""
import os

from vaejax.config import load_config_file


def get_config():
  config = load_config_file(os.path.join(os.path.dirname(__file__), "mmvae_pairs.py"))
  config.model = "mopoe"
  config.objective = "mopoe"
  config.estimator = "pathwise"
  config.num_samples = 1
  return config

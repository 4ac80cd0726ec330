"""MVAE (product of experts, sub-sampled training) on the two image
modalities of mmvae_pairs.py, with its nets, latent and weights, so that the three
aggregations compare side by side (experiments/compare_multimodal.py).

  python3 experiments/train.py --config experiments/configs/mvae_pairs.py \\
      --workdir runs/mvae_pairs --config.data_dir=../shared/data
"""
import os

from vaejax.config import load_config_file


def get_config():
  config = load_config_file(os.path.join(os.path.dirname(__file__), "mmvae_pairs.py"))
  config.model = "mvae"
  config.objective = "mvae"
  config.estimator = "pathwise"
  config.num_samples = 1
  return config

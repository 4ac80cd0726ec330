"""Gradient SNR and variance vs the number of importance samples K (Rainforth et al.
2018; Tucker et al. 2018), for IWAE, IWAE-STL and DReG (plus the ELBO's pathwise
and score-function estimators), on a binarized-MNIST VAE at init and after training,
and on the linear-Gaussian toy of Rainforth et al. near its optimum.

  python experiments/compare_estimators.py --config experiments/configs/snr_vs_k.py \
      --workdir runs/snr_vs_k --config.data_dir=../shared/data
"""
from vaejax.config import base_config


def get_config():
  config = base_config()
  config.mode = "snr_vs_k"
  config.dataset = "binarized_mnist"
  # The one-stochastic-layer architecture of Burda et al. (2015).
  config.hidden = (200, 200)
  config.latent_dim = 50
  config.activation = "tanh"
  config.batch_size = 100
  config.learning_rate = 1e-3
  # "objective/estimator" pairs measured at each K.
  config.estimators = ("iwae/pathwise", "iwae/stl", "iwae/dreg", "elbo/pathwise",
                       "elbo/score_function")
  config.ks = (1, 4, 16, 64)
  config.num_draws = 512  # independent gradient estimates per (estimator, K, checkpoint)
  config.snr_examples = 8  # the fixed minibatch each estimate is taken on
  # Training before the "trained" measurement (0 steps: skip it).
  config.train_steps = 10000
  config.train_estimator = "iwae/dreg"
  config.train_num_samples = 8
  config.train_subset = 0
  # Also measure on the Gaussian toy of Rainforth et al. (2018) with this many
  # dimensions (0: skip): q near the exact posterior, the regime of the
  # asymptotic results, beside the MNIST VAE whose importance weights are far
  # from uniform at K <= 64.
  config.linear_gaussian_dim = 20
  return config

"""The same VAE trained with each gradient estimator for a fixed budget: test
bounds vs steps and vs wall-clock, and gradient variance at each evaluation.

  python experiments/compare_estimators.py --config experiments/configs/estimator_curves.py \
      --workdir runs/estimator_curves --config.data_dir=../shared/data
"""
from vaejax.config import base_config


def get_config():
  config = base_config()
  config.mode = "curves"
  config.dataset = "binarized_mnist"
  config.hidden = (200, 200)
  config.latent_dim = 50
  config.activation = "tanh"
  config.batch_size = 64
  config.learning_rate = 1e-3
  config.num_samples = 5  # K for the IWAE-family estimators (the ELBO ones use 1)
  config.estimators = ("elbo/pathwise", "elbo/stl", "elbo/score_function:moving_average",
                       "elbo/score_function:learned", "iwae/pathwise", "iwae/stl",
                       "iwae/dreg", "iwae/vimco", "iwae/rws")
  config.train_steps = 3000
  config.eval_every = 500
  config.eval_subset = 2000
  config.variance_draws = 32  # gradient estimates per evaluation point
  config.snr_examples = 8
  return config

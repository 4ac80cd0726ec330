"""MMVAE on two image modalities that share only the digit class (Shi et al. 2019's
MNIST-SVHN experiment, offline): "image" is a dynamically binarised MNIST digit,
"image2" another writer's digit of the same class in colour on a texture
(vaejax.paired_digits; why it stands in for SVHN is said there). A mixture of the
two unimodal experts, the stratified IWAE bound with K = 30 draws per expert and
the DReG gradient (their MNIST-SVHN setting), 20-D z, one 400-unit layer per
net. The MNIST log-likelihood is weighted 3 (2352 / 784 pixels), as they weight
MNIST against SVHN by their pixel counts. Pass --config.estimator=pathwise for
the plain IWAE gradient, --config.num_samples=1 for the stratified ELBO. The
committed comparison ran --config.num_samples=4: at K = 4 an epoch took 165 s on
the 2-core CPU beside another run, and K = 30 needs 7.5 times the decoder passes
per step (a GPU's job).

  python3 experiments/train.py --config experiments/configs/mmvae_pairs.py \\
      --workdir runs/mmvae_pairs --config.data_dir=../shared/data
  python3 experiments/compare_multimodal.py --workdirs runs/mvae_pairs,runs/mmvae_pairs,\\
      runs/mopoe_pairs --classifier_dir runs/classifiers --out results/multimodal
"""
from vaejax.config import base_config


def get_config():
  config = base_config()
  config.dataset = "mnist"
  config.dynamic_binarization = True
  config.model = "mmvae"
  config.objective = "mmvae"
  config.estimator = "dreg"
  config.num_samples = 30
  config.modalities = ("image", "image2")
  config.modality_weights = (3.0, 1.0)
  config.image2_likelihood = "continuous_bernoulli"
  config.hidden = (400,)
  config.latent_dim = 20
  config.batch_size = 128
  config.learning_rate = 1e-3
  config.epochs = 10
  config.log_every = 468  # one epoch: 60000 // 128 steps
  config.checkpoint_every = 468
  config.num_image_samples = 64
  return config

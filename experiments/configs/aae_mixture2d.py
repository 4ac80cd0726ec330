"""The supervised adversarial autoencoder of Makhzani et al. (2015, Fig. 4 left): a
2-D code on dynamically binarised MNIST matched to a mixture of 10 Gaussians on a
circle, each digit sent to its own component (the label is fed to the
discriminator and the positive samples come from that digit's component).

Acceptance measure (summary.json test/component_accuracy): the share of test codes
whose nearest component is their digit's; test/mmd and test/sliced_wasserstein
measure the match to the prior (compare a VAE with the same prior:
experiments/aae_report.py). The unsupervised variant: --config.supervised=False.

  python3 experiments/train.py --config experiments/configs/aae_mixture2d.py \\
      --workdir runs/aae_mixture2d --config.data_dir=../shared/data
"""
from vaejax.config import base_config


def get_config():
  config = base_config()
  config.dataset = "mnist"
  config.dynamic_binarization = True
  config.model = "aae"
  config.objective = "aae"
  config.estimator = "adversarial"
  config.latent_dim = 2
  config.latent_prior = "mixture2d"
  config.supervised = True
  config.hidden = (512, 256)
  config.discriminator_hidden = (256, 256)
  # Larger batches place more codes, noisily: 86.3% (batch 32), 92.2% (100), 93.9% (500),
  # all 20 epochs; 92.8% (500), 94.6% and 94.6% (1000, seeds 0 and 1), 92.7% (2000), all
  # 40 epochs. At batch 1000, seed 0, 2026-12-01: 80 epochs 93.7% (93.7% at
  # epochs 60 and 70 too: a plateau, not noise), discriminator rate 2e-4 94.0%, a 512-512
  # discriminator 92.5%, generator rate 2e-3 79.7% and reconstruction rate 5e-4 74.2%
  # (the discriminator won both). In the 80-epoch run errors go to the ring neighbours and 11%
  # of test codes lie inside radius 3, where the prior puts ~2%. 2026-12-01, seed 0, all
  # rates under lr_schedule=cosine: 93.8% (40 epochs), 94.0% (60), 93.6% (generator rate
  # 1.5e-3), 94.0% (R1 gamma 0.1); the MMD to the prior falls 4-10x (0.033 -> 0.0035-0.0085)
  # but not the misplaced codes. This config (constant rates, 40 epochs, 94.6% at its last
  # epoch) with its params averaged over the last 2, 5, 10 or 20 epochs: 94.6%, 94.7%,
  # 93.9%, 94.1%, no gain. The discriminator does flag misplaced codes (logit -0.68
  # against 0.01 in place) and its pull points home (cosine 0.97) but is gentle
  # (experiments/results/aae_mnist/sweep_batch1000/cosine_60_epochs/diagnose_codes.txt).
  config.batch_size = 1000
  # One Adam per phase (vaejax.phases), beta1 = 0.5 as usual for adversarial updates,
  # and the R1 penalty on the discriminator (gamma 1). Measured 2026-12-01, share of
  # test codes in their own component, batch 100 and 20 epochs unless noted (92.2% and
  # 91.9% at seeds 0 and 1 with these settings):
  #   without R1: 92.8%, 84.7% (seed 1), 65.3% (lr_schedule=cosine, 30 epochs), 92.7%
  #     (30 epochs), 90.6% (epoch 50 of 100); stochastic_encoder 91.2%
  #   rates (reconstruction, discriminator, generator), without R1: (1e-3, 2e-4, 2e-4)
  #     beta1 0.9: 32.0%, the discriminator won; (1e-3, 1e-4, 1e-3) beta1 0.9: 79.4%;
  #     (5e-4, 5e-5, 5e-4): 49.7%; (1e-3, 1e-4,
  #     2e-3) with a 512-512 discriminator: 90.0%; (1e-3, 5e-4, 1e-3), 512-512: 92.2%;
  #     (5e-4, 1e-4, 1e-3): 60.0%; with R1: (5e-4, 1e-4, 1e-3) 76.8%; gamma 10: 90.5%;
  #     the paper's 1000-1000 encoder, decoder and discriminator: 89.8%; a one-centred
  #     penalty on interpolates of prior draws and codes instead of R1 (gamma 1, 10;
  #     a code change tried and not kept): 73.2%, 35.2%, the discriminator won
  config.learning_rate = 1e-3  # the reconstruction phase
  config.discriminator_learning_rate = 1e-4
  config.generator_learning_rate = 1e-3
  config.adam_b1 = 0.5
  config.gradient_penalty = 1.0
  config.epochs = 40
  config.log_every = 60  # one epoch: 60000 // 1000 steps
  config.checkpoint_every = 600
  return config

"""MVAE on MNIST image + label (Wu & Goodman 2018, sec. 5): one latent z for the
digit image and its class, a product of Gaussian experts with the prior expert,
trained on the joint ELBO plus each single-modality ELBO; their 64-D z and
512-512 MLPs, dynamically binarised MNIST (60k train), batch 100, 100 epochs.

lambda_label = 5 (the label's one log-probability would otherwise weigh nothing
beside 784 pixels). The paper's 50 gives the label decoder its own latent
dimensions, which an image-only posterior never fills: image -> label accuracy
after 5 epochs was 0.09 at lambda 1, 0.90 at 5, 0.80 at 10, 0.73 at 20 and 0.60
at 50 (0.59 after 30 epochs); at lambda 50 a KL warm-up did not help (0.49 when
its 10 epochs ended). At lambda 5 it was 0.943 after 30 epochs, 0.957 after 100.

summary.json gets image_to_label_accuracy (the label decoded at q(z|image)'s mean);
experiments/compare_multimodal.py adds the classifier-based coherences.

  python3 experiments/train.py --config experiments/configs/mvae_mnist_label.py \\
      --workdir runs/mvae_mnist_label --config.data_dir=../shared/data
"""
from vaejax.config import base_config


def get_config():
  config = base_config()
  config.dataset = "mnist"
  config.dynamic_binarization = True
  config.model = "mvae"
  config.objective = "mvae"
  config.estimator = "pathwise"
  config.modalities = ("image", "label")
  config.modality_weights = (1.0, 5.0)
  config.hidden = (512, 512)
  config.latent_dim = 64
  config.batch_size = 100
  config.learning_rate = 1e-3
  config.epochs = 100
  config.log_every = 600  # one epoch
  config.checkpoint_every = 3000  # every 5 epochs
  config.num_image_samples = 100
  return config

"""Class-conditioned CVAE on MNIST (Sohn et al. 2015; the label conditioning of
Kingma et al. 2014's M2 generative model without its classifier): q(z|x, y),
p(x|z, y), p(z) = N(0, I), one-hot digit y appended to the encoder's input and to z.
784-500-10 MLPs, dynamically binarised MNIST (60k train), 20 epochs.

A 10-D z: enough that each column of the class grid is a distinct handwriting
style (slant, width, stroke), small enough that N(0, I) draws decode cleanly.
Test metrics are on one fixed binary draw of the 10k test digits; add
--config.eval_importance_samples=1000 for the importance-sampled -log p(x|y).

  python3 experiments/train.py --config experiments/configs/cvae_mnist.py \\
      --workdir runs/cvae_mnist --config.data_dir=../shared/data
  python3 experiments/figures.py --figure=class_grid --workdirs=runs/cvae_mnist \\
      --out figures/class_grid
"""
from vaejax.config import base_config


def get_config():
  config = base_config()
  config.dataset = "mnist"
  config.dynamic_binarization = True
  config.model = "cvae"
  config.condition = "label"
  config.prior = "standard_normal"
  config.hidden = (500,)
  config.latent_dim = 10
  config.batch_size = 128
  config.learning_rate = 1e-3
  config.epochs = 20
  config.log_every = 468  # one epoch: 60000 // 128 steps
  config.checkpoint_every = 2340  # every 5 epochs
  config.num_image_samples = 100  # class_samples.png: 10 draws per digit
  return config

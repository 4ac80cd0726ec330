"""The work of Flax's own VAE example: 784-500-20 MLP, ReLU, Bernoulli decoder,
Adam 1e-3, batch 128, 10 epochs on statically binarised MNIST (50k train)."""
from vaejax.config import base_config


def get_config():
  config = base_config()
  config.dataset = "binarized_mnist"
  config.hidden = (500,)
  config.latent_dim = 20
  config.batch_size = 128
  config.learning_rate = 1e-3
  config.epochs = 10
  return config

"""aae_mnist.py on a slice of MNIST, sized to run in seconds."""
import os

from vaejax.config import smoke_config


def get_config():
  return smoke_config(os.path.join(os.path.dirname(__file__), "aae_mnist.py"),
                      discriminator_hidden=(32,))

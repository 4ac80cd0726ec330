"""The ladder VAE (Sonderby et al. 2016) on Burda et al.'s two-layer protocol, for the
comparison issue #15 asks for: the same generative model, data and schedule as
hvae2_iwae_table.py (dynamically binarised MNIST, 784-200-200-100 (z1) -100-100-50
(z2) tanh MLPs, batch 20, Adam eps 1e-4, the 3^i schedule), with ladder inference
(bottom-up rungs of 200, 200 and 100, 100; top-down precision-weighted merges) and a
linear KL warm-up over the first 200 epochs (Sonderby et al.'s schedule; 600,000
steps). No batch norm (module docstring of vaejax/models/ladder.py). The KL is
Monte-Carlo here; --config.analytic_kl=True uses each layer's KL in closed form given
the layers above (LadderVAE.conditional_kl_per_dim), and with it --config.free_bits=L
floors every unit's KL at L nats, per example and at the draw of the layers above
(Kingma et al. 2016 floor the minibatch mean of groups of units instead).

  python experiments/train.py --config experiments/configs/ladder_vae.py \
      --workdir runs/ladder_vae --config.data_dir=../shared/data
  # then: python experiments/evaluate.py --workdir runs/ladder_vae --k 5000
  # against hvae2_iwae_table.py trained for the same epochs (--config.epochs=N on both)
"""
import os

from vaejax.config import load_config_file


def get_config():
  config = load_config_file(os.path.join(os.path.dirname(__file__), "hvae2_iwae_table.py"))
  config.model = "ladder"
  config.kl_warmup_steps = 200 * 3000  # 200 epochs of 3,000 steps
  return config

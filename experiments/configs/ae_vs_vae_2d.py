"""vae_latent2d.py's network trained as a deterministic autoencoder
(objective='ae': -log p(x | z = encoder mean), no KL, no sampling), the
counterpart of the VAE in the AE-vs-VAE latent space figure: nothing ties the
AE's codes to N(0, I), so N(0, I) draws decoded by the AE land wherever its code
space happens to sit (results: experiments/results/model_families_h200/). Same data, architecture, optimiser and epochs as vae_latent2d.py; run
both:

  python3 experiments/train.py --config experiments/configs/vae_latent2d.py \\
      --workdir runs/vae_2d --config.data_dir=../shared/data
  python3 experiments/train.py --config experiments/configs/ae_vs_vae_2d.py \\
      --workdir runs/ae_2d --config.data_dir=../shared/data
  python3 experiments/figures.py --figure=ae_vs_vae --workdirs=runs/ae_2d,runs/vae_2d \\
      --out figures/ae_vs_vae
"""
import os

from vaejax.config import load_config_file


def get_config():
  config = load_config_file(os.path.join(os.path.dirname(__file__), "vae_latent2d.py"))
  config.objective = "ae"
  return config

"""Where a supervised mixture AAE's misplaced test codes lie, and what its
discriminator says about them. Output for this run: diagnose_codes.txt.

  python experiments/train.py --config experiments/configs/aae_mixture2d.py --workdir W \
      --config.data_dir=../shared/data --config.lr_schedule=cosine --config.epochs=60
  python experiments/results/aae_mnist/sweep_batch1000/cosine_60_epochs/diagnose_codes.py W DATA_DIR
"""
import sys

import jax
import numpy as np

import vaejax

run = vaejax.load_run(sys.argv[1])
model, params = run.model, run.params
test = run.examples("test", data_dir=sys.argv[2])
codes = jax.jit(jax.vmap(lambda x: model.posterior(params, x).mean))(test)
labels = np.asarray(test["label"])
prior = model.latent_prior
wrong = np.asarray(prior.component(codes)) != labels
radius = np.linalg.norm(np.asarray(codes), axis=1)
print(f"own component {1 - wrong.mean():.4f}; codes inside radius 3 {np.mean(radius < 3):.4f} "
      f"(misplaced {np.mean(wrong & (radius < 3)):.4f}); "
      f"misplaced outside {np.mean(wrong & (radius >= 3)):.4f}")
offset = (np.asarray(prior.component(codes)) - labels) % 10
ring_distance = np.minimum(offset, 10 - offset)[wrong]
print("misplaced codes by ring distance 1..5:",
      np.bincount(ring_distance, minlength=6)[1:].tolist())
by_digit = [1 - wrong[labels == d].mean() for d in range(10)]
print("own-component share by digit:", np.round(by_digit, 3).tolist())

logit = jax.jit(jax.vmap(lambda z, x: model._logit(params, z, x)))
draws = jax.vmap(lambda x, k: model.prior(params, x).sample(key=k))(
    test, jax.random.split(jax.random.PRNGKey(0), len(labels)))
real, fake = np.asarray(logit(draws, test)), np.asarray(logit(codes, test))
print(f"discriminator logit: prior draws {real.mean():.2f}, codes in their component "
      f"{fake[~wrong].mean():.2f}, misplaced codes {fake[wrong].mean():.2f} "
      f"(share > 0: {np.mean(fake[wrong] > 0):.3f})")
# The generator's pull on each code: d log D(z, y) / dz, against the way to its own mean.
pull = np.asarray(jax.jit(jax.vmap(jax.grad(
    lambda z, x: jax.nn.log_sigmoid(model._logit(params, z, x)))))(codes, test))
home = np.asarray(prior.means)[labels] - np.asarray(codes)
cosine = (pull * home).sum(1) / (np.linalg.norm(pull, axis=1) * np.linalg.norm(home, axis=1) + 1e-9)
print(f"|d log D / dz|: misplaced {np.median(np.linalg.norm(pull[wrong], axis=1)):.3f}, in place "
      f"{np.median(np.linalg.norm(pull[~wrong], axis=1)):.3f} (medians); cosine of the misplaced "
      f"codes' pull with the way home: median {np.median(cosine[wrong]):.2f}")

"""How much of a VQ-VAE's code is binarisation noise?

  python experiments/vqvae_code_noise.py --workdir runs/vqvae_ema --data_dir ../shared/data

Binarised MNIST is MNIST's grey digits binarised by Bernoulli draws. This script
draws two binarisations of the same --num MNIST test digits (evenly spaced),
encodes both with the run's frozen encoder and reports the share of grid
positions whose nearest code differs between them: code that follows the noise
rather than the digit, and that a prior over codes must model all the same.
Also, split by whether the position's patch of the grey digit has ink, and the
squared distance between the two codebook vectors where they differ, relative to
that between two codes drawn independently from the same position's code
frequencies.
Writes code_noise.json into --out (default WORKDIR) and prints it.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS


def _define_flags() -> None:
  """The command line's flags: defined only when run as a script, so that tests can
  import noise_changed_codes beside other scripts that define the same names."""
  flags.DEFINE_string("workdir", None, "A trained VQ-VAE run (model vqvae).")
  flags.DEFINE_string("data_dir", None, "MNIST files (default: the run's data_dir, else "
                      "$VAEJAX_DATA_DIR).")
  flags.DEFINE_integer("num", 1000, "MNIST test digits, evenly spaced.")
  flags.DEFINE_integer("seed", 0, "Seed of the two binarisations.")
  flags.DEFINE_string("out", None, "Output folder (default WORKDIR).")
  flags.mark_flags_as_required(["workdir"])


def noise_changed_codes(encode, grey, *, key, grid_shape, embedding=None) -> dict:
  """Codes of two Bernoulli(grey) binarisations of the same images, compared.

  encode: float images [N, H, W, C] in {0, 1} -> codes [N, P] (P = rows * cols of
  grid_shape, raster order; each position reads an (H / rows) x (W / cols) patch).
  grey: [N, H, W, C] in [0, 1]. embedding: [K, D] codebook vectors, optional.
  Returns shares in [0, 1]: "changed" over all positions, "changed_ink" and
  "changed_blank" over positions whose grey patch has / lacks any ink (None where
  there are none), "ink_share"; with embedding also "relative_distance": the mean
  ||e_a - e_b||^2 over changed positions, over the mean at those same positions of
  E||e_i - e_j||^2 for two codes drawn independently from that position's code
  frequencies (both draws pooled); None when nothing changed.
  """
  import jax
  import numpy as np
  key_a, key_b = jax.random.split(key)
  draw = lambda k: jax.random.bernoulli(k, grey).astype(np.float32)  # noqa: E731
  codes_a, codes_b = np.asarray(encode(draw(key_a))), np.asarray(encode(draw(key_b)))
  rows, cols = grid_shape
  n, height, width = grey.shape[:3]
  patches = np.asarray(grey).reshape(n, rows, height // rows, cols, width // cols, -1)
  ink = (patches.max(axis=(2, 4, 5)) > 0).reshape(n, rows * cols)
  changed = codes_a != codes_b
  share = lambda where: float(changed[where].mean()) if where.any() else None  # noqa: E731
  result = {"num_images": int(n), "positions": int(rows * cols),
            "changed": float(changed.mean()), "ink_share": float(ink.mean()),
            "changed_ink": share(ink), "changed_blank": share(~ink)}
  if embedding is not None:
    e = np.asarray(embedding, np.float64)
    both = np.concatenate([codes_a, codes_b])  # [2N, P]
    # Per position: E||e_i - e_j||^2 = 2 (E||e||^2 - ||E e||^2) for i, j ~ freq iid.
    freq = np.stack([np.bincount(both[:, p], minlength=len(e)) for p in range(rows * cols)])
    freq = freq / len(both)  # [P, K]
    baseline = 2 * (freq @ np.sum(e ** 2, axis=-1) - np.sum((freq @ e) ** 2, axis=-1))  # [P]
    moved = np.sum((e[codes_a] - e[codes_b]) ** 2, axis=-1)  # [N, P]
    result["relative_distance"] = (float(moved[changed].mean()
                                         / np.broadcast_to(baseline, changed.shape)[changed].mean())
                                   if changed.any() else None)
  return result


def main(argv):
  del argv
  import jax
  import numpy as np
  import vaejax
  from vaejax import checkpoint, data
  from vaejax.builders import read_run_config
  try:
    if FLAGS.num < 1:
      raise ValueError(f"--num must be >= 1, got {FLAGS.num}")
    stage1 = read_run_config(FLAGS.workdir)  # before the restore's logging
    if stage1.model != "vqvae":
      raise ValueError(f"{FLAGS.workdir} holds a model={stage1.model!r} run, not a VQ-VAE")
    test = data.load("mnist", "test", FLAGS.data_dir or stage1.data_dir or None)
    run = vaejax.load_run(FLAGS.workdir)
  except (ValueError, data.DataError, OSError, checkpoint.CheckpointError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  index = np.linspace(0, len(test) - 1, min(FLAGS.num, len(test))).astype(int)
  grey = test.images[index].astype(np.float32) / 255.0
  result = noise_changed_codes(lambda x: run.encode(x).mean, grey, key=jax.random.PRNGKey(FLAGS.seed),
                               grid_shape=run.model.grid_shape,
                               embedding=run.model.embedding(run.params))
  result.update(workdir=FLAGS.workdir, step=run.step, seed=FLAGS.seed,
                codebook_update=run.config.codebook_update, num_codes=run.config.num_codes)
  out = FLAGS.out or FLAGS.workdir
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, "code_noise.json"), "w") as f:
    json.dump(result, f, indent=1)
  print(json.dumps(result, indent=1))


if __name__ == "__main__":
  _define_flags()
  app.run(main)

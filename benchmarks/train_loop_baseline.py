"""vaejax's on-device epoch runner vs a naive Python training loop, side by side.

Both train the same model (default: the vae_flax_reference config) with the same
jitted gradient + Adam step on binarized MNIST. The naive loop is the usual
tutorial shape: a host-side permutation, each batch sliced and converted to
float32 on the host and sent to the device, one dispatch per step, no donation.
vaejax keeps the uint8 data set on device and runs a whole epoch per dispatch.
Epochs alternate between the two (median of --repeats), so machine noise hits
both alike.

  python benchmarks/train_loop_baseline.py --data_dir ../shared/data --out DIR
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from vaejax import data, experiment, objectives, training  # noqa: E402

import common  # noqa: E402  (benchmarks/common.py)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--data_dir", default=None, help="folder with the canonical files "
                      "(default: $VAEJAX_DATA_DIR)")
  parser.add_argument("--batch_size", type=int, default=128)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--out", default="benchmarks/results/tmp")
  args = parser.parse_args()

  sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "experiments", "configs"))
  import vae_flax_reference
  config = vae_flax_reference.get_config()
  config.batch_size = args.batch_size
  train_set = data.load("binarized_mnist", "train", args.data_dir)
  model = experiment.build_model(config, train_set.images.shape[1:])
  estimator = experiment.build_estimator(config)
  optimizer = experiment.build_optimizer(config, estimator)
  loss_fn = objectives.make_batch_loss(model, estimator.per_example)
  step_fn = training.make_train_step(loss_fn, optimizer, training.make_preprocess(1, False))
  init = lambda: training.create_train_state(  # noqa: E731
      model.init(jax.random.PRNGKey(0)), optimizer, key=jax.random.PRNGKey(1))
  steps = len(train_set) // args.batch_size

  naive_step = jax.jit(step_fn)
  host_images = train_set.images

  def naive_epoch(state, epoch):
    perm = np.random.default_rng(epoch).permutation(len(host_images))
    for i in range(steps):
      batch = host_images[perm[i * args.batch_size:(i + 1) * args.batch_size]]
      state, metrics = naive_step(state, jnp.asarray(batch))
    jax.block_until_ready(state)
    return state

  chunk = jax.jit(training.make_train_chunk(step_fn, args.batch_size), donate_argnums=0)
  device_images = jnp.asarray(train_set.images)

  def vaejax_epoch(state, epoch):
    perm = jax.random.permutation(jax.random.PRNGKey(epoch), len(train_set))
    state, sums = chunk(state, device_images, perm, np.int32(0), np.int32(steps))
    jax.block_until_ready(state)
    return state

  impls = {"naive_python_loop": naive_epoch, "vaejax_epoch_per_dispatch": vaejax_epoch}
  states = {name: init() for name in impls}
  for name, fn in impls.items():  # warm-up: compile outside the timings
    states[name] = fn(states[name], 0)
  seconds = {name: [] for name in impls}
  for r in range(args.repeats):
    for name, fn in impls.items():
      t = time.perf_counter()
      states[name] = fn(states[name], r + 1)
      seconds[name].append(time.perf_counter() - t)

  examples = steps * args.batch_size
  rows = [{"impl": name, "batch_size": args.batch_size, "steps_per_epoch": steps,
           "median_epoch_seconds": statistics.median(s),
           "examples_per_sec": examples / statistics.median(s), "epoch_seconds": s}
          for name, s in seconds.items()]
  ratio = rows[1]["examples_per_sec"] / rows[0]["examples_per_sec"]
  table = ["| impl | batch | median epoch s | examples/s |", "|---|---|---|---|"]
  table += [f"| {r['impl']} | {r['batch_size']} | {r['median_epoch_seconds']:.3f} | "
            f"{r['examples_per_sec']:.0f} |" for r in rows]
  table.append(f"\nvaejax / naive: {ratio:.2f}x (median of {args.repeats} alternating epochs, "
               f"{common.machine()['date']}, {jax.default_backend()}, {os.cpu_count()} cores)")
  common.write(args.out, "train_loop_baseline", {"config": "vae_flax_reference", "rows": rows,
                                                 "speedup_vaejax_over_naive": ratio}, table)

if __name__ == "__main__":
  main()

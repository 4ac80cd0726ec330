"""Per-step dispatch overhead of parallel = none | pmap | sharding.

A deliberately tiny model (so compute is negligible) is trained with one step
per dispatch and with many steps per dispatch, the host waiting for each
dispatch; the time per step is mostly the runtime's overhead: launching the
program, the host round trip, and for pmap/sharding the cross-device
all-reduce. Modes are interleaved, medians reported.

  XLA_FLAGS=--xla_force_host_platform_device_count=8 \\
      python benchmarks/dispatch_overhead.py --out benchmarks/results/cpu-2core
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from vaejax import estimators, models, objectives, parallel, training  # noqa: E402

import common  # noqa: E402  (benchmarks/common.py)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--batch_size", type=int, default=64)
  parser.add_argument("--steps", type=int, default=200, help="steps per measurement")
  parser.add_argument("--chunk", type=int, default=100, help="steps per dispatch, 'many' case")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--out", default="benchmarks/results/tmp")
  args = parser.parse_args()

  model = models.make_vae(architecture="mlp", image_shape=(8, 8, 1), latent_dim=2, hidden=(16,))
  optimizer = optax.adam(1e-3)
  loss_fn = objectives.make_batch_loss(model, estimators.make_estimator("elbo").per_example)
  images = np.asarray(jax.random.bernoulli(jax.random.PRNGKey(0), 0.3, (4096, 8, 8, 1)), np.uint8)
  n_batches = len(images) // args.batch_size
  runs = {}
  for mode in parallel.MODES:
    runner = parallel.make_runner(mode, loss_fn=loss_fn, optimizer=optimizer,
                                  preprocess=training.make_preprocess(1, False),
                                  batch_size=args.batch_size)
    state = runner.put_state(training.create_train_state(
        model.init(jax.random.PRNGKey(1)), optimizer, key=jax.random.PRNGKey(2)))
    runs[mode] = {"runner": runner, "state": state, "data": runner.put_data(images),
                  "perm": runner.put_data(np.arange(len(images), dtype=np.int32))}

  def measure(mode, per_dispatch):
    r = runs[mode]
    done, t = 0, time.perf_counter()
    while done < args.steps:
      n = min(per_dispatch, args.steps - done)
      first = done % (n_batches - n + 1)
      r["state"], sums = r["runner"].chunk(r["state"], r["data"], r["perm"], np.int32(first),
                                           np.int32(n))
      # Host sync after every dispatch, as the train loop does at each logging point.
      # (Also needed here: with many all-reduce programs queued at once, XLA:CPU's
      # faked devices can deadlock in the collective rendezvous.)
      r["runner"].get_metrics(r["state"].step)
      done += n
    return (time.perf_counter() - t) / args.steps

  cases = [(m, k) for m in parallel.MODES for k in (1, args.chunk)]
  for case in cases:  # warm-up: compile
    measure(*case)
  times = {case: [] for case in cases}
  for _ in range(args.repeats):
    for case in cases:
      times[case].append(measure(*case))
  rows = [{"parallel": m, "devices": runs[m]["runner"].num_devices, "steps_per_dispatch": k,
           "median_us_per_step": 1e6 * statistics.median(v), "us_per_step": [1e6 * x for x in v]}
          for (m, k), v in times.items()]
  lines = ["| parallel | devices | steps/dispatch | median us/step |", "|---|---|---|---|"]
  lines += [f"| {r['parallel']} | {r['devices']} | {r['steps_per_dispatch']} | "
            f"{r['median_us_per_step']:.0f} |" for r in rows]
  lines.append(f"\n{common.machine()['date']}, {jax.default_backend()}, {jax.device_count()} "
               f"devices, {os.cpu_count()} cores, jax {jax.__version__}, median of {args.repeats}")
  common.write(args.out, "dispatch_overhead", {
      "batch_size": args.batch_size, "model": "8x8 input, 16 hidden, 2 latent (compute ~0)",
      "rows": rows}, lines)

if __name__ == "__main__":
  main()

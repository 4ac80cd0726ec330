"""Aggregate train-step throughput of R replicas in one program against one model.

Times the library's replicated chunk runner (`parallel.make_runner(replicas=...)`,
the step vmapped over a leading replica axis) for R = 1 (the plain single-model
runner) and each R asked for, interleaved block by block in one process:
aggregate examples/s = R * batch * steps / second, median over `--repeats`
blocks; the ratio is against one model measured beside it.

  python benchmarks/replicas.py --models reference,iwae_table1 --batch-sizes 20,128 \
      --replicas 1,2,4,8,16 --out DIR
writes DIR/replicas.json, DIR/replicas.md and DIR/replicas.png.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from vaejax import builders, objectives, parallel, replicas, training  # noqa: E402

import common  # noqa: E402
import step_throughput  # noqa: E402


class ReplicaCase(step_throughput.ChunkCase):
  """R replicas (R = 1: the single-model runner) of one config, compiled."""

  def __init__(self, config, images, num_replicas: int):
    model = builders.build_model(config, images.shape[1:])
    estimator = builders.build_estimator(config)
    optimizer = builders.build_optimizer(config, estimator)
    states = [training.create_train_state(model.init(jax.random.PRNGKey(r)), optimizer,
                                          key=jax.random.PRNGKey(100 + r))
              for r in range(num_replicas)]
    spec = None
    if num_replicas > 1:
      build = lambda hp: (objectives.make_batch_loss(model, estimator.per_example),  # noqa: E731
                          optimizer)
      spec = parallel.Replicas(num_replicas, {}, build)
    self.runner = parallel.make_runner(
        "none", loss_fn=objectives.make_batch_loss(model, estimator.per_example),
        optimizer=optimizer, preprocess=training.make_preprocess(1, False),
        batch_size=config.batch_size, max_consecutive_skips=config.max_consecutive_skips,
        replicas=spec)
    self.state = self.runner.put_state(states[0] if num_replicas == 1 else replicas.stack(states))
    self.data = self.runner.put_data(images)
    rng = np.random.default_rng(0)
    perms = [rng.permutation(len(images)) for _ in range(num_replicas)]
    self.perm = self.runner.put_data(perms[0] if num_replicas == 1 else np.stack(perms))
    self.compiled = self.runner.chunk.lower(self.state, self.data, self.perm, np.int32(0),
                                            np.int32(1)).compile()
    self.steps_per_epoch = len(images) // config.batch_size
    self.position = 0


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--models", default="reference,iwae_table1")
  p.add_argument("--replicas", default="1,2,4,8,16")
  p.add_argument("--dtype", default="float32")
  p.add_argument("--data-dir", default=None)
  common.add_timing_args(p, repeats=5)
  args = p.parse_args()
  images, source = step_throughput.load_images(args.data_dir)
  records = []
  for model in args.models.split(","):
    for batch_size in [int(b) for b in args.batch_sizes.split(",")]:
      config = step_throughput.build_config(model, "elbo", batch_size, args.dtype, "none")
      cases = {r: ReplicaCase(config, images, r) for r in
               sorted({1, *[int(r) for r in args.replicas.split(",")]})}
      runs = {r: (lambda n, c=c: c.run(n, args.steps_per_dispatch)) for r, c in cases.items()}
      steps = {r: step_throughput.calibrate(run, args.block_seconds) for r, run in runs.items()}
      rates = common.interleaved_rates(runs, steps, batch_size, args.repeats)
      one = statistics.median(rates[1])
      for r, per_block in rates.items():
        median = statistics.median(per_block) * r  # aggregate over the replicas
        records.append({"model": model, "batch_size": batch_size, "replicas": r,
                        "examples_per_sec": median, "vs_one_model": median / one,
                        "blocks": [x * r for x in per_block], "steps_per_block": steps[r]})
      print(f"{model} batch {batch_size}: done", flush=True)
  table = ["| model | batch | replicas | aggregate examples/s | vs one model |",
           "|---|---|---|---|---|"]
  table += [f"| {r['model']} | {r['batch_size']} | {r['replicas']} | "
            f"{r['examples_per_sec']:.0f} | {r['vs_one_model']:.2f}x |" for r in records]
  common.write(args.out, "replicas", {"records": records, "dtype": args.dtype}, table,
               {"data": source})
  plot(records, os.path.join(args.out, "replicas.png"))


def plot(records, path: str) -> None:
  try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
  except ImportError:
    return
  fig, ax = plt.subplots(figsize=(6, 4))
  for key in sorted({(r["model"], r["batch_size"]) for r in records}):
    points = sorted((r["replicas"], r["vs_one_model"]) for r in records
                    if (r["model"], r["batch_size"]) == key)
    ax.plot(*zip(*points), marker="o", label=f"{key[0]} batch {key[1]}")
  ax.set(xscale="log", xlabel="replicas R", ylabel="aggregate examples/s / one model",
         title="R models in one program")
  ax.axhline(1.0, color="grey", lw=0.5)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


if __name__ == "__main__":
  main()

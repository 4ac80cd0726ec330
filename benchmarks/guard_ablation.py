"""What the non-finite-update guard costs: the train step with the and-reduced
isfinite check (the previous guard), the float-sum check (`training._all_finite`
now), and no guard at all, timed side by side in one process (interleaved
blocks, median).

  python benchmarks/guard_ablation.py --models reference,iwae_table1 --batch-sizes 20,128,1024 \
      --out benchmarks/results/cpu-2core/guard_ablation
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import common  # noqa: E402
import step_throughput  # noqa: E402
from vaejax import training  # noqa: E402


def and_reduced_isfinite(tree) -> jax.Array:
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)]))


LIBRARY_GUARD = training._all_finite


def float_sum_barrier(tree) -> jax.Array:
  return jax.lax.optimization_barrier(LIBRARY_GUARD(tree))


GUARDS = {"and_isfinite": and_reduced_isfinite, "float_sum": LIBRARY_GUARD,
          "float_sum_barrier": float_sum_barrier,
          "none": lambda tree: jnp.bool_(True)}


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--models", default="reference,iwae_table1")
  p.add_argument("--batch-sizes", default="20,128,1024")
  p.add_argument("--steps-per-dispatch", type=int, default=100)
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--block-seconds", type=float, default=1.0)
  p.add_argument("--out", required=True)
  args = p.parse_args()
  images = (np.random.default_rng(0).random((10000, 28, 28, 1)) < 0.3).astype(np.uint8)
  records = []
  for model in args.models.split(","):
    for batch_size in (int(b) for b in args.batch_sizes.split(",")):
      cases = {}
      for name, guard in GUARDS.items():
        training._all_finite = guard  # read when the step is traced, i.e. in the constructor
        try:
          config = step_throughput.build_config(model, "elbo", batch_size, "float32", "none")
          cases[name] = step_throughput.VaejaxCase(config, images)
        finally:
          training._all_finite = LIBRARY_GUARD
      steps = step_throughput.calibrate(lambda n: cases["float_sum"].run(n, args.steps_per_dispatch),
                                        args.block_seconds, start=8)
      rates = {name: [] for name in cases}
      for _ in range(args.repeats):
        for name, case in cases.items():
          t = time.perf_counter()
          case.run(steps, args.steps_per_dispatch)
          rates[name].append(steps * batch_size / (time.perf_counter() - t))
      for name in cases:
        records.append({"model": model, "batch_size": batch_size, "guard": name,
                        "examples_per_sec": float(np.median(rates[name])),
                        "steps_per_dispatch": args.steps_per_dispatch})
      line = ", ".join(f"{r['guard']} {r['examples_per_sec']:,.0f}" for r in records[-len(GUARDS):])
      print(f"{model} batch {batch_size}: {line} examples/s", flush=True)
  base = {(r["model"], r["batch_size"]): r["examples_per_sec"] for r in records if r["guard"] == "float_sum"}
  table = ["| model | batch | guard | examples/s | vs float_sum |", "|---|---|---|---|---|"]
  table += [f"| {r['model']} | {r['batch_size']} | {r['guard']} | {r['examples_per_sec']:,.0f} | "
            f"{r['examples_per_sec'] / base[(r['model'], r['batch_size'])]:.3f} |" for r in records]
  common.write(args.out, "results", {"records": records}, table)


if __name__ == "__main__":
  main()

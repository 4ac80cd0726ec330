"""What the non-finite-update guard costs, timed side by side in one process
(interleaved blocks, median). Variants of the train step:

  select_and_isfinite  optax.adam, then a per-element select between the new and
                       old state, on an and-reduction of isfinite (the first guard)
  select_float_sum     the same select on isfinite(sum of the gradients)
  skippable_adam_float_sum
                       `optim.skippable_adam` gated on isfinite(plain sum) (session 3)
  skippable_adam       the library now: `optim.skippable_adam` gates itself, on
                       isfinite(sum of squares) (`training._safe_to_apply`)
  none                 optax.adam, no check (what an unguarded step costs)

  python benchmarks/guard_ablation.py --models reference,iwae_table1 --batch-sizes 20,128,1024 \
      --out benchmarks/results/cpu-2core/guard_ablation
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import common  # noqa: E402
import step_throughput  # noqa: E402
from vaejax import experiment, optim, training  # noqa: E402


def and_reduced_isfinite(tree) -> jax.Array:
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)]))


def float_sum_isfinite(tree) -> jax.Array:
  """The guard of session 3: isfinite(plain sum of the gradients)."""
  return jnp.isfinite(sum(jnp.sum(x) for x in jax.tree_util.tree_leaves(tree)))


LIBRARY_GUARD = training._safe_to_apply
LIBRARY_OPTIMIZER = experiment.build_optimizer


def optax_adam(config, estimator, steps_per_epoch=1):
  """The library's optimizer as plain optax.adam (the train step then selects)."""
  opt = LIBRARY_OPTIMIZER(config, estimator, steps_per_epoch)
  if not isinstance(opt, optim.SkippableTransformation):
    raise ValueError("this benchmark compares plain-Adam configs only")
  return optax.adam(experiment.learning_rate(config, steps_per_epoch), b1=config.adam_b1,
                    b2=config.adam_b2, eps=config.adam_eps)


# name -> (finiteness check, optimizer builder)
VARIANTS = {"select_and_isfinite": (and_reduced_isfinite, optax_adam),
            "select_float_sum": (float_sum_isfinite, optax_adam),
            "skippable_adam_float_sum": (float_sum_isfinite, LIBRARY_OPTIMIZER),
            "skippable_adam": (LIBRARY_GUARD, LIBRARY_OPTIMIZER),
            "none": (lambda tree: jnp.bool_(True), optax_adam)}


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--models", default="reference,iwae_table1")
  common.add_timing_args(p, repeats=5)
  args = p.parse_args()
  images = common.synthetic_images()
  records = []
  for model in args.models.split(","):
    for batch_size in (int(b) for b in args.batch_sizes.split(",")):
      cases = {}
      for name, (guard, build_optimizer) in VARIANTS.items():
        # Both are looked up when the step is built and traced, in the constructor.
        training._safe_to_apply, experiment.build_optimizer = guard, build_optimizer
        try:
          config = step_throughput.build_config(model, "elbo", batch_size, "float32", "none")
          cases[name] = step_throughput.VaejaxCase(config, images)
        finally:
          training._safe_to_apply, experiment.build_optimizer = LIBRARY_GUARD, LIBRARY_OPTIMIZER
      runs = {name: (lambda n, c=case: c.run(n, args.steps_per_dispatch)) for name, case in cases.items()}
      steps = step_throughput.calibrate(runs["skippable_adam"], args.block_seconds, start=8)
      rates = common.interleaved_rates(runs, dict.fromkeys(runs, steps), batch_size, args.repeats)
      for name in cases:
        records.append({"model": model, "batch_size": batch_size, "guard": name,
                        "examples_per_sec": float(np.median(rates[name])),
                        "steps_per_dispatch": args.steps_per_dispatch})
      line = ", ".join(f"{r['guard']} {r['examples_per_sec']:,.0f}" for r in records[-len(VARIANTS):])
      print(f"{model} batch {batch_size}: {line} examples/s", flush=True)
  base = {(r["model"], r["batch_size"]): r["examples_per_sec"] for r in records if r["guard"] == "skippable_adam"}
  table = ["| model | batch | guard | examples/s | vs skippable_adam |", "|---|---|---|---|---|"]
  table += [f"| {r['model']} | {r['batch_size']} | {r['guard']} | {r['examples_per_sec']:,.0f} | "
            f"{r['examples_per_sec'] / base[(r['model'], r['batch_size'])]:.3f} |" for r in records]
  common.write(args.out, "results", {"records": records}, table)


if __name__ == "__main__":
  main()

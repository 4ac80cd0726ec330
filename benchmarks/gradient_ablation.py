"""What each of session 5's gradient-side changes is worth, side by side in one
process (interleaved blocks, median), on the library's full train step:

  library                 the step as it is
  vmap_unit_sample_axis   log p(x|z) vmapped over the single sample (K = 1) again,
                          instead of `objectives.over_samples` calling it once
  softplus_autodiff       the Bernoulli log-density through JAX's softplus rule (a
                          second exp in the backward pass) instead of
                          `distributions.bernoulli_log_density`'s custom JVP
  two_head_matmuls        the encoder's mean and log-variance as two nn.Dense
                          matmuls instead of `nets.GaussianHead`'s one
  before                  all three reverted (the step of session 4)

  python benchmarks/gradient_ablation.py --batch-sizes 20,128,1024 \
      --out benchmarks/results/cpu-2core/gradient_ablation
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import common  # noqa: E402
import step_throughput  # noqa: E402
from vaejax import distributions, nets, objectives  # noqa: E402


def vmap_over_samples(fn, z):
  return jax.vmap(fn)(z)


def softplus_log_density(logits, x):
  return x * logits - jax.nn.softplus(logits)


class TwoDenseHead(nn.Module):
  """The head of session 4: same parameters, two matmuls."""
  latent_dim: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, h):
    mean = nn.Dense(self.latent_dim, dtype=self.dtype, name="mean")(h).astype(jnp.float32)
    log_var = nn.Dense(self.latent_dim, dtype=self.dtype, name="log_var")(h)
    return mean, nets.soft_clip(log_var.astype(jnp.float32), nets.LOG_VAR_BOUND)


# name -> {(module, attribute): replacement}; looked up when the step is traced.
REVERTS = {"sample_axis": {(objectives, "over_samples"): vmap_over_samples},
           "softplus": {(distributions, "bernoulli_log_density"): softplus_log_density},
           "heads": {(nets, "GaussianHead"): TwoDenseHead}}
VARIANTS = {"library": (), "vmap_unit_sample_axis": ("sample_axis",),
            "softplus_autodiff": ("softplus",), "two_head_matmuls": ("heads",),
            "before": ("sample_axis", "softplus", "heads")}


@contextlib.contextmanager
def reverted(names):
  patches = {k: v for name in names for k, v in REVERTS[name].items()}
  saved = {(module, attr): getattr(module, attr) for module, attr in patches}
  try:
    for (module, attr), value in patches.items():
      setattr(module, attr, value)
    yield
  finally:
    for (module, attr), value in saved.items():
      setattr(module, attr, value)


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  common.add_timing_args(p, repeats=7)
  args = p.parse_args()
  images = common.synthetic_images()
  records = []
  for batch_size in (int(b) for b in args.batch_sizes.split(",")):
    cases = {}
    for name, names in VARIANTS.items():
      with reverted(names):  # the constructor traces and compiles the step
        config = step_throughput.build_config("reference", "elbo", batch_size, "float32", "none")
        cases[name] = step_throughput.VaejaxCase(config, images)
    runs = {name: (lambda n, c=case: c.run(n, args.steps_per_dispatch)) for name, case in cases.items()}
    steps = step_throughput.calibrate(runs["library"], args.block_seconds, start=8)
    rates = common.interleaved_rates(runs, dict.fromkeys(runs, steps), batch_size, args.repeats)
    for name in cases:
      records.append({"variant": name, "batch_size": batch_size, "rates": rates[name],
                      "examples_per_sec": float(np.median(rates[name])),
                      "steps_per_dispatch": args.steps_per_dispatch})
    print(f"batch {batch_size}: " + ", ".join(
        f"{r['variant']} {r['examples_per_sec']:,.0f}" for r in records[-len(cases):]), flush=True)
  base = {r["batch_size"]: r["examples_per_sec"] for r in records if r["variant"] == "library"}
  table = ["| batch | variant | examples/s | library / variant |", "|---|---|---|---|"]
  table += [f"| {r['batch_size']} | {r['variant']} | {r['examples_per_sec']:,.0f} | "
            f"{base[r['batch_size']] / r['examples_per_sec']:.3f}x |" for r in records]
  common.write(args.out, "results", {"records": records}, table)


if __name__ == "__main__":
  main()

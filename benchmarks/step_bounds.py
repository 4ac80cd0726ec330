"""How fast could the train step be with a free optimizer? Times, interleaved in
one process (median of repeated blocks), for the reference model:

  vaejax-step           the library's step (`parallel.make_runner`, as in
                        step_throughput.py): gradient, guard, Adam, metrics
  vaejax-gradient       the same chunk loop, keys, data gathering and loss, but the
                        step stops at the gradient: no guard, no optimizer, no
                        update; every gradient is summed into a metric, so XLA
                        computes all of them. No optimizer or guard, however
                        fused, can make the step faster than this
  torch-compile-step    pytorch_reference.py's torch.compile step (with Adam)
  torch-compile-gradient
                        the same without optimizer.step()

The ratios vaejax-gradient / torch-compile-step bound what any change to the
optimizer side (fusing Adam, dropping the guard) can reach against
torch.compile; vaejax-gradient's GFLOP/s bounds the step's roofline share.
Also timed, once per run: the library's guard + Adam update alone over the
reference model's parameters (fixed gradients, many updates per dispatch),
and the memory bandwidth XLA reaches on arrays of the same size (an x + s*y
chain: two reads and a write per element), which sets the floor of any Adam
that reads g, p, m, v and writes p, m, v once (7 floats per parameter).

  python benchmarks/step_bounds.py --batch-sizes 20,128,1024 \
      --out benchmarks/results/cpu-2core/step_bounds
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
import pytorch_reference  # noqa: E402
import step_throughput  # noqa: E402
from vaejax import experiment, training  # noqa: E402

LIBRARY_STEP = training.make_train_step


def make_gradient_only_step(loss_fn, optimizer, preprocess, *, axis_name=None,
                            update_state=None):
  """The library step's gradient (`training.make_gradient`), without guard or update
  (`training.make_train_step`'s signature; a model's state update is left out too)."""
  del optimizer, axis_name, update_state
  gradient = training.make_gradient(loss_fn, preprocess)

  def step(state, batch, example_offset=0):
    (_, metrics), grads = gradient(state, batch, example_offset)
    gradient_sum = sum(jnp.sum(g) for g in jax.tree_util.tree_leaves(grads))
    return state.replace(step=state.step + 1), dict(
        metrics, gradient_sum=gradient_sum, skipped=jnp.zeros((), jnp.float32))

  return step


def vaejax_case(batch_size: int, images: np.ndarray, gradient_only: bool):
  config = step_throughput.build_config("reference", "elbo", batch_size, "float32", "none")
  # Looked up by parallel.make_runner and VaejaxCase's FLOP count, in the constructor.
  training.make_train_step = make_gradient_only_step if gradient_only else LIBRARY_STEP
  try:
    return step_throughput.VaejaxCase(config, images)
  finally:
    training.make_train_step = LIBRARY_STEP


def reference_params():
  config = step_throughput.build_config("reference", "elbo", 128, "float32", "none")
  return config, experiment.build_model(config, (28, 28, 1)).init(jax.random.PRNGKey(0))


def optimizer_only_ms(num_updates: int = 100, repeats: int = 7) -> float:
  """ms per guard + library-optimizer update of the reference model's parameters."""
  config, params = reference_params()
  optimizer = experiment.build_optimizer(config, experiment.build_estimator(config))
  grads = jax.tree_util.tree_map(lambda p: jnp.full_like(p, 1e-3), params)

  @jax.jit
  def updates(params, opt_state, grads):  # grads an argument: a constant would be folded away
    def body(i, carry):
      params, opt_state = carry
      # Times a scalar that is 1 but depends on i, so that XLA cannot hoist the guard's
      # reduction out of the loop as loop-invariant; the multiply fuses into the readers.
      scale = jnp.where(i < 0, 2.0, 1.0).astype(jnp.float32)
      grads_i = jax.tree_util.tree_map(lambda g: g * scale, grads)
      ok = training._safe_to_apply(grads_i)
      step, opt_state = optimizer.update(grads_i, opt_state, params, apply=ok)
      return jax.tree_util.tree_map(jnp.add, params, step), opt_state
    return jax.lax.fori_loop(0, num_updates, body, (params, opt_state))

  state = (params, optimizer.init(params), grads)
  return _median_ms(lambda c: updates(*c), state, repeats) / num_updates


def bandwidth_gb_per_sec(num_floats: int, num_iters: int = 100, repeats: int = 7) -> float:
  """GB/s of a dependent x <- x + s*y chain on two float32 [num_floats] arrays
  (y is an argument, not a constant XLA could fold)."""
  chain = jax.jit(lambda xy: jax.lax.fori_loop(0, num_iters, lambda _, x: x + 0.5 * xy[1], xy[0]))
  xy = (jnp.ones((num_floats,), jnp.float32), jnp.full((num_floats,), 1e-7, jnp.float32))
  ms = _median_ms(chain, xy, repeats)
  return 3 * 4 * num_floats * num_iters / (ms * 1e-3) / 1e9


def _median_ms(fn, arg, repeats: int) -> float:
  jax.block_until_ready(fn(arg))  # compile and warm up
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn(arg))
    times.append(time.perf_counter() - t)
  return 1e3 * float(np.median(times))


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--no-torch", action="store_true", help="time the vaejax rows only")
  common.add_timing_args(p, repeats=7)
  p.add_argument("--roofline-gflop", type=float, default=40.0,
                 help="GFLOP per timed matmul chain of the roofline measurement")
  args = p.parse_args()
  with_torch = not args.no_torch
  if with_torch and not pytorch_reference.available():
    sys.exit("error: needs PyTorch (pip install torch), or pass --no-torch")
  images = common.synthetic_images()
  num_params = sum(p.size for p in jax.tree_util.tree_leaves(reference_params()[1]))
  # --repeats: median of that many timings, each of 100 updates (or iterations).
  adam_ms = optimizer_only_ms(repeats=args.repeats)
  bandwidth = bandwidth_gb_per_sec(num_params, repeats=args.repeats)
  print(f"guard + Adam alone: {adam_ms:.3f} ms per update; bandwidth {bandwidth:.1f} GB/s "
        f"on {num_params:,}-float arrays", flush=True)
  peak_before = step_throughput.matmul_peak(jnp.float32, gflop=args.roofline_gflop)
  records = []
  for batch_size in (int(b) for b in args.batch_sizes.split(",")):
    runs, flops = {}, {}
    for name, gradient_only in (("vaejax-step", False), ("vaejax-gradient", True)):
      case = vaejax_case(batch_size, images, gradient_only)
      runs[name] = lambda n, c=case: c.run(n, args.steps_per_dispatch)
      flops[name] = case.flops_per_step
    if with_torch:
      pixels = images.reshape(len(images), -1)
      for name, update in (("torch-compile-step", True), ("torch-compile-gradient", False)):
        runs[name] = pytorch_reference.make_runner("torch-compile", batch_size=batch_size,
                                                   images=pixels, update=update)
        runs[name](2)  # compiles
        flops[name] = flops["vaejax-step" if update else "vaejax-gradient"]
    steps = {name: step_throughput.calibrate(run, args.block_seconds) for name, run in runs.items()}
    rates = common.interleaved_rates(runs, steps, batch_size, args.repeats)
    for name in runs:
      median = float(np.median(rates[name]))
      records.append({"impl": name, "batch_size": batch_size, "examples_per_sec": median,
                      "rates": rates[name], "flops_per_step": flops[name],
                      "gflops_per_sec": median / batch_size * flops[name] / 1e9,
                      "steps_per_dispatch": args.steps_per_dispatch if name.startswith("vaejax") else 1})
    print(f"batch {batch_size}: " + ", ".join(
        f"{r['impl']} {r['examples_per_sec']:,.0f}" for r in records[-len(runs):]), flush=True)
  peak = max(peak_before,
             step_throughput.matmul_peak(jnp.float32, gflop=args.roofline_gflop))
  for r in records:
    r["roofline_fraction"] = r["gflops_per_sec"] / peak
  optimizer = {"num_params": num_params, "guard_and_adam_ms": adam_ms,
               "bandwidth_gb_per_sec": bandwidth,
               "adam_floor_ms": 7 * 4 * num_params / bandwidth / 1e6}
  common.write(args.out, "results", {"records": records, "matmul_peak_gflops_per_sec": peak,
                                     "optimizer": optimizer},
               report(records, peak, with_torch) + [
                   f"guard + Adam alone: {adam_ms:.3f} ms per update over {num_params:,} "
                   f"parameters; bandwidth {bandwidth:.1f} GB/s (x + s*y on arrays of that size), "
                   f"so one-pass Adam (7 floats per parameter) needs at least "
                   f"{optimizer['adam_floor_ms']:.3f} ms"])


def report(records, peak: float, with_torch: bool) -> list[str]:
  by = {(r["impl"], r["batch_size"]): r["examples_per_sec"] for r in records}
  table = ["| impl | batch | examples/s | GFLOP/s | roofline | vs vaejax-step"
           + (" | vs torch-compile-step |" if with_torch else " |"),
           "|---|---|---|---|---|---" + ("|---|" if with_torch else "|")]
  for r in records:
    b = r["batch_size"]
    row = (f"| {r['impl']} | {b} | {r['examples_per_sec']:,.0f} | {r['gflops_per_sec']:.1f} | "
           f"{r['roofline_fraction']:.0%} | {r['examples_per_sec'] / by[('vaejax-step', b)]:.2f}x |")
    if with_torch:
      row += f" {r['examples_per_sec'] / by[('torch-compile-step', b)]:.2f}x |"
    table.append(row)
  return table + ["", f"matmul roofline (GFLOP/s, measured in this run): float32 {peak:.0f}"]


if __name__ == "__main__":
  main()

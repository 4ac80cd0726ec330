"""Train-step throughput of vaejax, PyTorch side by side, and the matmul roofline.

Times the real training path (`parallel.make_runner` over the library's step:
gradient + Adam + the non-finite-update guard, uint8 data on device) for every
combination asked for, interleaved block by block with PyTorch eager and
torch.compile running the identical model in this same process, so machine
noise hits all of them alike. Per configuration:
  - compile time: AOT `lower().compile()` (vaejax), first call (torch);
  - FLOPs per step: XLA's `cost_analysis()` of one compiled step; the same
    number is used for the torch rows (same model, same math);
  - the roofline: the best large square matmul GFLOP/s of the step's dtype,
    measured in this run, before and after the timings;
  - examples/s: median over `--repeats` timed blocks of about
    `--block-seconds` each, warm-up excluded, `block_until_ready` at the end.
Steps per dispatch 1 calls the compiled chunk once per step from Python; a
larger value runs that many steps in one on-device loop (same executable).

  python benchmarks/step_throughput.py --model reference --batch-sizes 20,128,1024 \
      --compare-torch --out DIR
writes DIR/results.json (records + machine block), DIR/results.md and
DIR/examples_per_sec.png.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from vaejax import config as config_lib, data, evaluate, experiment, objectives  # noqa: E402
from vaejax import parallel, training  # noqa: E402

import common  # noqa: E402  (benchmarks/common.py)
import pytorch_reference  # noqa: E402

MODELS = {"reference": dict(architecture="mlp", hidden=(512, 512), latent_dim=32),
          "conv": dict(architecture="conv", hidden=(256,), latent_dim=32),
          # experiments/configs/iwae_table1.py (Burda et al. 2015): the longest CPU run.
          "iwae_table1": dict(architecture="mlp", hidden=(200, 200), latent_dim=50,
                              activation="tanh", adam_eps=1e-4)}
# name -> (objective, estimator, K)
OBJECTIVES = {"elbo": ("elbo", "pathwise", 1), "iwae5": ("iwae", "pathwise", 5),
              "iwae50": ("iwae", "pathwise", 50), "dreg5": ("iwae", "dreg", 5),
              "dreg50": ("iwae", "dreg", 50)}


def cost_flops(compiled) -> float:
  analysis = compiled.cost_analysis()
  analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
  return float(analysis.get("flops", 0.0))


def matmul_peak(dtype, sizes=(1024, 2048), repeats=3, gflop: float = 40.0) -> float:
  """Best GFLOP/s of a chain of square matmuls (float32 accumulation), each timed
  chain about `gflop` GFLOP (at least 4 matmuls)."""
  best = 0.0
  for n in sizes:
    steps = max(4, int(gflop * 1e9 / (2 * n ** 3)))
    a = jnp.ones((n, n), dtype) / n

    @jax.jit
    def chain(a):
      body = lambda i, m: jnp.dot(m, a, preferred_element_type=jnp.float32).astype(dtype)  # noqa: E731
      return jax.lax.fori_loop(0, steps, body, a)
    chain(a).block_until_ready()
    for _ in range(repeats):
      t = time.perf_counter()
      chain(a).block_until_ready()
      best = max(best, 2 * n ** 3 * steps / (time.perf_counter() - t) / 1e9)
  return best


def build_config(model: str, objective: str, batch_size: int, dtype: str, mode: str):
  config = config_lib.base_config()
  config.update(MODELS[model])
  config.objective, config.estimator, config.num_samples = OBJECTIVES[objective]
  config.batch_size, config.compute_dtype, config.parallel = batch_size, dtype, mode
  return config


class ChunkCase:
  """A compiled chunk runner (`compiled`, `state`, `data`, `perm`, `steps_per_epoch`,
  `position` set by the subclass) stepped through its epoch, wrapping around."""

  def run(self, num_steps: int, steps_per_dispatch: int = 100) -> None:
    done = 0
    while done < num_steps:
      n = min(steps_per_dispatch, num_steps - done)
      if self.position + n > self.steps_per_epoch:
        self.position = 0
      self.state, _ = self.compiled(self.state, self.data, self.perm, np.int32(self.position),
                                    np.int32(n))
      self.position += n
      done += n
    jax.block_until_ready(self.state)


class VaejaxCase(ChunkCase):
  """The compiled chunk runner of one configuration, ready to time."""

  def __init__(self, config, images: np.ndarray):
    model = experiment.build_model(config, images.shape[1:])
    estimator = experiment.build_estimator(config)
    optimizer = experiment.build_optimizer(config, estimator, len(images) // config.batch_size)
    loss_fn = objectives.make_batch_loss(model, estimator.per_example)
    preprocess = training.make_preprocess(1, False)
    params = {**model.init(jax.random.PRNGKey(0)),
              **estimator.init_params(jax.random.PRNGKey(1), model)}
    host_state = training.create_train_state(params, optimizer, key=jax.random.PRNGKey(2))
    self.runner = parallel.make_runner(config.parallel, loss_fn=loss_fn, optimizer=optimizer,
                                       preprocess=preprocess, batch_size=config.batch_size,
                                       max_consecutive_skips=config.max_consecutive_skips)
    self.batch_size = config.batch_size
    self.steps_per_epoch = len(images) // config.batch_size
    self.data = self.runner.put_data(images)
    self.perm = self.runner.put_data(np.random.default_rng(0).permutation(len(images)))
    self.state = self.runner.put_state(host_state)
    t = time.perf_counter()
    self.compiled = self.runner.chunk.lower(self.state, self.data, self.perm, np.int32(0),
                                            np.int32(1)).compile()
    self.compile_seconds = time.perf_counter() - t
    # FLOPs of ONE step on one device at the global batch (the while body is counted once,
    # so the chunk's own count would do too, but not under pmap's per-device program).
    step = training.make_train_step(loss_fn, optimizer, preprocess)
    batch = jnp.asarray(images[:config.batch_size])
    self.flops_per_step = cost_flops(jax.jit(step).lower(host_state, batch).compile())
    self.position = 0


def calibrate(run, block_seconds: float, start: int = 4) -> int:
  """Steps that take about block_seconds (after one warm-up call)."""
  run(start)
  t = time.perf_counter()
  run(start)
  per_step = max((time.perf_counter() - t) / start, 1e-6)
  return max(start, int(block_seconds / per_step))


def eval_benchmark(images: np.ndarray, k: int, num_examples: int, peak: float, repeats: int):
  """Importance-sampled log p(x) with k samples per example on the reference model."""
  config = build_config("reference", "elbo", 128, "float32", "none")
  model = experiment.build_model(config, images.shape[1:])
  params = model.init(jax.random.PRNGKey(0))
  x = jnp.asarray(images[:num_examples], jnp.float32)
  chunk = min(k, 500)
  fn = lambda: evaluate.importance_log_likelihood(  # noqa: E731
      model, params, x, key=jax.random.PRNGKey(1), num_samples=k, chunk_size=chunk,
      batch_size=min(num_examples, 100))
  t = time.perf_counter()
  fn().block_until_ready()
  compile_seconds = time.perf_counter() - t
  seconds = []
  for _ in range(repeats):
    t = time.perf_counter()
    fn().block_until_ready()
    seconds.append(time.perf_counter() - t)
  # FLOPs per sample: log p(x|z) (decoder + likelihood), which is k-fold what the
  # encoder costs; XLA's cost analysis of a batch of samples.
  z = jnp.zeros((chunk, config.latent_dim))
  per_sample = jax.jit(lambda p, x, z: jax.vmap(model.log_likelihood, (None, None, 0))(p, x, z))
  flops = cost_flops(per_sample.lower(params, x[0], z).compile()) / chunk
  median = statistics.median(seconds)
  samples_per_sec = num_examples * k / median
  return {"impl": "vaejax-eval", "k": k, "examples": num_examples, "seconds": seconds,
          "compile_seconds": compile_seconds, "samples_per_sec": samples_per_sec,
          "gflops_per_sec": samples_per_sec * flops / 1e9,
          "roofline_fraction": samples_per_sec * flops / 1e9 / peak}


def load_images(data_dir: str | None) -> tuple[np.ndarray, str]:
  try:
    return data.load("binarized_mnist", "train", data_dir).images, "binarized_mnist train"
  except data.DataError:
    rng = np.random.default_rng(0)  # throughput does not depend on pixel values
    return (rng.random((50_000, 28, 28, 1)) > 0.5).astype(np.uint8), "synthetic bits"


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--model", default="reference", choices=sorted(MODELS))
  p.add_argument("--batch-sizes", default="20,128,1024")
  p.add_argument("--objectives", default="elbo", help=f"comma list of {sorted(OBJECTIVES)}")
  p.add_argument("--dtypes", default="float32", help="comma list of float32,bfloat16")
  p.add_argument("--steps-per-dispatch", default="1,100")
  p.add_argument("--parallel", default="none", help="comma list of none,pmap,sharding")
  p.add_argument("--compare-torch", action="store_true")
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--block-seconds", type=float, default=1.0)
  p.add_argument("--roofline-gflop", type=float, default=40.0,
                 help="GFLOP per timed matmul chain of the roofline measurement")
  p.add_argument("--matmul-precision", default="",
                 help="float32 matmuls: 'highest' (true f32) or 'tensorfloat32' (TF32 on GPU, "
                      "torch too); default: each library's own default")
  p.add_argument("--eval-k", type=int, default=0, help="also time log p(x) with k samples")
  p.add_argument("--eval-examples", type=int, default=100)
  p.add_argument("--data-dir", default=None, help="default: $VAEJAX_DATA_DIR; random bits if absent")
  p.add_argument("--out", default="benchmarks/results/tmp")
  args = p.parse_args()
  ints = lambda s: [int(v) for v in s.split(",") if v]  # noqa: E731
  names = lambda s: [v for v in s.split(",") if v]  # noqa: E731
  if args.matmul_precision:
    jax.config.update("jax_default_matmul_precision", args.matmul_precision)
    if pytorch_reference.available():
      import torch
      torch.backends.cuda.matmul.allow_tf32 = args.matmul_precision == "tensorfloat32"
      torch.backends.cudnn.allow_tf32 = args.matmul_precision == "tensorfloat32"
  images, source = load_images(args.data_dir)
  dtypes = names(args.dtypes)
  peak_before = {d: matmul_peak(jnp.dtype(d), gflop=args.roofline_gflop) for d in dtypes}
  # The torch reference is the float32 single-sample ELBO step: compared only when timed here too.
  comparable = "elbo" in names(args.objectives) and "float32" in dtypes
  torch_impls = list(pytorch_reference.IMPLS) if args.compare_torch and comparable else []
  if torch_impls and not pytorch_reference.available():
    sys.exit("error: --compare-torch needs PyTorch (pip install torch)")
  if torch_impls and (args.model != "reference"):
    sys.exit("error: the PyTorch reference implements --model reference only")

  timed = []  # (record, run(num_steps))
  for batch_size in ints(args.batch_sizes):
    group = []
    for objective in names(args.objectives):
      for dtype in dtypes:
        for mode in names(args.parallel):
          config = build_config(args.model, objective, batch_size, dtype, mode)
          case = VaejaxCase(config, images)
          for spd in ints(args.steps_per_dispatch):
            record = {"impl": "vaejax", "model": args.model, "objective": objective,
                      "dtype": dtype, "parallel": mode, "devices": case.runner.num_devices,
                      "batch_size": batch_size, "steps_per_dispatch": spd,
                      "compile_seconds": case.compile_seconds,
                      "flops_per_step": case.flops_per_step}
            group.append((record, lambda n, c=case, s=spd: c.run(n, s)))
    flops = next((r["flops_per_step"] for r, _ in group
                  if r["objective"] == "elbo" and r["dtype"] == "float32"), None)
    for impl in torch_impls:
      run = pytorch_reference.make_runner(impl, batch_size=batch_size,
                                          images=images.reshape(len(images), -1))
      t = time.perf_counter()
      run(2)  # torch.compile compiles on the first calls
      record = {"impl": impl, "model": args.model, "objective": "elbo", "dtype": "float32",
                "parallel": "none", "devices": 1, "batch_size": batch_size,
                "steps_per_dispatch": 1, "compile_seconds": time.perf_counter() - t,
                "flops_per_step": flops}
      group.append((record, run))
    steps = [calibrate(run, args.block_seconds) for _, run in group]
    seconds = [[] for _ in group]
    for _ in range(args.repeats):  # interleaved: every impl once per round
      for i, (_, run) in enumerate(group):
        t = time.perf_counter()
        run(steps[i])
        seconds[i].append(time.perf_counter() - t)
    for (record, _), n, s in zip(group, steps, seconds):
      median = statistics.median(s)
      record.update(steps_timed=n, seconds=s, steps_per_sec=n / median,
                    examples_per_sec=n * batch_size / median,
                    gflops_per_sec=n * record["flops_per_step"] / median / 1e9)
      timed.append(record)
    print(f"batch {batch_size}: done", flush=True)

  peak = {d: max(peak_before[d], matmul_peak(jnp.dtype(d), gflop=args.roofline_gflop))
          for d in dtypes}
  for record in timed:
    record["peak_gflops_per_sec"] = peak[record["dtype"]]
    record["roofline_fraction"] = record["gflops_per_sec"] / peak[record["dtype"]]
  evals = []
  if args.eval_k:
    f32_peak = peak.get("float32") or matmul_peak(jnp.float32, gflop=args.roofline_gflop)
    evals.append(eval_benchmark(images, args.eval_k, args.eval_examples, f32_peak, args.repeats))
  machine = {"data": source, "matmul_precision": args.matmul_precision or "library defaults",
             "peak_host_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
  stats = getattr(jax.devices()[0], "memory_stats", lambda: None)()
  if stats and "peak_bytes_in_use" in stats:
    machine["peak_device_memory_gb"] = stats["peak_bytes_in_use"] / 2**30
  table = report(timed, evals, peak)
  common.write(args.out, "results", {"records": timed, "eval": evals,
                                     "matmul_peak_gflops_per_sec": peak}, table, machine)
  plot(timed, os.path.join(args.out, "examples_per_sec.png"))


def report(records, evals, peak) -> list[str]:
  lines = ["| impl | objective | dtype | parallel | batch | steps/dispatch | examples/s | "
           "GFLOP/s | roofline | compile s | vs torch.compile | vs torch eager |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
  base = {(r["impl"], r["batch_size"]): r["examples_per_sec"] for r in records
          if r["impl"].startswith("torch")}
  for r in records:
    ratio = lambda impl: base.get((impl, r["batch_size"]))  # noqa: E731
    vs = [f"{r['examples_per_sec'] / ratio(i):.2f}x" if ratio(i) else "-"
          for i in ("torch-compile", "torch-eager")]
    lines.append(f"| {r['impl']} | {r['objective']} | {r['dtype']} | {r['parallel']} | "
                 f"{r['batch_size']} | {r['steps_per_dispatch']} | {r['examples_per_sec']:.0f} | "
                 f"{r['gflops_per_sec']:.1f} | {r['roofline_fraction']:.0%} | "
                 f"{r['compile_seconds']:.2f} | {vs[0]} | {vs[1]} |")
  lines.append("\nmatmul roofline (GFLOP/s, measured in this run): "
               + ", ".join(f"{d} {v:.0f}" for d, v in peak.items()))
  for e in evals:
    lines.append(f"\nlog p(x), k={e['k']}, {e['examples']} examples: {e['samples_per_sec']:.0f} "
                 f"samples/s, {e['gflops_per_sec']:.1f} GFLOP/s ({e['roofline_fraction']:.0%} "
                 f"of the float32 roofline), compile {e['compile_seconds']:.1f} s")
  return lines


def plot(records, path: str) -> None:
  try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
  except ImportError:
    return
  series = {}
  for r in records:
    label = r["impl"] if r["impl"] != "vaejax" else (
        f"vaejax {r['objective']} {r['dtype']} {r['parallel']} spd={r['steps_per_dispatch']}")
    series.setdefault(label, []).append((r["batch_size"], r["examples_per_sec"]))
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for label, points in series.items():
    points.sort()
    ax.plot(*zip(*points), marker="o", label=label)
  ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="examples / s",
         title="train-step throughput")
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


if __name__ == "__main__":
  main()

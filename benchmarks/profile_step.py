"""Where the train step's time goes: a jax.profiler trace of the library step,
aggregated per XLA op over all threads.

Runs `--steps` steps in one dispatch of the compiled chunk (the same runner
`step_throughput.py` times), traces a second dispatch, and sums each op's time
over the CPU threads. Ops are classed as matmul (YNNPACK fusions and Eigen
`dot`s), copy/transpose, or elementwise/other fusions; executor, thread-pool and
control-flow events (`while`, `call`: their body ops are counted themselves)
are left out. What the trace does not see: work an op hands to Eigen's own
thread pool. XLA:CPU's Eigen `dot`s (the weight-gradient dots, which YNNPACK
does not take) show far less time than their FLOPs need at the roofline, so
time them alone (NOTES.md) rather than reading them off this table.

  python benchmarks/profile_step.py --model reference --batch-size 20 \
      --out benchmarks/results/cpu-2core/profile_reference_b20
writes DIR/profile.json and DIR/profile.md (top ops, classes, wall time).
`--replicas R` profiles R models in one program instead (benchmarks/replicas.py's
runner; a step then trains all R).
"""
from __future__ import annotations

import argparse
import collections
import glob
import os
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402

import common  # noqa: E402
import replicas  # noqa: E402
import step_throughput  # noqa: E402

# Events that are not op time: executor and thread-pool bookkeeping, waits,
# Python frames, and control flow whose body ops are events of their own.
_NOT_OPS = ("ThunkExecutor", "$", "PjRt", "Execute", "block_until_ready", "TfrtCpu",
            "SlinkyThreadPool", "ThreadpoolListener", "end:", "while", "call", "conditional")


def op_class(name: str, source: str = "") -> str:
  """matmul, copy/transpose or elementwise/other; YNNPACK also runs reductions (the
  bias gradients), told apart by the op they were traced from."""
  if name.startswith("dot") or (name.startswith(("ynn_fusion", "xnn_fusion", "onednn"))
                                and "reduce" not in source):
    return "matmul"
  if name.startswith(("copy", "transpose")):
    return "copy/transpose"
  return "elementwise/other"


def op_sources(hlo_text: str) -> dict[str, str]:
  """{instruction name: "file.py:function:line op_name-tail"} from the HLO's
  metadata (the innermost Python frame an op was traced from)."""
  files = dict(re.findall(r'^(\d+) "([^"]*)"$', hlo_text.split("FunctionNames")[0], re.M))
  functions = dict(re.findall(r'^(\d+) "([^"]*)"$',
                              hlo_text.split("FunctionNames")[1].split("FileLocations")[0], re.M))
  locations = {i: (f, fn, line) for i, f, fn, line in re.findall(
      r"^(\d+) \{file_name_id=(\d+) function_name_id=(\d+) line=(\d+)", hlo_text, re.M)}
  frames = dict(re.findall(r"^(\d+) \{file_location_id=(\d+)", hlo_text, re.M))
  sources = {}
  for name, op_name, frame in re.findall(
      r'^\s*(?:ROOT )?%(\S+) = .*?metadata=\{op_name="([^"]*)"(?: stack_frame_id=(\d+))?',
      hlo_text, re.M):
    where = ""
    if frame in frames and frames[frame] in locations:
      f, fn, line = locations[frames[frame]]
      where = f"{os.path.basename(files.get(f, '?'))}:{functions.get(fn, '?').split('.')[-1]}:{line} "
    sources[name] = where + "/".join(op_name.split("/")[-2:])
  return sources


def trace_ops(run, steps: int) -> tuple[dict[str, float], dict[str, float], float]:
  """({op: thread-us per step}, {op: calls per step}, wall ms per step) of one traced dispatch."""
  with tempfile.TemporaryDirectory() as tmp:
    jax.profiler.start_trace(tmp)
    start = time.perf_counter()
    run(steps)
    wall = time.perf_counter() - start
    jax.profiler.stop_trace()
    path = sorted(glob.glob(os.path.join(tmp, "**", "*.xplane.pb"), recursive=True))[-1]
    profile = jax.profiler.ProfileData.from_file(path)
    micros, calls = collections.Counter(), collections.Counter()
    for plane in profile.planes:
      for line in plane.lines:
        for event in line.events:
          if event.name.startswith(_NOT_OPS) or line.name.startswith("python"):
            continue
          micros[event.name] += event.duration_ns / 1e3 / steps
          calls[event.name] += 1 / steps
  return dict(micros), dict(calls), wall / steps * 1e3


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--model", default="reference", choices=sorted(step_throughput.MODELS))
  p.add_argument("--objective", default="elbo", choices=sorted(step_throughput.OBJECTIVES))
  p.add_argument("--batch-size", type=int, default=20)
  p.add_argument("--replicas", type=int, default=1,
                 help="profile R replicas in one program (benchmarks/replicas.py's runner)")
  p.add_argument("--steps", type=int, default=1000)
  p.add_argument("--top", type=int, default=25)
  p.add_argument("--out", required=True)
  args = p.parse_args()
  images = common.synthetic_images()
  config = step_throughput.build_config(args.model, args.objective, args.batch_size, "float32",
                                        "none")
  if args.replicas > 1:
    case = replicas.ReplicaCase(config, images, args.replicas)
  else:
    case = step_throughput.VaejaxCase(config, images)
  steps = min(args.steps, case.steps_per_epoch)
  run = lambda n: case.run(n, n)  # noqa: E731  (one dispatch of n steps)
  run(steps)  # warm-up
  start = time.perf_counter()
  run(steps)
  untraced_ms = (time.perf_counter() - start) / steps * 1e3
  micros, calls, traced_ms = trace_ops(run, steps)
  sources = op_sources(case.compiled.as_text())
  op_classes = {name: op_class(name, sources.get(name, "")) for name in micros}
  classes = collections.Counter()
  for name, us in micros.items():
    classes[op_classes[name]] += us
  total = sum(micros.values())
  top = sorted(micros.items(), key=lambda kv: -kv[1])[:args.top]
  examples = args.batch_size * args.replicas
  table = [f"{args.model} / {args.objective}, batch {args.batch_size}, {args.replicas} "
           f"replica(s): {untraced_ms:.3f} ms per step untraced ({examples / untraced_ms * 1e3:,.0f} "
           f"examples/s over the replicas), "
           f"{traced_ms:.3f} ms traced; op time summed over threads {total / 1e3:.3f} ms per step",
           "", "| class | thread-ms per step | share of op time |", "|---|---|---|"]
  table += [f"| {c} | {us / 1e3:.3f} | {us / total:.0%} |" for c, us in classes.most_common()]
  table += ["", "| op | class | thread-us per step | calls per step | traced from |",
            "|---|---|---|---|---|"]
  table += [f"| {n} | {op_classes[n]} | {us:.1f} | {calls[n]:.2f} | {sources.get(n, '')} |"
            for n, us in top]
  table += ["", f"{len(micros)} distinct ops."]
  common.write(args.out, "profile", {
      "model": args.model, "objective": args.objective, "batch_size": args.batch_size,
      "replicas": args.replicas,
      "steps": steps, "ms_per_step_untraced": untraced_ms, "ms_per_step_traced": traced_ms,
      "op_thread_us_per_step": micros, "op_calls_per_step": calls, "op_sources": sources,
      "class_thread_us_per_step": dict(classes)}, table)


if __name__ == "__main__":
  main()

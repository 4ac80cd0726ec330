"""What every benchmark writes: a machine block, results JSON and a markdown table."""
import datetime
import json
import os
import platform
import time

import jax
import numpy as np


def machine() -> dict:
  return {"date": datetime.date.today().isoformat(), "platform": platform.platform(),
          "processor": platform.processor(), "cpu_count": os.cpu_count(), "jax": jax.__version__,
          "backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
          "xla_flags": os.environ.get("XLA_FLAGS", "")}


def write(out: str, name: str, result: dict, table: list[str], machine_extra=None) -> None:
  """out/name.json (result plus the machine block) and out/name.md (table); prints the table."""
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, f"{name}.json"), "w") as f:
    json.dump({"benchmark": name, "machine": {**machine(), **(machine_extra or {})}, **result},
              f, indent=2)
  with open(os.path.join(out, f"{name}.md"), "w") as f:
    f.write("\n".join(table) + "\n")
  print("\n".join(table))


def synthetic_images(num: int = 10_000, density: float = 0.3) -> np.ndarray:
  """[num, 28, 28, 1] uint8 random bits, seed 0: MNIST-shaped data for timing only."""
  return (np.random.default_rng(0).random((num, 28, 28, 1)) < density).astype(np.uint8)


def interleaved_rates(runs: dict, steps: dict, batch_size: int, repeats: int) -> dict:
  """{name: [examples/s per block]}: every run(num_steps) once per round, `repeats`
  rounds, so machine noise hits all of them alike. steps: {name: steps per block}."""
  rates = {name: [] for name in runs}
  for _ in range(repeats):
    for name, run in runs.items():
      t = time.perf_counter()
      run(steps[name])
      rates[name].append(steps[name] * batch_size / (time.perf_counter() - t))
  return rates


def add_timing_args(parser, *, repeats: int) -> None:
  """The options every side-by-side timing script takes."""
  parser.add_argument("--batch-sizes", default="20,128,1024")
  parser.add_argument("--steps-per-dispatch", type=int, default=100)
  parser.add_argument("--repeats", type=int, default=repeats)
  parser.add_argument("--block-seconds", type=float, default=1.0)
  parser.add_argument("--out", required=True)

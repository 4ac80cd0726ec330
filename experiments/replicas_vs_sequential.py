"""R seeds of one config: one replicated run (config.num_replicas = R) against R
sequential single runs, each through the train.py CLI as a user runs it.

  python experiments/replicas_vs_sequential.py --config experiments/configs/vae_flax_reference.py \
      --replicas 5 --out experiments/results/reference_5_seeds -- --config.data_dir=../shared/data

writes OUT/replicas_vs_sequential.json and .md: the test metrics of every seed
both ways (replica r must match the single run with seed + r to float rounding),
their mean and sample sd, and the wall time of each way (process start to exit:
imports, data, compiles, training, evaluation and checkpoints included). Extra
arguments after `--` go to every train.py call. The workdirs are kept (in --workdirs, default OUT/runs/).
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

TRAIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "train.py")


def train(config: str, workdir: str, *flags: str) -> tuple[dict, float]:
  """(summary.json, wall seconds) of one train.py process; exits on its failure."""
  start = time.perf_counter()
  proc = subprocess.run([sys.executable, TRAIN, "--config", config, "--workdir", workdir, *flags],
                        capture_output=True, text=True)
  seconds = time.perf_counter() - start
  if proc.returncode:
    sys.exit(f"error: {workdir}: {proc.stderr.strip().splitlines()[-1:]}")
  with open(os.path.join(workdir, "summary.json")) as f:
    return json.load(f), seconds


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--config", required=True)
  p.add_argument("--replicas", type=int, default=5)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--out", required=True)
  p.add_argument("--workdirs", default=None, help="where the runs go (default: OUT/runs)")
  args, extra = p.parse_known_args()
  extra = [a for a in extra if a != "--"]
  runs = args.workdirs or os.path.join(args.out, "runs")
  replicated, replicated_seconds = train(
      args.config, os.path.join(runs, "replicated"), f"--config.seed={args.seed}",
      f"--config.num_replicas={args.replicas}", *extra)
  singles, single_seconds = [], []
  for r in range(args.replicas):
    summary, seconds = train(args.config, os.path.join(runs, f"seed{args.seed + r}"),
                             f"--config.seed={args.seed + r}", *extra)
    singles.append(summary)
    single_seconds.append(seconds)
  metric = "neg_elbo"
  by_replica = [r["test"][metric] for r in replicated["replicas"]]
  sequential = [s["test"][metric] for s in singles]
  result = {
      "config": args.config, "extra_flags": extra, "replicas": args.replicas, "metric": f"test/{metric}",
      "replicated": {"per_seed": by_replica, "mean": float(np.mean(by_replica)),
                     "sd": float(np.std(by_replica, ddof=1)), "wall_seconds": replicated_seconds,
                     "train_seconds": replicated["train_seconds"]},
      "sequential": {"per_seed": sequential, "mean": float(np.mean(sequential)),
                     "sd": float(np.std(sequential, ddof=1)), "wall_seconds": sum(single_seconds),
                     "wall_seconds_each": single_seconds,
                     "train_seconds": sum(s["train_seconds"] for s in singles)},
      "max_abs_difference": float(np.max(np.abs(np.subtract(by_replica, sequential)))),
      "machine": {"cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                  "date": time.strftime("%Y-%m-%d")},
  }
  rep, seq = result["replicated"], result["sequential"]
  table = [f"# {args.replicas} seeds of {os.path.basename(args.config)}: one program against "
           f"{args.replicas} runs", "",
           "| way | test -ELBO (mean +- sd, nats) | wall s | train s |", "|---|---|---|---|",
           f"| one run, num_replicas={args.replicas} | {rep['mean']:.2f} +- {rep['sd']:.2f} | "
           f"{rep['wall_seconds']:.0f} | {rep['train_seconds']:.0f} |",
           f"| {args.replicas} sequential runs | {seq['mean']:.2f} +- {seq['sd']:.2f} | "
           f"{seq['wall_seconds']:.0f} | {seq['train_seconds']:.0f} |", "",
           "per seed, replicated vs single: " + ", ".join(
               f"{a:.3f}/{b:.3f}" for a, b in zip(by_replica, sequential)),
           f"largest difference {result['max_abs_difference']:.2e} nats; wall time ratio "
           f"{seq['wall_seconds'] / rep['wall_seconds']:.2f}x ({time.strftime('%Y-%m-%d')}, "
           f"{os.cpu_count()} CPU cores)"]
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, "replicas_vs_sequential.json"), "w") as f:
    json.dump(result, f, indent=2)
  with open(os.path.join(args.out, "replicas_vs_sequential.md"), "w") as f:
    f.write("\n".join(table) + "\n")
  print("\n".join(table))


if __name__ == "__main__":
  main()

"""What a run writes as it goes: metrics.jsonl lines (one per replica per logging
point), their TensorBoard scalars and console lines, atomic JSON files, and the
truncation of logs past the step a resumed run restarts from."""
from __future__ import annotations

import json
import os
from typing import Any


def write_json_atomic(path: str, obj: Any) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2, sort_keys=True)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def truncate_metrics(path: str, last_step: int) -> None:
  """Drops logged lines past the step a resumed run restarts from."""
  if not os.path.exists(path):
    return
  def keep(line: str) -> bool:
    try:
      return json.loads(line)["step"] <= last_step
    except (ValueError, KeyError):  # a line cut short by a kill
      return False

  with open(path) as f:
    lines = [l for l in f if l.strip() and keep(l)]
  with open(path, "w") as f:
    f.writelines(lines)


def log_record(record, total_steps, evaluated, workdir, writer, log) -> None:
  """One metrics.jsonl line, its TensorBoard scalars (per replica: under replica_r/)
  and a console line."""
  with open(os.path.join(workdir, "metrics.jsonl"), "a") as f:
    f.write(json.dumps(record) + "\n")
  prefix = f"replica_{record['replica']}/" if "replica" in record else ""
  writer.scalars(record["step"], {prefix + (k if "/" in k else f"train/{k}"): v
                                  for k, v in record.items() if k not in ("step", "replica")})
  shown = " ".join(f"{k} {record['train/' + k]:.2f}" for k in ("loss", "recon", "kl")
                   if record.get("train/" + k) is not None)
  if evaluated:
    headline = "neg_elbo" if "test/neg_elbo" in record else "recon"
    shown += f" | test {headline} {record['test/' + headline]:.2f}"
  who = f"replica {record['replica']} " if "replica" in record else ""
  log(f"{who}step {record['step']}/{total_steps} epoch {record['epoch']:.2f} "
      f"{shown or 'no update applied'} | skipped {record['skipped_total']} | "
      f"{record['examples_per_sec']:.0f} ex/s")


def metrics_record(pending, step, steps_per_epoch, skipped_total, batch_size) -> dict:
  """One metrics.jsonl line: means over the applied steps since the last logging point."""
  sums, steps = pending["sums"], pending["steps"]
  applied = steps - int(sums.get("skipped", 0))
  means = {k: v / applied if applied else None for k, v in sums.items() if k != "skipped"}
  means["skipped"] = sums.get("skipped", 0) / steps if steps else 0.0
  return {"step": step, "epoch": step / steps_per_epoch,
          **{f"train/{k}": v for k, v in means.items()}, "skipped_total": skipped_total,
          "examples_per_sec": steps * batch_size / max(pending["seconds"], 1e-9)}

"""Collects the Burda et al. (2015) Table 1 rows into one results table.

Each run is trained with `experiments/configs/iwae_table1.py` (one stochastic
layer) or `hvae2_iwae_table.py` (two; `ladder_vae.py` for the ladder VAE, which
has no published row) and evaluated with
`experiments/evaluate.py --workdir DIR --k 5000` (or `--subset N`) first; this script reads each
run's config.json, metrics.jsonl and eval/eval.json and writes
`OUT.json` (one record per row: model, k_train, epochs_run, test_nll,
published_nll, ...) and `OUT.md`. With --update, the rows already in OUT.json
stay unless a run given now has the same model (a run finished in a later
session replaces its row; the others keep their recorded numbers and workdirs) and
the rows are ordered by stochastic layers, ladder after the rest, then k (train);
without it they are in
the order of --runs. A hierarchical run's row also holds each layer's active units
and KL (`layers`).

  python experiments/table1_report.py --runs runs/table1_vae,runs/table1_k5,runs/table1_k50 \
      --out experiments/results/iwae_table1
  python experiments/table1_report.py --runs runs/table1_k5 --out experiments/results/iwae_table1 --update
"""
from __future__ import annotations

import json
import os
import sys

from absl import app, flags

_RUNS = flags.DEFINE_list("runs", None, "Workdirs of the runs, evaluated with evaluate.py.")
_OUT = flags.DEFINE_string("out", None, "Output path without extension (.json and .md are written).")
_UPDATE = flags.DEFINE_bool("update", False, "Keep OUT.json's rows for models not among --runs.")
flags.mark_flags_as_required(["runs", "out"])

# The published rows these protocols reproduce (Burda et al. 2015, Table 1, test NLL
# with k=5000), keyed by (stochastic layers, objective, k_train); IWAE with k=1 is the VAE.
PUBLISHED_NLL = {(1, "elbo", 1): 88.71, (1, "iwae", 1): 88.71, (1, "iwae", 5): 87.63,
                 (1, "iwae", 50): 87.10,
                 (2, "elbo", 1): 85.33, (2, "iwae", 1): 85.33, (2, "iwae", 5): 83.89,
                 (2, "iwae", 50): 82.90}
HIERARCHICAL_MODELS = ("hvae", "ladder")
TOTAL_EPOCHS = 3280


def row(workdir: str) -> dict:
  """One table row from a trained and evaluated run; raises ValueError naming what is missing."""
  paths = {name: os.path.join(workdir, name)
           for name in ("config.json", "metrics.jsonl", os.path.join("eval", "eval.json"))}
  for name, path in paths.items():
    if not os.path.exists(path):
      raise ValueError(f"{workdir}: no {name} (train with iwae_table1.py, hvae2_iwae_table.py "
                       f"or ladder_vae.py, then run experiments/evaluate.py --workdir {workdir} "
                       f"--k 5000)")
  with open(paths["config.json"]) as f:
    config = json.load(f)
  with open(paths[os.path.join("eval", "eval.json")]) as f:
    result = json.load(f)
  with open(paths["metrics.jsonl"]) as f:
    records = [json.loads(line) for line in f if line.strip()]
  step = result["checkpoint_step"]
  logged = [r for r in records if r["step"] == step]
  if not logged:
    raise ValueError(f"{workdir}: metrics.jsonl has no record at the evaluated step {step}")
  objective = config["objective"]
  k_train = config["num_samples"]
  hierarchical = config["model"] in HIERARCHICAL_MODELS
  layers = len(config["latent_dims"]) if hierarchical else 1
  model = f"{'VAE' if objective == 'elbo' else 'IWAE'} (k={k_train})"
  if config["model"] == "ladder":
    model = "ladder " + model
  if hierarchical:  # even with one layer: never the same name as a Table 1 one-layer row
    model = f"{layers}-layer {model}"
  published = None if config["model"] == "ladder" else PUBLISHED_NLL.get((layers, objective, k_train))
  return {
      "model": model, "stochastic_layers": layers, "k_train": k_train,
      "epochs_run": logged[-1]["epoch"],
      "epochs_protocol": TOTAL_EPOCHS, "checkpoint_step": step,
      "test_nll": result["test"]["nll"], "test_nll_stderr": result["test"]["nll_stderr"],
      "k_eval": result["k"], "eval_examples": result["examples"],
      "published_nll": published,
      "neg_elbo": result["test"]["neg_elbo"], "active_units": result["active_units"],
      **({"layers": result["layers"]} if "layers" in result else {}),
      "workdir": workdir,
  }


def markdown(rows: list[dict]) -> str:
  lines = ["| model | k (train) | epochs run | test NLL (k=5000) | test examples | active units "
           "| published | difference |",
           "|---|---|---|---|---|---|---|---|"]
  for r in rows:
    published = r["published_nll"]
    units = (" + ".join(str(layer["active_units"]) for layer in r["layers"]) if "layers" in r
             else str(r.get("active_units", "")))
    lines.append(f"| {r['model']} | {r['k_train']} | {r['epochs_run']:g} / {r['epochs_protocol']} | "
                 f"{r['test_nll']:.2f} +- {r['test_nll_stderr']:.2f} | "
                 f"{r.get('eval_examples', '')} | {units} | "
                 + ("n/a | n/a |" if published is None
                    else f"{published:.2f} | {r['test_nll'] - published:+.2f} |"))
  return "\n".join(lines) + "\n"


def merged(previous: list[dict], new: list[dict]) -> list[dict]:
  """`previous` with each row replaced by the new row of the same model, new models
  appended; ordered by stochastic layers (ladder rows after the others), then k
  (train), as in the paper's table."""
  by_model = {r["model"]: r for r in previous}
  by_model.update({r["model"]: r for r in new})
  return sorted(by_model.values(), key=lambda r: (r.get("stochastic_layers", 1),
                                                  "ladder" in r["model"], r["k_train"], r["model"]))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  try:
    rows = [row(w) for w in _RUNS.value]
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  names = [r["model"] for r in rows]
  for name in sorted({n for n in names if names.count(n) > 1}):
    print(f"error: --runs gives two runs of the row {name!r} "
          f"({', '.join(r['workdir'] for r in rows if r['model'] == name)}): give one",
          file=sys.stderr)
    sys.exit(2)
  if _UPDATE.value:
    if not os.path.exists(_OUT.value + ".json"):
      print(f"error: --update: {_OUT.value}.json does not exist (run without --update to create it)",
            file=sys.stderr)
      sys.exit(2)
    try:
      with open(_OUT.value + ".json") as f:
        rows = merged(json.load(f), rows)
    except (ValueError, KeyError, TypeError) as e:
      print(f"error: --update: {_OUT.value}.json is not a table this script wrote "
            f"({type(e).__name__}: {e})", file=sys.stderr)
      sys.exit(2)
  os.makedirs(os.path.dirname(_OUT.value) or ".", exist_ok=True)
  with open(_OUT.value + ".json", "w") as f:
    json.dump(rows, f, indent=2)
  with open(_OUT.value + ".md", "w") as f:
    f.write(markdown(rows))
  print(markdown(rows), end="")


if __name__ == "__main__":
  app.run(main)

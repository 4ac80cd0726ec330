"""The VQ-VAE comparison table: codebook use and log-likelihood bounds per run.

  python experiments/vqvae_report.py --vqvae ema=runs/vqvae_ema,loss=runs/vqvae_loss \
      --priors ema=runs/prior_ema,loss=runs/prior_loss --out experiments/results/vqvae_mnist \
      --data_dir ../shared/data

For each named VQ-VAE run (and the prior fitted to its codes, same name): test
codes used and perplexity, reconstruction, the bound under the uniform prior
(recon + P log K) and under the learned prior (recon - log p(z_q)), in nats and
bits/dim. Writes vqvae_report.json, vqvae_report.md and codebook_usage.png
(code frequencies over the test set, sorted) into --out, and copies each run's
summary.json, metrics.jsonl and pictures beside them (no checkpoints).
"""
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

_VQVAE = flags.DEFINE_string("vqvae", None, "name=workdir,... of VQ-VAE runs.")
_PRIORS = flags.DEFINE_string("priors", "", "name=workdir,... of their prior runs (same names).")
_OUT = flags.DEFINE_string("out", None, "Output folder.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Data folder (default: the runs').")
flags.mark_flags_as_required(["vqvae", "out"])


def _named(spec: str) -> dict:
  pairs = [p.split("=", 1) for p in spec.split(",") if p]
  if any(len(p) != 2 for p in pairs):
    raise ValueError(f"expected name=workdir,..., got {spec!r}")
  return dict(pairs)


def _summary(workdir: str) -> dict:
  with open(os.path.join(workdir, "summary.json")) as f:
    return json.load(f)


def report_rows(vqvae: dict, priors: dict) -> list[dict]:
  rows = []
  for name, workdir in vqvae.items():
    s = _summary(workdir)
    test, pixels = s["test"], 28 * 28
    row = {"run": name, "codebook_update": _config(workdir)["codebook_update"],
           "epochs": s["epochs"], "codes_used": test["codes_used"],
           "num_codes": _config(workdir)["num_codes"], "perplexity": test["perplexity"],
           "recon": test["recon"], "uniform_bound": test["neg_elbo"],
           "train_seconds": s["train_seconds"]}
    if name in priors:
      p = _summary(priors[name])
      row.update(prior_epochs=p["epochs"], prior_nll=p["test"]["prior_nll"],
                 learned_bound=p["test"]["neg_elbo"],
                 learned_bound_bits_per_dim=p["test"]["neg_elbo"] / (pixels * math.log(2)),
                 prior_train_seconds=p["train_seconds"])
    rows.append(row)
  return rows


def _config(workdir: str) -> dict:
  with open(os.path.join(workdir, "config.json")) as f:
    return json.load(f)


def markdown(rows: list[dict]) -> str:
  lines = ["| run | codebook | codes used (test) | perplexity | recon | bound, uniform prior | "
           "prior NLL | bound, learned prior | bits/dim |", "|---" * 9 + "|"]
  for r in rows:
    learned = (f"{r['prior_nll']:.2f} | {r['learned_bound']:.2f} | "
               f"{r['learned_bound_bits_per_dim']:.4f}" if "prior_nll" in r else "- | - | -")
    lines.append(f"| {r['run']} | {r['codebook_update']} | {r['codes_used']:.0f}/{r['num_codes']} "
                 f"| {r['perplexity']:.1f} | {r['recon']:.2f} | {r['uniform_bound']:.2f} | "
                 f"{learned} |")
  return "\n".join(lines) + "\n\nNats per test example unless named; bits/dim = nats / (784 ln 2).\n"


def main(argv):
  del argv
  import vaejax
  from vaejax import plots, runs as runs_lib
  try:
    vqvae, priors = _named(_VQVAE.value), _named(_PRIORS.value)
    rows = report_rows(vqvae, priors)
    counts = {}
    for name, workdir in vqvae.items():
      run = vaejax.load_run(workdir)
      counts[f"{name} ({run.config.codebook_update})"] = run.model.code_counts(
          run.params, run.examples("test", data_dir=_DATA_DIR.value))
  except (ValueError, OSError, KeyError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  os.makedirs(_OUT.value, exist_ok=True)
  with open(os.path.join(_OUT.value, "vqvae_report.json"), "w") as f:
    json.dump({"rows": rows, "code_counts": {k: v.tolist() for k, v in counts.items()}}, f,
              indent=1)
  table = markdown(rows)
  with open(os.path.join(_OUT.value, "vqvae_report.md"), "w") as f:
    f.write(table)
  plots.code_usage(os.path.join(_OUT.value, "codebook_usage.png"), counts)
  for kind, runs in (("vqvae", vqvae), ("prior", priors)):
    for name, workdir in runs.items():
      runs_lib.copy_run_record(workdir, os.path.join(_OUT.value, f"{kind}_{name}"))
  print(table)


if __name__ == "__main__":
  app.run(main)

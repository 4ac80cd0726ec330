"""Posterior collapse in sequence VAEs, side by side: Bowman et al.'s (2016) table
and their KL-over-training figure, from finished runs of seqvae_names.py /
vrae_seq_mnist.py (or any run with eval_collapse_metrics).

  python3 experiments/sequence_report.py \
      --runs 'fixes=runs/names_fixes,no fixes=runs/names_nofix,RNN LM=runs/names_rnnlm' \
      --out experiments/results/sequence_vaes/names

For each named run, from its summary.json: the test NLL (importance-sampled, with
its k and standard error), the -ELBO, reconstruction and KL terms, perplexity
(corpora), I(x; z) and active units, and the decoder's next-step accuracy at the
posterior mean and with z replaced by a prior draw; from metrics.jsonl the
training KL and reconstruction per logging step (kl_over_training.png, with the
KL weight of the run's warm-up). Writes sequence_report.json and .md, and copies
each run's samples (samples.txt or samples.png) as <name>_samples.*.
"""
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

_RUNS = flags.DEFINE_string("runs", None, "name=workdir,... of finished runs.")
_OUT = flags.DEFINE_string("out", None, "Output folder.")
flags.mark_flags_as_required(["runs", "out"])
COLUMNS = (("nll", "test NLL"), ("nll_stderr", "s.e."), ("neg_elbo", "-ELBO"),
           ("recon", "recon"), ("kl", "KL"), ("perplexity", "perplexity"),
           ("mutual_information", "I(x;z)"), ("active_units", "active units"),
           ("next_step_accuracy", "acc. at mean z"),
           ("next_step_accuracy_prior_z", "acc. at prior z"))


def _named(spec: str) -> dict:
  pairs = [p.split("=", 1) for p in spec.split(",") if p]
  if any(len(p) != 2 for p in pairs):
    raise ValueError(f"expected name=workdir,..., got {spec!r}")
  return dict(pairs)


def row_of(name: str, workdir: str) -> dict:
  with open(os.path.join(workdir, "summary.json")) as f:
    summary = json.load(f)
  with open(os.path.join(workdir, "config.json")) as f:
    config = json.load(f)
  test = summary["test"]
  return {"run": name, "dataset": config["dataset"], "model": config["model"],
          "latent_dim": config["latent_dim"], "word_dropout": config.get("word_dropout", 0.0),
          "kl_warmup_steps": config["kl_warmup_steps"],
          "kl_warmup_shape": config.get("kl_warmup_shape", "linear"),
          "free_bits": config["free_bits"],
          "epochs": config["epochs"], "steps": summary["steps"],
          "train_seconds": summary["train_seconds"], "nll_num_samples": test.get("nll_num_samples"),
          **{key: test[key] for key, _ in COLUMNS if key in test}}


def curves_of(workdir: str) -> dict:
  steps, kl, recon = [], [], []
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    for line in f:
      record = json.loads(line)
      if "train/kl" in record:
        steps.append(record["step"])
        kl.append(record["train/kl"])
        recon.append(record["train/recon"])
  return {"step": steps, "kl": kl, "recon": recon}


def markdown(rows) -> str:
  shown = [(k, t) for k, t in COLUMNS if any(k in r for r in rows)]
  lines = ["| run | model | z dims | word dropout | KL warm-up | free bits | epochs | "
           + " | ".join(t for _, t in shown) + " |",
           "|" + "---|" * (7 + len(shown))]
  for r in rows:
    warmup = f"{r['kl_warmup_steps']} ({r['kl_warmup_shape']})" if r["kl_warmup_steps"] else "none"
    cells = [r["run"], r["model"], str(r["latent_dim"]), f"{r['word_dropout']:g}", warmup,
             f"{r['free_bits']:g}", str(r["epochs"])]
    for key, _ in shown:
      value = r.get(key)
      cells.append("" if value is None else f"{value:.3f}" if key.startswith("next") or key in (
          "mutual_information",) else f"{value:.2f}" if isinstance(value, float) else str(value))
    lines.append("| " + " | ".join(cells) + " |")
  k = {r.get("nll_num_samples") for r in rows} - {None}
  per_token = "; perplexity per token, EOS included" if any("perplexity" in r for r in rows) else ""
  lines.append(f"\nNLL, -ELBO, recon, KL and I(x;z) in nats per sequence; NLL importance-sampled "
               f"with k = {', '.join(map(str, sorted(k)))}{per_token}.")
  return "\n".join(lines) + "\n"


def figure(curves: dict, rows, path: str) -> None:
  import numpy as np

  from vaejax import objectives
  from vaejax.viz import pyplot
  plt = pyplot()
  fig, (ax_kl, ax_recon) = plt.subplots(1, 2, figsize=(11, 4))
  colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  for i, r in enumerate(rows):  # one colour per run in both panels
    c, colour = curves[r["run"]], colours[i % len(colours)]
    if r["latent_dim"]:
      ax_kl.plot(c["step"], c["kl"], color=colour, label=r["run"])
      if r["kl_warmup_steps"]:
        penalty = objectives.make_kl_penalty(warmup_steps=r["kl_warmup_steps"],
                                             warmup_shape=r["kl_warmup_shape"])
        weights = [float(penalty.weight(s)) for s in c["step"]]
        ax_kl.plot(c["step"], np.array(weights) * max(c["kl"]), ls=":", color=colour,
                   label=f"{r['run']}: KL weight (scaled)")
    ax_recon.plot(c["step"], c["recon"], color=colour, label=r["run"])
  ax_kl.set(xlabel="training step", ylabel="KL (nats, train batches)", title="KL term")
  ax_recon.set(xlabel="training step", ylabel="-log p(x|z) (nats)",
               title="reconstruction (RNN LM: -log p(x))")
  for ax in (ax_kl, ax_recon):
    ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)


def main(argv):
  del argv
  runs = _named(_RUNS.value)
  os.makedirs(_OUT.value, exist_ok=True)
  rows = [row_of(name, workdir) for name, workdir in runs.items()]
  curves = {name: curves_of(workdir) for name, workdir in runs.items()}
  stem = os.path.join(_OUT.value, "sequence_report")
  with open(stem + ".json", "w") as f:
    json.dump({"rows": rows, "curves": curves}, f, indent=1)
  table = markdown(rows)
  with open(stem + ".md", "w") as f:
    f.write(table)
  figure(curves, rows, os.path.join(_OUT.value, "kl_over_training.png"))
  for name, workdir in runs.items():
    safe = name.replace(" ", "_")
    for sample in ("samples.txt", "samples.png"):
      if os.path.exists(os.path.join(workdir, sample)):
        shutil.copy(os.path.join(workdir, sample),
                    os.path.join(_OUT.value, f"{safe}_{sample}"))
  print(table)


if __name__ == "__main__":
  app.run(main)

"""Tables and plots of experiments/compare_estimators.py: table.md and PNGs in its workdir.

write_snr_outputs: per checkpoint, each estimator's gradient SNR and variance for
each K (encoder and decoder parameter groups) and the importance-sampling ESS;
snr_vs_k_<checkpoint>.png. write_curve_outputs: the test -IWAE bound against steps
and training seconds for each estimator (curves.png), and each one's last row in table.md.
"""
import os

from vaejax.viz import pyplot


def write_snr_outputs(summary, workdir, config):
  plt = pyplot()
  lines = []
  for ckpt, out in summary.items():
    lines += [f"## {ckpt}", "", "| estimator | group | " + " | ".join(f"SNR K={k}" for k in config.ks)
              + " | " + " | ".join(f"var K={k}" for k in config.ks) + " |",
              "|---|---|" + "---|" * (2 * len(config.ks))]
    for name, groups in out["snr"].items():
      for group in ("encoder", "decoder"):
        snr = " | ".join(f"{groups[group][str(k)]:.4f}" for k in config.ks)
        var = " | ".join(f"{out['variance'][name][group][str(k)]:.3e}" for k in config.ks)
        lines.append(f"| {name} | {group} | {snr} | {var} |")
    lines += ["", "Importance-sampling ESS of K samples from q (mean over the minibatch): "
              + ", ".join(f"K={k}: {out['ess'][str(k)]:.2f}" for k in config.ks), ""]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, group in zip(axes, ("encoder", "decoder")):
      for name, groups in out["snr"].items():
        ax.plot(config.ks, [groups[group][str(k)] for k in config.ks], marker="o", label=name)
      ax.set(xscale="log", yscale="log", xlabel="K", ylabel="SNR", title=f"{group} ({ckpt})")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(workdir, f"snr_vs_k_{ckpt}.png"), dpi=100)
    plt.close(fig)
  with open(os.path.join(workdir, "table.md"), "w") as f:
    f.write("\n".join(lines) + "\n")


def write_curve_outputs(summary, workdir):
  plt = pyplot()
  rows = summary["rows"]
  names = list(dict.fromkeys(r["estimator"] for r in rows))
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  for name in names:
    rs = [r for r in rows if r["estimator"] == name]
    for ax, x in zip(axes, ("step", "train_seconds")):
      ax.plot([r[x] for r in rs], [r["test_neg_iwae"] for r in rs], marker=".", label=name)
  for ax, x in zip(axes, ("steps", "training seconds")):
    ax.set(xlabel=x, ylabel="test -IWAE bound (nats)", yscale="log")
  axes[0].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, "curves.png"), dpi=100)
  plt.close(fig)
  lines = ["| estimator | steps | train s | test -ELBO | test -IWAE | enc var | dec var |",
           "|---|---|---|---|---|---|---|"]
  for name in names:
    r = [r for r in rows if r["estimator"] == name][-1]
    lines.append(f"| {name} | {r['step']} | {r['train_seconds']:.1f} | {r['test_neg_elbo']:.2f} | "
                 f"{r['test_neg_iwae']:.2f} | {r.get('encoder_variance', float('nan')):.3e} | "
                 f"{r.get('decoder_variance', float('nan')):.3e} |")
  with open(os.path.join(workdir, "table.md"), "w") as f:
    f.write("\n".join(lines) + "\n")

"""How well autoencoders match their prior: the AAE/WAE/VAE comparison table, the
Figure-2 picture and the Parzen-window log-likelihood.

  python3 experiments/aae_report.py --runs vae=runs/vae_g,aae=runs/aae_g,aae8=runs/aae_mnist \
      --figure 'gaussian=vae,aae' --parzen aae8 --out runs/aae_report --data_dir ../shared/data

For each named run (any model with a 2-D or larger latent and a prior of
`vaejax.latent_priors`): the test codes' (posterior means') MMD^2 and sliced
Wasserstein distance to as many prior draws, the share of codes nearest their
digit's component (supervised runs with the mixture prior), and from summary.json the reconstruction and
the AAE's discriminator accuracy. --figure draws one row per prior (its runs as
columns): test codes coloured by digit over the prior's density. --parzen: for
those runs, 10,000 decoded prior samples (means), the bandwidth chosen on the
validation split (the run needs validation_split=True), then the test
log-likelihood of the grey test images. Writes aae_report.json, aae_report.md,
codes_over_priors.png into --out, and copies each run's summary and pictures.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

_RUNS = flags.DEFINE_string("runs", None, "name=workdir,... of trained runs.")
_FIGURE = flags.DEFINE_string("figure", "", "prior=name,name;prior=... rows of the figure.")
_PARZEN = flags.DEFINE_string("parzen", "", "name,... of runs to score by Parzen window.")
_PARZEN_SAMPLES = flags.DEFINE_integer("parzen_samples", 10000, "Decoded prior samples.")
_PARZEN_SUBSET = flags.DEFINE_integer(
    "parzen_subset", 0, "Score this many evenly spaced validation/test images (0: all).")
_OUT = flags.DEFINE_string("out", None, "Output folder.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Data folder (default: the runs').")
flags.mark_flags_as_required(["runs", "out"])
PARZEN_SIGMAS = (0.05, 0.08, 0.1, 0.12, 0.15, 0.18, 0.2, 0.25, 0.3, 0.4)
EXTENT = (-8.0, 8.0, -8.0, 8.0)


def _named(spec: str) -> dict:
  pairs = [p.split("=", 1) for p in spec.split(",") if p]
  if any(len(p) != 2 for p in pairs):
    raise ValueError(f"expected name=workdir,..., got {spec!r}")
  return dict(pairs)


def row_of(name, run, test) -> dict:
  import jax
  from vaejax.models import aae
  with open(os.path.join(run.workdir, "summary.json")) as f:
    summary = json.load(f)
  metrics = aae.match_metrics(run.model, run.params, test, key=jax.random.PRNGKey(0))
  row = {"run": name, "model": run.config.model, "latent_prior": run.config.latent_prior,
         "supervised": bool(run.config.supervised), "latent_dim": run.config.latent_dim,
         "epochs": run.config.epochs, "recon": summary["test"]["recon"],
         **{k: float(v) for k, v in jax.device_get(metrics).items()}}
  for key in ("neg_elbo", "discriminator_accuracy"):
    if key in summary["test"]:
      row[key] = summary["test"][key]
  return row


def parzen(run, *, data_dir, num_samples=10000, subset=0) -> dict:
  """Bandwidth by validation log-likelihood, then the test mean and standard error."""
  import jax
  import numpy as np
  from vaejax import evaluate, run_data
  if not run.config.validation_split:
    raise ValueError(f"{run.workdir}: the Parzen bandwidth is chosen on the validation "
                     f"split; train with validation_split=True")
  config = run.config.copy_and_resolve_references()
  config.data_dir = data_dir or config.data_dir
  config.eval_subset = subset
  _, evals = run_data.load_data(config)
  keys = jax.random.split(jax.random.PRNGKey(1), num_samples)
  z = jax.vmap(lambda k: run.model.prior(run.params, None).sample(key=k))(keys)
  images = jax.vmap(lambda v: run.model.mean_image(run.params, None, v))(z)
  samples = np.asarray(images).reshape(num_samples, -1)
  flat = {s: np.asarray(d.images, np.float32).reshape(len(d), -1) / d.max_value
          for s, d in evals.items()}
  validation = np.asarray(evaluate.parzen_log_likelihood(samples, flat["validation"],
                                                         PARZEN_SIGMAS)).mean(axis=1)
  sigma = PARZEN_SIGMAS[int(np.argmax(validation))]
  test = np.asarray(evaluate.parzen_log_likelihood(samples, flat["test"], (sigma,)))[0]
  return {"parzen_sigma": sigma, "parzen_validation": dict(zip(map(str, PARZEN_SIGMAS),
                                                               validation.tolist())),
          "parzen_test": float(test.mean()),
          "parzen_test_stderr": float(test.std(ddof=1) / np.sqrt(len(test)))}


def figure_rows(spec: str, loaded: dict, tests: dict) -> list:
  import jax
  import jax.numpy as jnp
  import numpy as np
  from vaejax import latent_priors
  rows = []
  for part in filter(None, spec.split(";")):
    prior_name, names = part.split("=", 1)
    prior = latent_priors.make_latent_prior(prior_name, 2)
    grid = jnp.linspace(EXTENT[0], EXTENT[1], 200)
    panels = []
    for name in names.split(","):
      run, test = loaded[name], tests[name]
      if run.config.latent_dim != 2:
        raise ValueError(f"--figure: run {name!r} has latent_dim={run.config.latent_dim}; the "
                         f"figure shows 2-D codes")
      codes = jax.vmap(lambda x: run.model.posterior(run.params, x).mean)(test)
      panel = {"title": f"{name}: {run.config.model}, {prior_name}", "codes": np.asarray(codes),
               "labels": np.asarray(test["label"]), "extent": EXTENT}
      if prior.has_density:
        zz = jnp.stack(jnp.meshgrid(grid, grid), -1)
        panel["density"] = np.asarray(jnp.exp(jax.vmap(jax.vmap(prior.log_prob))(zz)))
      else:
        keys = jax.random.split(jax.random.PRNGKey(0), 5000)
        panel["prior_samples"] = np.asarray(jax.vmap(lambda k: prior.sample(key=k))(keys))
      panels.append(panel)
    rows.append(panels)
  return rows


def markdown(rows: list[dict]) -> str:
  lines = ["| run | model | prior | supervised | test recon | MMD^2 | sliced W2 | "
           "codes in own component | discriminator accuracy | Parzen LL (sigma) |",
           "|---" * 10 + "|"]
  for r in rows:
    fmt = lambda k, f="{:.4f}": f.format(r[k]) if k in r else "-"  # noqa: E731
    parzen = (f"{r['parzen_test']:.1f} +- {r['parzen_test_stderr']:.1f} ({r['parzen_sigma']})"
              if "parzen_test" in r else "-")
    lines.append(f"| {r['run']} | {r['model']} | {r['latent_prior']} | {r['supervised']} | "
                 f"{r['recon']:.2f} | {fmt('mmd')} | {fmt('sliced_wasserstein', '{:.3f}')} | "
                 f"{fmt('component_accuracy', '{:.3f}')} | "
                 f"{fmt('discriminator_accuracy', '{:.3f}')} | {parzen} |")
  return "\n".join(lines) + ("\n\nTest split of MNIST (dynamically binarised training; the "
                             "fixed binarised test draw), codes = posterior means; MMD^2 with "
                             "the IMQ kernel (unbiased, can be < 0).\n")


def main(argv):
  del argv
  import vaejax
  from vaejax import plots, runs as runs_lib
  try:
    runs = _named(_RUNS.value)
    loaded = {name: vaejax.load_run(workdir) for name, workdir in runs.items()}
    tests = {name: run.examples("test", data_dir=_DATA_DIR.value) for name, run in loaded.items()}
    rows = [row_of(name, loaded[name], tests[name]) for name in runs]
    for name in filter(None, _PARZEN.value.split(",")):
      rows[list(runs).index(name)].update(parzen(
          loaded[name], data_dir=_DATA_DIR.value, num_samples=_PARZEN_SAMPLES.value,
          subset=_PARZEN_SUBSET.value))
    figure = figure_rows(_FIGURE.value, loaded, tests) if _FIGURE.value else None
  except (ValueError, OSError, KeyError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  os.makedirs(_OUT.value, exist_ok=True)
  with open(os.path.join(_OUT.value, "aae_report.json"), "w") as f:
    json.dump({"rows": rows}, f, indent=1)
  table = markdown(rows)
  with open(os.path.join(_OUT.value, "aae_report.md"), "w") as f:
    f.write(table)
  if figure:
    plots.codes_over_priors(os.path.join(_OUT.value, "codes_over_priors.png"), figure)
  for name, workdir in runs.items():
    runs_lib.copy_run_record(workdir, os.path.join(_OUT.value, name))
  print(table)


if __name__ == "__main__":
  app.run(main)

"""Paper figures from trained runs: one --figure per figure; each writes PNGs and a
JSON of the numbers they show into --out.

  python3 experiments/figures.py --figure=class_grid --workdirs=CVAE_RUN --out DIR
  python3 experiments/figures.py --figure=traversal --workdirs=BETA1_RUN,BETA8_RUN --out DIR
  python3 experiments/figures.py --figure=ae_vs_vae --workdirs=AE_RUN,VAE_RUN --out DIR
  python3 experiments/figures.py --figure=quadrants \\
      --workdirs=NN1,CVAE1[,NN2,CVAE2[,NN3,CVAE3]] --out DIR

class_grid  a label-conditioned CVAE (configs/cvae_mnist.py): class_grid.png (one
            row per digit, one prior draw per column, the same draw down a
            column), class_interpolation.png (per digit, z moving linearly
            between two prior draws), class_grid.json.
traversal   1 to 4 VAEs of different beta or capacity (configs/beta_vae_traversal.py):
            traversal.png, each run's largest-KL latent dimensions swept over
            [-3, 3] from one test digit's posterior mean; traversal.json, each
            run's test KL per dimension.
ae_vs_vae   a 2-D autoencoder and VAE (configs/ae_vs_vae_2d.py, vae_latent2d.py):
            ae_vs_vae.png, test codes by digit, the decoded grid, decoded N(0, I)
            draws; ae_vs_vae.json, grid extents, code spread, reconstruction.
quadrants   NN baseline / CVAE pairs, one pair per setting of 1, 2 or 3 observed
            quadrants (configs/cvae_quadrants.py): quadrants.md and .json, each
            run's test -log p(x_missing | x_observed) beside the Pyro example's
            numbers; quadrant_completions.png for the first pair's setting.

Runs are workdirs of experiments/train.py, read with vaejax.load_run; test images
are the run's evaluation data (experiment.examples: under dynamic binarisation
the fixed binary draw). Errors are one line on stderr, exit status 2.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # noqa: E402

# Beside this script, found however it is started (python -P, runpy, ...).
sys.path.insert(1, os.path.dirname(os.path.abspath(__file__)))
from figure_runs import (FigureError, Options, describe, eval_examples, load,  # noqa: E402
                         read_summary, saved_config, write_json)
from quadrant_figure import quadrants  # noqa: E402

FIGURES = ("class_grid", "traversal", "ae_vs_vae", "quadrants")
_FIGURE = flags.DEFINE_string("figure", None, f"Which figure: one of {', '.join(FIGURES)}.")
_WORKDIRS = flags.DEFINE_list("workdirs", [], "Comma-separated run workdirs (see above).")
_OUT = flags.DEFINE_string("out", None, "Folder for the PNGs and JSON (created).")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Override the runs' data_dir.")
_SEED = flags.DEFINE_integer("seed", 0, "Key for prior draws.")
_SUBSET = flags.DEFINE_integer("subset", 0, "traversal, ae_vs_vae: use this many test "
                               "examples (evenly spaced; 0: all).")
_NUM_DRAWS = flags.DEFINE_integer("num_draws", 10, "class_grid: prior draws (columns).")
_NUM_DIMS = flags.DEFINE_integer("num_dims", 5, "traversal: latent dimensions traversed per run.")
_TEST_INDEX = flags.DEFINE_integer("test_index", 0, "traversal: the test digit traversed from.")
_GRID = flags.DEFINE_integer("grid", 15, "ae_vs_vae: decoded grid points per axis.")
flags.mark_flags_as_required(["figure", "out"])

NUM_WORKDIRS = {"class_grid": ((1,), "CVAE_RUN"),
                "traversal": ((1, 2, 3, 4), "RUN[,RUN...] (1 to 4 runs)"),
                "ae_vs_vae": ((2,), "AE_RUN,VAE_RUN"),
                "quadrants": ((2, 4, 6), "NN1,CVAE1[,NN2,CVAE2[,NN3,CVAE3]]")}
TRAVERSAL_VALUES = (-3.0, 3.0, 9)  # linspace over the prior's bulk
VAE_EXTENT = (-3.0, 3.0)
NUM_PRIOR_SAMPLES = 36


# -- figures --------------------------------------------------------------------------

def class_grid(opts: Options, workdirs: list[str], key) -> dict:
  """class_grid.png [10 digits x num_draws], class_interpolation.png [10 x num_draws]."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  from vaejax import pictures, plots
  (workdir,) = workdirs
  saved = saved_config(workdir)
  if saved.model != "cvae" or saved.condition != "label" or saved.latent_dim < 1:
    raise FigureError(f"--figure=class_grid needs a label-conditioned CVAE with a latent "
                      f"(configs/cvae_mnist.py); {describe(workdir, saved)}")
  config, model, params, _, step = load(workdir, opts)
  n, digits = opts.num_draws, np.arange(10)
  grid_key, interp_key = jax.random.split(key)
  grid = np.asarray(pictures.class_conditioned_samples(model, params, key=grid_key, num_draws=n))
  learned = config.prior == "learned"
  plots.labelled_grid(
      os.path.join(opts.out, "class_grid.png"), grid, row_labels=[str(d) for d in digits],
      col_labels=[f"z{j + 1}" for j in range(n)],
      title="CVAE E[x | z, y]: one row per digit y, " + (
          "z = mu(y) + sigma(y) eps with one eps" if learned else "one z ~ N(0, I)")
      + " per column")
  # Interpolate the standardised draw: under a learned prior each row maps it through
  # its own p(z|y), so a column keeps one style for every digit either way.
  eps0, eps1 = jax.random.normal(interp_key, (2, model.latent_dim))
  t = jnp.linspace(0.0, 1.0, n)
  eps = (1 - t[:, None]) * eps0 + t[:, None] * eps1  # [n, latent_dim]

  def row(label):
    x = {"image": jnp.zeros(model.image_shape), "label": label}
    p = model.prior(params, x)
    return jax.vmap(lambda e: model.mean_image(params, x, p.mean + p.scale * e))(eps)

  interpolation = np.asarray(jax.vmap(row)(jnp.asarray(digits, jnp.int32)))
  plots.labelled_grid(
      os.path.join(opts.out, "class_interpolation.png"), interpolation,
      row_labels=[str(d) for d in digits], col_labels=[f"{v:.2g}" for v in np.asarray(t)],
      title="CVAE E[x | z, y]: " + ("z = mu(y) + sigma(y) ((1 - t) eps0 + t eps1)" if learned
                                    else "z = (1 - t) z0 + t z1, z0, z1 ~ N(0, I)"))
  summary = read_summary(workdir) or {}
  result = {"workdir": workdir, "checkpoint_step": step, "latent_dim": model.latent_dim,
            "prior": config.prior, "rows": digits.tolist(), "num_draws": n,
            "grid_shape": list(grid.shape), "interpolation_shape": list(interpolation.shape),
            "interpolation_t": np.asarray(t).tolist(), "test": summary.get("test")}
  write_json(opts.out, "class_grid.json", result)
  return result


def _traversal_title(config) -> str:
  if config.capacity_max > 0:
    return f"capacity C_max = {config.capacity_max:g} nats"
  return f"beta = {config.beta:g}"


def traversal(opts: Options, workdirs: list[str], key) -> dict:
  """traversal.png: per run, its num_dims largest-KL dimensions x TRAVERSAL_VALUES."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  from vaejax import evaluate, plots
  from vaejax.models import batched
  del key  # deterministic: posterior means and fixed sweeps
  for workdir in workdirs:
    saved = saved_config(workdir)
    if saved.latent_dim < 1 or saved.objective == "ae" or saved.model == "seqvae":
      raise FigureError(f"--figure=traversal needs image VAEs with a KL term (objective elbo "
                        f"or iwae, not seqvae); {describe(workdir, saved)}")
  values = jnp.linspace(*TRAVERSAL_VALUES)
  panels, runs = [], []
  for workdir in workdirs:
    config, model, params, test, step = load(workdir, opts)
    test, examples = eval_examples(config, test, opts.subset)
    if not 0 <= opts.test_index < len(test):
      raise FigureError(f"--test_index={opts.test_index} is outside the {len(test)} test examples")
    stats = evaluate.latent_statistics(model, params, examples)
    kl = np.asarray(stats["kl_per_dim"], np.float64)
    dims = np.argsort(-kl, kind="stable")[: min(opts.num_dims, model.latent_dim)]
    x = jax.tree_util.tree_map(lambda a: a[opts.test_index], examples)
    images = np.asarray(batched.traverse(model, params, x, dims=dims, values=values))
    title = _traversal_title(config)
    panels.append({"title": title, "images": images, "values": np.asarray(values),
                   "dims": dims, "kl_per_dim": kl})
    runs.append({"workdir": workdir, "checkpoint_step": step, "title": title, "beta": config.beta,
                 "capacity_max": config.capacity_max, "kl_per_dim": kl.tolist(),
                 "kl_total": float(kl.sum()),
                 "active_units": int(np.sum(np.asarray(stats["activity"]) > 0.01)),
                 "traversed_dims": dims.tolist()})
  plots.traversal_comparison(os.path.join(opts.out, "traversal.png"), panels)
  result = {"runs": runs, "values": np.asarray(values).tolist(), "test_index": opts.test_index,
            "examples": len(test)}
  write_json(opts.out, "traversal.json", result)
  return result


def _coverage(codes, lo: float, hi: float, bins: int = 30) -> float:
  """Fraction of a bins x bins grid over [lo, hi]^2 whose cell holds a code; codes [N, 2]."""
  import numpy as np
  counts, _, _ = np.histogram2d(codes[:, 0], codes[:, 1], bins=bins, range=[[lo, hi], [lo, hi]])
  return float(np.mean(counts > 0))


def ae_vs_vae(opts: Options, workdirs: list[str], key) -> dict:
  """ae_vs_vae.png: per model, codes [N, 2], manifold [grid, grid, H, W, C], prior draws."""
  import jax
  import numpy as np
  from vaejax import estimators, evaluate, plots
  from vaejax.models import batched
  roles = ("AE", "VAE")
  for role, workdir in zip(roles, workdirs):
    saved = saved_config(workdir)
    if saved.model != "vae" or saved.latent_dim != 2 or (saved.objective == "ae") != (role == "AE"):
      want = "objective='ae'" if role == "AE" else "objective elbo or iwae"
      raise FigureError(f"--figure=ae_vs_vae takes AE_RUN,VAE_RUN, VAE models with latent_dim=2; "
                        f"the {role} needs {want}: {describe(workdir, saved)}")
  prior_z = jax.random.normal(key, (NUM_PRIOR_SAMPLES, 2))  # the same draws for both decoders
  panels, models = [], {}
  for role, workdir in zip(roles, workdirs):
    config, model, params, test, step = load(workdir, opts)
    test, examples = eval_examples(config, test, opts.subset)
    codes = np.asarray(evaluate.latent_statistics(model, params, examples)["posterior_means"])
    if role == "VAE":
      lo, hi = VAE_EXTENT
    else:  # an AE's codes have no set scale: a square over their 0.5-99.5th percentiles
      lo = float(np.percentile(codes, 0.5, axis=0).min())
      hi = float(np.percentile(codes, 99.5, axis=0).max())
      if hi - lo < 1e-3:  # collapsed codes: still a grid with some width
        lo, hi = lo - 1.0, hi + 1.0
    manifold = np.asarray(batched.decode_grid(model, params, low=lo, high=hi, num=opts.grid))
    samples = np.asarray(batched.decode(model, params, prior_z))
    # -log p(x | z = encoder mean): the reconstruction score both models share.
    recon = evaluate.evaluate_dataset(model, estimators.make_estimator("ae").per_example, params,
                                      examples, key=key, batch_size=min(1000, len(test)))["recon"]
    labels = np.zeros(len(codes), int) if test.labels is None else np.asarray(test.labels)
    panels.append({"title": f"{role} (objective {config.objective})", "means": codes,
                   "labels": labels, "manifold": manifold, "extent": (lo, hi, lo, hi),
                   "samples": samples})
    inside = np.all((codes >= VAE_EXTENT[0]) & (codes <= VAE_EXTENT[1]), axis=1)
    models[role] = {
        "workdir": workdir, "checkpoint_step": step, "objective": config.objective,
        "extent": [lo, hi, lo, hi], "code_mean": codes.mean(0).tolist(),
        "code_std": codes.std(0).tolist(), "codes_in_prior_box": float(inside.mean()),
        "prior_box_coverage": _coverage(codes, *VAE_EXTENT),
        "test_recon_at_mean": float(recon)}
  plots.latent_space_comparison(os.path.join(opts.out, "ae_vs_vae.png"), panels)
  result = {
      "models": models, "examples": len(panels[0]["means"]), "grid": opts.grid,
      "num_prior_samples": NUM_PRIOR_SAMPLES,
      "notes": {"extent": "decoded grid (zmin, zmax, zmin, zmax): [-3, 3]^2 for the VAE, a "
                          "square over the AE codes' 0.5-99.5th percentiles for the AE",
                "codes_in_prior_box": "fraction of test codes inside [-3, 3]^2",
                "prior_box_coverage": "fraction of a 30 x 30 grid over [-3, 3]^2 whose cell "
                                      "holds a test code",
                "test_recon_at_mean": "mean -log p(x | z = encoder mean) on the test set, nats"}}
  write_json(opts.out, "ae_vs_vae.json", result)
  return result


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)
  figure, workdirs = _FIGURE.value, _WORKDIRS.value
  opts = Options(out=_OUT.value, data_dir=_DATA_DIR.value, seed=_SEED.value,
                 subset=_SUBSET.value, num_draws=_NUM_DRAWS.value, num_dims=_NUM_DIMS.value,
                 test_index=_TEST_INDEX.value, grid=_GRID.value)
  try:
    # Usage errors first: they need neither JAX nor the runs.
    if figure not in FIGURES:
      raise FigureError(f"unknown --figure={figure!r}; choose one of {list(FIGURES)}")
    counts, usage = NUM_WORKDIRS[figure]
    if len(workdirs) not in counts:
      raise FigureError(f"--figure={figure} takes --workdirs={usage}, got {len(workdirs)} "
                        f"workdir(s)")
    for workdir in workdirs:
      if not os.path.isdir(workdir):
        raise FigureError(f"{workdir} is not a directory")
    import jax

    from vaejax import runs
    for workdir in workdirs:
      if os.path.exists(os.path.join(workdir, "config.json")) and (
          runs.read_config(workdir).model == "seqvae"):
        raise FigureError(f"{workdir} is a sequence VAE run: these figures decode images in one "
                          f"pass; see its samples.png/samples.txt and "
                          f"experiments/sequence_report.py")
    os.makedirs(opts.out, exist_ok=True)
    draw = {"class_grid": class_grid, "traversal": traversal, "ae_vs_vae": ae_vs_vae,
            "quadrants": quadrants}[figure]
    draw(opts, workdirs, jax.random.PRNGKey(opts.seed))
  except (FigureError, OSError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print(f"{figure}: wrote into {opts.out}", flush=True)


if __name__ == "__main__":
  app.run(main)

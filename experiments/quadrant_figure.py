"""--figure=quadrants of experiments/figures.py: the CVAE quadrant-completion table (NN
baseline / CVAE x 1, 2, 3 observed quadrants, beside the Pyro example's numbers) and
the completions picture. Sohn et al. 2015, "Learning Structured Output
Representation using Deep Conditional Generative Models", section 5.1."""
import os

from figure_runs import FigureError, Options, describe, load, read_summary, saved_config, write_json

# Pyro's CVAE example (pyro.ai/examples/cvae.html; examples/cvae/util.py generate_table).
PYRO = {"NN baseline": {1: 100.4, 2: 61.9, 3: 25.4}, "CVAE": {1: 71.8, 2: 51.0, 3: 24.2}}
PYRO_NOTE = (
    "Pyro's numbers are on grey-level MNIST: the NN's is binary cross-entropy on grey "
    "pixels (not a normalised log-likelihood), the CVAE's its Monte-Carlo negative ELBO "
    "(an upper bound). Ours train on dynamically binarised digits and test on one fixed "
    "binary draw; the CVAE's is importance-sampled with k draws from q, the NN's exact. "
    "Compare the NN-CVAE gaps, not the digits.")


def _quadrant_entry(workdir: str, nn: bool) -> tuple:
  """(config, table entry) of one run; checked against its role in the pair."""
  config = saved_config(workdir)
  role = "NN baseline (latent_dim=0)" if nn else "CVAE (latent_dim > 0)"
  if config.model != "cvae" or config.condition != "quadrants" or (config.latent_dim == 0) != nn:
    raise FigureError(f"--figure=quadrants takes NN,CVAE pairs of configs/cvae_quadrants.py "
                      f"runs; the {role}: {describe(workdir, config)}")
  summary = read_summary(workdir)
  if summary is None:
    raise FigureError(f"{workdir} has no summary.json: train the run to its end first")
  test = summary["test"]
  # Without a latent every bound is log p(x_missing | x_observed) itself.
  metric = "nll" if "nll" in test else ("neg_elbo" if nn else None)
  if metric is None:
    raise FigureError(f"{workdir}'s summary.json has no test nll: train it with "
                      f"--config.eval_importance_samples=1000")
  return config, {"workdir": workdir, "checkpoint_step": summary["steps"], "nll": test[metric],
                  "nll_stderr": test.get("nll_stderr"), "metric": metric,
                  "importance_samples": test.get("nll_num_samples"),
                  "eval_subset": config.eval_subset}


def _cell(entry) -> str:
  if entry is None:
    return "-"
  se = entry.get("nll_stderr")
  return f"{entry['nll']:.1f}" + (f" ± {se:.1f}" if se is not None else "")


def quadrants(opts: Options, workdirs: list[str], key) -> dict:
  """quadrants.md/.json (NN / CVAE x 1, 2, 3 quadrants) and quadrant_completions.png."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  from vaejax import experiment, plots
  table = {"NN baseline": {}, "CVAE": {}}
  eval_subsets = set()
  for nn_dir, cvae_dir in zip(workdirs[::2], workdirs[1::2]):
    nn_config, nn_entry = _quadrant_entry(nn_dir, nn=True)
    cvae_config, cvae_entry = _quadrant_entry(cvae_dir, nn=False)
    q = nn_config.observed_quadrants
    if cvae_config.observed_quadrants != q:
      raise FigureError(f"{nn_dir} and {cvae_dir} are a pair but observe {q} and "
                        f"{cvae_config.observed_quadrants} quadrants")
    if q in table["CVAE"]:
      raise FigureError(f"two pairs observe {q} quadrant(s); give each setting once")
    table["NN baseline"][q], table["CVAE"][q] = nn_entry, cvae_entry
    eval_subsets |= {nn_config.eval_subset, cvae_config.eval_subset}
  if len(eval_subsets) > 1:  # the nll of different test sets do not compare
    raise FigureError(f"the runs were tested on different eval_subset sizes: {sorted(eval_subsets)}")
  settings = (1, 2, 3)
  lines = ["# MNIST quadrant completion: test -log p(x_missing | x_observed), nats", "",
           "| model | " + " | ".join(f"{q} quadrant{'s' * (q > 1)} | Pyro" for q in settings) + " |",
           "|---" * (1 + 2 * len(settings)) + "|"]
  for name, row in table.items():
    lines.append(f"| {name} | " + " | ".join(f"{_cell(row.get(q))} | {PYRO[name][q]}"
                                             for q in settings) + " |")
  lines += ["", "Ours: mean ± standard error over the test digits (NN: exact; CVAE: "
            "importance-sampled, k in quadrants.json); '-': setting not run.", "", PYRO_NOTE, ""]

  # Completions for the first pair's setting: the first test digit of each class.
  nn_config, nn_model, nn_params, _, _ = load(workdirs[0], opts)
  config, model, params, test, _ = load(workdirs[1], opts)
  q = config.observed_quadrants
  examples = experiment.examples(config, test, as_float=True)
  picks = (np.arange(10) if test.labels is None else
           np.array([int(np.argmax(test.labels == d)) for d in range(10) if np.any(test.labels == d)]))
  x = jax.tree_util.tree_map(lambda a: a[picks], examples)
  truth = np.asarray(x["image"])  # [10, H, W, C]
  observed = np.asarray(model.condition.observed_mask, bool)  # [H, W, C]
  paste = lambda pred: np.where(observed, truth, np.asarray(pred))  # noqa: E731
  nn_pred = jax.vmap(lambda e: nn_model.mean_image(nn_params, e, jnp.zeros((0,))))(x)
  rows = [np.where(observed, truth, np.nan), truth, paste(nn_pred)]
  titles = ["input", "truth", "NN baseline"]
  for i, sample_key in enumerate(jax.random.split(key, 3)):
    keys = jax.random.split(sample_key, len(picks))
    # z ~ p(z | x_observed): the CVAE's prior, learned or not, never sees the truth.
    sample = jax.vmap(lambda e, k: model.mean_image(
        params, e, model.prior(params, e).sample(key=k)))(x, keys)
    rows.append(paste(sample))
    titles.append(f"CVAE sample {i + 1}")
  plots.quadrant_completions(os.path.join(opts.out, "quadrant_completions.png"), rows,
                             titles=titles)
  result = {
      "table": {name: {str(q): {**entry, "pyro": PYRO[name][q]} for q, entry in row.items()}
                for name, row in table.items()},
      "pyro": {name: {str(q): v for q, v in row.items()} for name, row in PYRO.items()},
      "pyro_note": PYRO_NOTE,
      "completions": {"observed_quadrants": q, "test_indices": picks.tolist(), "rows": titles,
                      "cvae_prior": config.prior}}
  with open(os.path.join(opts.out, "quadrants.md"), "w") as f:
    f.write("\n".join(lines))
  write_json(opts.out, "quadrants.json", result)
  print("\n".join(lines[2:4 + len(table)]), flush=True)
  return result

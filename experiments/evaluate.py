"""Evaluate a trained run: importance-sampled log-likelihood, bounds, latent
statistics and pictures.

  python experiments/evaluate.py --workdir runs/reference [--k 5000] [--subset N]

Reads the run's config.json and newest checkpoint from --workdir and writes
eval.json, eval.md and PNGs (samples, reconstructions, latent scatter coloured
by digit, interpolations, traversals, a 2-D manifold when the latent is 2-D,
training curves) into --workdir/eval/ (or --out). A replicated run
(config.num_replicas = R) is evaluated replica by replica into eval/replica_r/;
eval/eval.json then holds each replica's result and the mean and sample sd of
the test metrics over the replicas that did not diverge (summary.json's list).
"""
import json
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # noqa: E402

_WORKDIR = flags.DEFINE_string("workdir", None, "A run's workdir (config.json, checkpoints/).")
_OUT = flags.DEFINE_string("out", None, "Where to write (default: WORKDIR/eval).")
_K = flags.DEFINE_integer("k", 5000, "Importance samples per example for log p(x).")
_CHUNK = flags.DEFINE_integer("chunk", 500, "Samples per chunk (memory: batch * chunk decoder outputs).")
_BATCH = flags.DEFINE_integer("batch", 100, "Examples evaluated together.")
_SUBSET = flags.DEFINE_integer("subset", 0, "Evaluate this many test examples (evenly spaced; 0: all).")
_SEED = flags.DEFINE_integer("seed", 0, "Evaluation key.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Override the run's data_dir.")
_REPLICA = flags.DEFINE_integer("replica", None, "Of a replicated run (num_replicas = R > 1): "
                                "evaluate only this replica (default: every replica, each into "
                                "eval/replica_r/, with their mean and sd in eval/eval.json).")
flags.mark_flags_as_required(["workdir"])


def load_run(workdir: str, data_dir=None, replica: int = 0):
  """(config, model, params, test set, step): the run (vaejax.load_run) and its test
  split; raises ValueError (vaejax.NotARunError), DataError or CheckpointError."""
  import vaejax
  from vaejax import data
  run = vaejax.load_run(workdir, replica=replica)
  if data_dir:
    run.config.data_dir = data_dir
  test = data.load(run.config.dataset, "test", run.config.data_dir or None)
  return run.config, run.model, run.params, test, run.step


def pictures(out, model, params, examples, labels, activity, key):
  """PNGs of one run; examples: the test set's example pytree (float images). A
  conditional model decodes under the condition of the example each row starts from."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  from vaejax import viz
  from vaejax.models import batched
  decode = jax.jit(jax.vmap(lambda x, z: model.mean_image(params, x, z)))
  encode = jax.jit(jax.vmap(lambda x: model.posterior(params, x).mean))
  take = lambda idx: jax.tree_util.tree_map(lambda a: a[jnp.asarray(idx)], examples)  # noqa: E731
  images = examples["image"]
  n, d = len(images), model.latent_dim
  picks = take(np.arange(0, n, max(1, n // 64))[:64])
  z = jax.vmap(lambda x, k: model.prior(params, x).sample(key=k))(
      picks, jax.random.split(key, len(picks["image"])))
  viz.save_grid(os.path.join(out, "samples.png"), np.asarray(decode(picks, z)), cols=8)
  picks = take(np.arange(0, n, max(1, n // 32))[:32])
  viz.save_grid(os.path.join(out, "reconstructions.png"), viz.interleave_rows(
      np.asarray(picks["image"]), np.asarray(decode(picks, encode(picks))), cols=8), cols=8)
  if d == 0:  # the deterministic baseline: no latent to move through
    return
  # Interpolations z = (1 - t) z0 + t z1 between test digits of different classes.
  if labels is not None:
    firsts = [int(np.argmax(labels == c)) for c in range(10) if np.any(labels == c)]
    pairs = [(firsts[i], firsts[(i + 3) % len(firsts)]) for i in range(min(5, len(firsts)))]
  else:
    pairs = [(i, n // 2 + i) for i in range(5)]
  starts, ends = (take([p[i] for p in pairs]) for i in (0, 1))
  strips = np.asarray(batched.interpolate(model, params, starts, ends, num_steps=10))
  viz.save_grid(os.path.join(out, "interpolations.png"),
                strips.reshape((-1,) + strips.shape[2:]), cols=10)
  # Traversals over [-3, 3] of the most active dimensions, from one test digit's mean.
  first = jax.tree_util.tree_map(lambda a: a[0], examples)
  dims = np.argsort(-np.asarray(activity))[: min(10, d)]
  rows = batched.traverse(model, params, first, dims=dims, values=np.linspace(-3.0, 3.0, 9))
  viz.save_grid(os.path.join(out, "traversals.png"),
                np.asarray(rows).reshape((-1,) + rows.shape[2:]), cols=9)
  if d == 2:  # the learned manifold: decoded means over a grid of z, laid out as the scatter
    grid = batched.decode_grid(model, params, low=-3.0, high=3.0, num=15, x=first)
    viz.save_grid(os.path.join(out, "manifold.png"),
                  np.asarray(grid).reshape((-1,) + grid.shape[2:]), cols=15)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)
  from vaejax import checkpoint, data, runs
  workdir = _WORKDIR.value
  try:
    chunk = min(_CHUNK.value, _K.value)
    if _K.value < 1 or chunk < 1 or _K.value % chunk:
      raise ValueError(f"--k={_K.value} must be >= 1 and a multiple of --chunk={_CHUNK.value}")
    run_config = runs.read_config(workdir)
    if run_config.model in ("vqvae", "vqvae_prior"):
      raise ValueError(f"{workdir} is a model={run_config.model!r} run: its posterior is a point "
                       f"mass, so its bounds are exact in summary.json; compare runs with "
                       f"experiments/vqvae_report.py")
    if run_config.model in ("aae", "wae"):
      raise ValueError(f"{workdir} is a model={run_config.model!r} run: it has no likelihood "
                       f"bound to importance-sample; compare runs with experiments/aae_report.py")
    num_replicas = run_config.num_replicas
    chosen = [_REPLICA.value] if _REPLICA.value is not None else list(range(num_replicas))
    out = _OUT.value or os.path.join(workdir, "eval")
    results = []
    for replica in chosen:
      # One replica of a replicated run goes to its own folder, unless --out names one.
      where = (os.path.join(out, f"replica_{replica}")
               if num_replicas > 1 and not (_OUT.value and len(chosen) == 1) else out)
      results.append(evaluate_replica(workdir, replica, where, chunk))
  except (ValueError, data.DataError, checkpoint.CheckpointError, OSError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  if len(results) > 1:
    write_replica_summary(workdir, out, chosen, results)


def write_replica_summary(workdir: str, out: str, chosen: list, results: list) -> None:
  """eval/eval.json and eval.md over the replicas: each one's result, and the mean
  and sample sd of the test metrics over those that did not diverge in training."""
  from vaejax import replicas
  diverged = []
  if os.path.exists(os.path.join(workdir, "summary.json")):
    with open(os.path.join(workdir, "summary.json")) as f:
      diverged = json.load(f).get("diverged", [])
  mean, sd = replicas.aggregate([r["test"] for r in results], [r in diverged for r in chosen])
  with open(os.path.join(out, "eval.json"), "w") as f:
    json.dump({"workdir": workdir, "replicas": [dict(r, replica=i) for i, r in zip(chosen, results)],
               "diverged": diverged, "test": mean, "test_sd": sd}, f, indent=2)
  report = [f"# Evaluation of {workdir}: {len(results)} replicas", "",
            "| replica | test NLL | -ELBO | -IWAE-50 | active units |", "|---|---|---|---|---|"]
  for i, r in zip(chosen, results):
    t = r["test"]
    report.append(f"| {i}{' (diverged)' if i in diverged else ''} | {t['nll']:.2f} | "
                  f"{t['neg_elbo']:.2f} | {t['neg_iwae_50']:.2f} | {r['active_units']} |")
  if mean:
    spread = lambda k: f" +- {sd[k]:.2f}" if sd.get(k) is not None else ""  # noqa: E731
    report.append(f"| mean +- sd | {mean['nll']:.2f}{spread('nll')} | {mean['neg_elbo']:.2f}"
                  f"{spread('neg_elbo')} | {mean['neg_iwae_50']:.2f}{spread('neg_iwae_50')} | |")
  with open(os.path.join(out, "eval.md"), "w") as f:
    f.write("\n".join(report) + "\n")
  print("\n".join(report), flush=True)


def evaluate_replica(workdir: str, replica: int, out: str, chunk: int) -> dict:
  """Evaluates one model (replica `replica` of a replicated run) into `out`; returns
  the eval.json dict. Raises ValueError, DataError or CheckpointError."""
  import jax
  import numpy as np
  from vaejax import data, estimators, evaluate, pictures as run_pictures, viz
  config, model, params, test, step = load_run(workdir, _DATA_DIR.value, replica)
  if config.objective == "ae":
    raise ValueError(f"{workdir} is a deterministic autoencoder (objective='ae'): it has no "
                     f"posterior variance, so no log-likelihood or bound to evaluate; its test "
                     f"reconstruction is test/recon in summary.json")
  if _SUBSET.value:
    test = test.spread(_SUBSET.value)
  os.makedirs(out, exist_ok=True)
  from vaejax import experiment
  images = experiment.examples(config, test, as_float=True)  # binarised as the run was trained
  key = jax.random.PRNGKey(_SEED.value)
  ll_key, bound_key, picture_key = jax.random.split(key, 3)

  t = time.perf_counter()
  log_px = evaluate.importance_log_likelihood(model, params, images, key=ll_key, num_samples=_K.value,
                                              chunk_size=chunk, batch_size=min(_BATCH.value, len(test)))
  log_px = np.asarray(log_px)  # host sync: end of the timed evaluation
  ll_seconds = time.perf_counter() - t
  bounds = {}
  from vaejax import models
  for name, est in (("elbo", estimators.make_estimator(
                         "elbo", analytic_kl=models.closed_form_kl(config))),
                    ("iwae_50", estimators.make_estimator("iwae", num_samples=50))):
    m = evaluate.evaluate_dataset(model, est.per_example, params, images, key=bound_key,
                                  batch_size=min(500, len(test)))
    bounds[name] = {k: float(v) for k, v in m.items()}
  stats = evaluate.latent_statistics(model, params, images) if model.latent_dim else {
      "activity": np.zeros(0), "kl_per_dim": np.zeros(0), "posterior_means": np.zeros((len(test), 0))}
  activity = np.asarray(stats["activity"])
  # The pixels the likelihood scores: all, or a quadrant CVAE's missing ones.
  mask = getattr(getattr(model, "condition", None), "target_mask", None)
  num_pixels = int(np.sum(mask)) if mask is not None else int(np.prod(test.images.shape[1:]))
  if "tokens" in images:  # a corpus: per scored token (EOS included), not per pixel
    num_pixels = float(np.mean(np.asarray(jax.vmap(model.num_steps)(images))))
  nll = float(-log_px.mean())
  result = {
      "workdir": workdir, "checkpoint_step": step, "dataset": config.dataset, "examples": len(test),
      "k": _K.value, "test": {
          "nll": nll, "nll_stderr": float(log_px.std() / np.sqrt(len(log_px))),
          "bits_per_dim": nll / (num_pixels * np.log(2)),
          "neg_elbo": bounds["elbo"]["neg_elbo"], "neg_iwae_50": bounds["iwae_50"]["neg_iwae"],
          "recon": bounds["elbo"]["recon"], "kl": bounds["elbo"]["kl"]},
      "active_units": int(np.sum(activity > 0.01)), "latent_dim": model.latent_dim,
      "activity": activity.tolist(), "kl_per_dim": (np.asarray(stats["kl_per_dim"]).tolist()
                                                    if "kl_per_dim" in stats else None),
      "loglik_seconds": ll_seconds, "samples_per_sec": len(test) * _K.value / ll_seconds,
      "peak_host_memory_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
      "backend": jax.default_backend(), "jax": jax.__version__,
  }
  if hasattr(model, "layer_kls"):  # a hierarchical model: KL and active units per layer
    layers = evaluate.layer_statistics(model, params, images, key=jax.random.fold_in(bound_key, 1),
                                       batch_size=min(500, len(test)))
    result["layers"] = [{"units": int(d), "active_units": int(a), "kl": float(k)} for d, a, k in
                        zip(model.latent_dims, layers["active_units"], layers["kl"])]
  if "tokens" in images:
    result["test"]["bits_per_token"] = result["test"].pop("bits_per_dim")
    result["test"]["perplexity"] = float(np.exp(nll / num_pixels))
  if config.likelihood == "bernoulli_grey" and config.dataset not in data.CORPORA:
    result["note"] = ("likelihood='bernoulli_grey': BCE on grey pixels, not a normalised "
                      "likelihood; nll, the bounds and bits/dim are not log-likelihoods")
  if getattr(model, "autoregressive", False):  # decoded: samples drawn step by step
    run_pictures.write_run_pictures(config, model, params, images, out, key=picture_key)
  else:
    pictures(out, model, params, images, test.labels, activity, picture_key)
  if test.labels is not None and model.latent_dim:
    viz.latent_scatter(os.path.join(out, "latent_scatter.png"),
                       np.asarray(stats["posterior_means"]), test.labels)
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  if os.path.exists(metrics_path):
    with open(metrics_path) as f:
      viz.training_curves(os.path.join(out, "training_curves.png"),
                          [r for r in map(json.loads, filter(str.strip, f))
                           if r.get("replica", replica) == replica])
  with open(os.path.join(out, "eval.json"), "w") as f:
    json.dump(result, f, indent=2)
  r = result["test"]
  unit = "bits/token" if "bits_per_token" in r else "bits/dim"
  bits = r.get("bits_per_token", r.get("bits_per_dim"))
  report = [f"# Evaluation of {workdir} (step {step})", "",
            f"| examples | k | test NLL | -ELBO | -IWAE-50 | {unit} | active units | s | samples/s |",
            "|---|---|---|---|---|---|---|---|---|",
            f"| {len(test)} | {_K.value} | {r['nll']:.2f} +- {r['nll_stderr']:.2f} | {r['neg_elbo']:.2f} | "
            f"{r['neg_iwae_50']:.2f} | {bits:.4f} | {result['active_units']}/{model.latent_dim} | "
            f"{ll_seconds:.1f} | {result['samples_per_sec']:.0f} |", ""]
  for l, layer in enumerate(result.get("layers", []), start=1):
    report.insert(-1, f"layer {l}: {layer['active_units']}/{layer['units']} active units, "
                      f"KL {layer['kl']:.2f} nats")
  with open(os.path.join(out, "eval.md"), "w") as f:
    f.write("\n".join(report))
  print("\n".join(report), flush=True)
  return result


if __name__ == "__main__":
  app.run(main)

"""Compare gradient estimators on a binarized-MNIST VAE.

  python experiments/compare_estimators.py --config experiments/configs/snr_vs_k.py \
      --workdir DIR --config.data_dir=../shared/data [--config.key=value ...]

config.mode = "snr_vs_k": gradient SNR and variance of each estimator for each K
at fixed params (at init, and after config.train_steps of ELBO training).
config.mode = "curves": the same model trained with each estimator for a fixed
budget; test bounds vs steps and wall-clock, gradient variance at each point.
Writes summary.json, table.md and PNG plots into DIR.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to an ml_collections config file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for summary.json, table.md and plots.")
flags.mark_flags_as_required(["config", "workdir"])

sys.path.insert(1, os.path.dirname(os.path.abspath(__file__)))
from estimator_report import write_curve_outputs, write_snr_outputs  # noqa: E402


def parse_spec(spec: str):
  """'elbo/score_function:learned' -> ('elbo', 'score_function', 'learned')."""
  objective, rest = spec.split("/")
  estimator, _, baseline = rest.partition(":")
  return objective, estimator, baseline or "none"


def spec_name(spec: str) -> str:
  from vaejax import estimators
  objective, estimator, baseline = parse_spec(spec)
  name = estimators.display_name(objective, estimator)
  return name if objective != "elbo" else f"elbo_{name}" + (f"_{baseline}" if baseline != "none" else "")


def build(config, spec: str, num_samples: int):
  from vaejax import estimators
  objective, estimator, baseline = parse_spec(spec)
  return estimators.make_estimator(objective, estimator, num_samples=num_samples,
                                   baseline=baseline, beta=config.beta,
                                   analytic_kl=config.analytic_kl)


def grad_function(model, est, batch):
  """grad_fn(params, *, key): one gradient estimate of the mean loss on `batch`."""
  import jax
  from vaejax import objectives
  loss_fn = objectives.make_batch_loss(model, est.per_example)
  return lambda params, *, key: jax.grad(lambda p: loss_fn(p, batch, key=key)[0])(params)


def effective_sample_size(model, params, batch, *, key, num_samples, draws=32):
  """Mean importance-sampling ESS (sum w)^2 / sum w^2 of K samples from q(z|x), over
  the examples of `batch` and `draws` independent draws: between 1 and K."""
  import jax
  from vaejax import objectives

  def one(x, k):
    q = model.posterior(params, x)
    z = objectives.draw(q, key=k, num_samples=num_samples)
    log_px_z, log_qz, log_pz = objectives.log_terms(model, params, x, z, q)
    log_w = log_px_z + log_pz - log_qz
    return jax.numpy.exp(2 * jax.nn.logsumexp(log_w) - jax.nn.logsumexp(2 * log_w))

  keys = jax.random.split(key, draws * batch.shape[0]).reshape(draws, batch.shape[0], -1)
  ess = jax.jit(jax.vmap(jax.vmap(one)))(jax.numpy.broadcast_to(batch, (draws,) + batch.shape), keys)
  return float(ess.mean())  # host sync: one number per checkpoint and K


def train(config, model, est, params, train_images, *, steps, key, on_chunk=None, chunk_steps=None):
  """Trains `steps` steps with the on-device runner; on_chunk(step, params, seconds)."""
  import jax
  import numpy as np
  from vaejax import estimators, objectives, parallel, training
  import optax
  optimizer = estimators.make_optimizer(optax.adam(config.learning_rate), est)
  runner = parallel.make_runner("none", loss_fn=objectives.make_batch_loss(model, est.per_example),
                                optimizer=optimizer, preprocess=training.make_preprocess(1, False),
                                batch_size=config.batch_size, max_consecutive_skips=50)
  state_key, data_key = jax.random.split(key)
  state = runner.put_state(training.create_train_state(params, optimizer, key=state_key))
  data = runner.put_data(train_images)
  per_epoch = len(train_images) // config.batch_size
  chunk_steps = chunk_steps or steps
  state, _ = runner.chunk(state, data, runner.put_data(np.arange(len(train_images))),
                          np.int32(0), np.int32(0))  # compile outside the timings
  step, seconds = 0, 0.0
  while step < steps:
    epoch, position = divmod(step, per_epoch)
    n = min(chunk_steps - step % chunk_steps, per_epoch - position, steps - step)
    perm = runner.put_data(np.asarray(jax.random.permutation(jax.random.fold_in(data_key, epoch),
                                                             len(train_images))))
    t = time.perf_counter()
    state, _ = runner.chunk(state, data, perm, np.int32(position), np.int32(n))
    ran = int(state.step) - step  # host sync: timing, and fewer steps if it diverged
    seconds += time.perf_counter() - t
    step += ran
    if ran < n:
      raise RuntimeError(f"{est.name} diverged at step {step}: 50 consecutive non-finite updates")
    if on_chunk is not None and (step % chunk_steps == 0 or step == steps):
      on_chunk(step, runner.get_state(state).params, seconds)
  return runner.get_state(state).params


def linear_gaussian_case(dim: int, num_examples: int, *, key, perturbation: float = 0.01):
  """(model, params, batch): a variant of the Gaussian toy of Rainforth et al. (2018).

  z ~ N(0, I_dim), x | z ~ N(z + b, I_dim); the exact posterior is
  N((x - b) / 2, I / 2), which a linear encoder represents exactly. params are
  that optimum with every encoder and decoder weight perturbed by
  N(0, perturbation^2), so q is close to the posterior and the importance
  weights are near-uniform: the regime of the asymptotic SNR results
  (IWAE encoder SNR falls like K^-1/2, DReG's rises, decoder SNR rises).
  Unlike the paper's toy, q's variance is learnable (a log-variance head at
  the exact I/2), so its parameters count in the encoder group too.
  batch: [num_examples, 1, dim, 1] drawn from the model.
  """
  import jax
  import jax.numpy as jnp
  import numpy as np
  from vaejax import models, nets
  model = models.make_vae(architecture="mlp", image_shape=(1, dim, 1), latent_dim=dim, hidden=(),
                          likelihood="gaussian_fixed", gaussian_scale=1.0)
  init_key, b_key, data_key, noise_key = jax.random.split(key, 4)
  params = model.init(init_key)
  b = jax.random.normal(b_key, (dim,))
  eye = jnp.eye(dim)
  params["decoder"]["out"] = {"kernel": eye, "bias": b}
  head = params["encoder"]["head"]
  head["mean"] = {"kernel": eye / 2, "bias": -b / 2}
  bound = nets.LOG_VAR_BOUND
  head["log_var"] = {"kernel": jnp.zeros((dim, dim)),
                     "bias": jnp.full((dim,), bound * np.arctanh(np.log(0.5) / bound))}
  leaves, treedef = jax.tree_util.tree_flatten(params)
  noise_keys = jax.random.split(noise_key, len(leaves))
  params = jax.tree_util.tree_unflatten(treedef, [
      leaf + perturbation * jax.random.normal(k, leaf.shape) for leaf, k in zip(leaves, noise_keys)])
  z_key, x_key = jax.random.split(data_key)
  z = jax.random.normal(z_key, (num_examples, dim))
  x = z + b + jax.random.normal(x_key, (num_examples, dim))
  return model, params, x.reshape(num_examples, 1, dim, 1)


def snr_vs_k(config, model, train_set, test_set, key):
  """{checkpoint: {"snr": .., "variance": .., "ess": ..}} for "init", "trained" (MNIST)
  and, when config.linear_gaussian_dim > 0, "linear_gaussian" (the toy above)."""
  import jax
  import jax.numpy as jnp
  batch = jnp.asarray(test_set.images[:: len(test_set) // config.snr_examples][:config.snr_examples],
                      jnp.float32) / test_set.max_value
  from vaejax import builders
  init_key, baseline_key, train_key, draw_key = jax.random.split(key, 4)
  init = builders.build_init(config, model, train_set)
  cases = {"init": (model, init(init_key), batch)}
  if config.train_steps:
    t = time.perf_counter()
    trainer = build(config, config.train_estimator, config.train_num_samples)
    start = {**cases["init"][1], **trainer.init_params(baseline_key, model)}
    trained = train(config, model, trainer, start, train_set.images, steps=config.train_steps,
                    key=train_key)
    cases["trained"] = (model, trained, batch)
    logging.warning("trained %d steps of %s in %.1f s", config.train_steps, trainer.name,
                    time.perf_counter() - t)
  if config.linear_gaussian_dim:
    cases["linear_gaussian"] = linear_gaussian_case(
        config.linear_gaussian_dim, config.snr_examples, key=jax.random.fold_in(init_key, 1))
  summary, grad_fns = {}, {}
  for ckpt, (case_model, params, case_batch) in cases.items():
    summary[ckpt] = measure_snr(config, case_model, params, case_batch, ckpt,
                                baseline_key=baseline_key, draw_key=draw_key, grad_fns=grad_fns)
  return summary


def measure_snr(config, model, params, batch, ckpt, *, baseline_key, draw_key, grad_fns):
  """SNR, variance (per group, estimator and K) and ESS (per K) at fixed `params`.

  grad_fns: a cache shared across calls, so checkpoints of one model and batch
  share each estimator's compile.
  """
  import jax
  from vaejax import diagnostics
  out = {"snr": {}, "variance": {}, "ess": {}}
  for k in config.ks:  # how evenly the importance weights spread
    out["ess"][str(k)] = effective_sample_size(
        model, params, batch, key=jax.random.fold_in(draw_key, 10_000 + k), num_samples=k)
  print(f"{ckpt:8s} importance-sampling ESS by K: {out['ess']}", flush=True)
  for spec in config.estimators:
    name = spec_name(spec)
    for k in config.ks:
      est = build(config, spec, k)
      cache_key = (id(model), id(batch), spec, k)
      if cache_key not in grad_fns:
        grad_fns[cache_key] = grad_function(model, est, batch)
      t = time.perf_counter()
      stats = diagnostics.gradient_statistics(
          grad_fns[cache_key], {**params, **est.init_params(baseline_key, model)},
          key=jax.random.fold_in(draw_key, k), num_draws=config.num_draws,
          groups=("encoder", "decoder"))
      for metric in ("snr", "variance"):
        for group in ("encoder", "decoder"):
          out[metric].setdefault(name, {}).setdefault(group, {})[str(k)] = stats[group][metric]
      print(f"{ckpt:8s} {name:24s} K={k:3d} SNR enc {stats['encoder']['snr']:.4f} "
            f"dec {stats['decoder']['snr']:.4f} | var enc {stats['encoder']['variance']:.3e} "
            f"dec {stats['decoder']['variance']:.3e} ({time.perf_counter() - t:.1f} s)", flush=True)
  return out


def curves(config, model, train_set, test_set, key):
  import jax
  import jax.numpy as jnp
  from vaejax import builders, diagnostics, estimators, evaluate
  init_key, train_key, eval_key, draw_key = jax.random.split(key, 4)
  test_images = jnp.asarray(test_set.images, jnp.float32) / test_set.max_value
  batch = test_images[:: len(test_set) // config.snr_examples][:config.snr_examples]
  init = builders.build_init(config, model, train_set)
  bounds = {"elbo": estimators.make_estimator("elbo").per_example,
            "iwae": estimators.make_estimator("iwae", num_samples=config.num_samples).per_example}
  rows = []
  for spec in config.estimators:
    objective = parse_spec(spec)[0]
    est = build(config, spec, config.num_samples if objective == "iwae" else 1)
    name = spec_name(spec)
    params = {**init(init_key), **est.init_params(jax.random.fold_in(init_key, 1), model)}
    grad_fn = grad_function(model, est, batch)

    def record(step, params, seconds, name=name, grad_fn=grad_fn):
      row = {"estimator": name, "step": step, "train_seconds": seconds}
      for bound, fn in bounds.items():
        m = evaluate.evaluate_dataset(model, fn, params, test_images, key=eval_key,
                                      batch_size=min(500, len(test_images)))
        row[f"test_neg_{bound}"] = float(m["neg_iwae" if bound == "iwae" else "neg_elbo"])
      if config.variance_draws:
        stats = diagnostics.gradient_statistics(grad_fn, params, key=draw_key,
                                                num_draws=config.variance_draws,
                                                groups=("encoder", "decoder"))
        row.update({f"{g}_variance": stats[g]["variance"] for g in ("encoder", "decoder")})
        row.update({f"{g}_snr": stats[g]["snr"] for g in ("encoder", "decoder")})
      rows.append(row)
      print(" ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()),
            flush=True)

    record(0, params, 0.0)
    train(config, model, est, params, train_set.images, steps=config.train_steps, key=train_key,
          on_chunk=record, chunk_steps=config.eval_every)
  return {"rows": rows}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)
  import datetime
  import jax
  from vaejax import config as config_lib, data, experiment
  config = _CONFIG.value
  try:
    config_lib.validate(config)
    if config.model != "vae" or config.dataset != "binarized_mnist":
      # Batches here are bare binary images: no labels, no binarisation step.
      raise config_lib.ConfigError("compare_estimators runs model='vae' on "
                                   "dataset='binarized_mnist' only")
    if config.mode not in ("snr_vs_k", "curves"):
      raise config_lib.ConfigError(f"config.mode={config.mode!r}; choose 'snr_vs_k' or 'curves'")
    for spec in config.estimators:
      build(config, spec, 2)  # every name checked before anything runs
    train_set, eval_sets = experiment.load_data(config)
    test_set = eval_sets["test"]
  except (ValueError, data.DataError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  workdir = _WORKDIR.value
  os.makedirs(workdir, exist_ok=True)
  model = experiment.build_model(config, train_set.images.shape[1:])
  key = jax.random.PRNGKey(config.seed)
  t = time.perf_counter()
  if config.mode == "snr_vs_k":
    summary = snr_vs_k(config, model, train_set, test_set, key)
    write_snr_outputs(summary, workdir, config)
  else:
    summary = curves(config, model, train_set, test_set, key)
    write_curve_outputs(summary, workdir)
  summary["meta"] = {"config": json.loads(config.to_json()), "seconds": time.perf_counter() - t,
                     "date": datetime.date.today().isoformat(), "jax": jax.__version__,
                     "backend": jax.default_backend(), "cpu_count": os.cpu_count()}
  with open(os.path.join(workdir, "summary.json"), "w") as f:
    json.dump(summary, f, indent=2)
  print(f"wrote {workdir}/summary.json, table.md and plots", flush=True)


if __name__ == "__main__":
  from vaejax import cli
  app.run(main, flags_parser=cli.parse_flags)

"""One training run from a config: data, model, compiled chunks, logging,
checkpoints, final evaluation and pictures. `experiments/train.py` is the CLI.

Writes into the workdir: metrics.jsonl (one JSON line per logging point),
TensorBoard event files (the same scalars, the final test metrics and picture
grids, the config; config.tensorboard), summary.json, checkpoints/ (orbax),
config.json, samples.png, reconstructions.png. A workdir with checkpoints
resumes from the newest one.
"""
from __future__ import annotations

import os
import time

import jax
import ml_collections
import numpy as np

from vaejax import (checkpoint, config as config_lib, parallel, pictures, replicas,
                    run_logs, tensorboard_writer, training)
from vaejax.resume import RunError, config_to_dict, restore_or_start  # noqa: F401
from vaejax.builders import (build_estimator, build_evaluator, build_init, build_loss,  # noqa: F401
                             build_model, build_optimizer, importance_nll, learning_rate)
from vaejax.run_data import EVAL_BINARIZATION_KEY, examples, load_data  # noqa: F401

# Summary fields that are wall-clock measurements, so differ between identical runs.
TIMING_KEYS = ("examples_per_sec", "train_seconds", "compile_seconds", "eval_seconds")


def _run_keys(seed: int) -> dict[str, jax.Array]:
  """One root key split by purpose; init's fold_ins name the two minor purposes."""
  init_key, train_key, data_key, eval_key = jax.random.split(jax.random.PRNGKey(seed), 4)
  return {"init": init_key, "train": train_key, "data": data_key, "eval": eval_key,
          "baseline": jax.random.fold_in(init_key, 1), "picture": jax.random.fold_in(init_key, 2)}


def run(config: ml_collections.ConfigDict, workdir: str, *,
        allow_config_change: bool = False, quiet: bool = False) -> dict:
  """Trains (or resumes) the run in `workdir`; returns the summary it writes.

  With config.num_replicas = R > 1 the R models (vaejax.replicas) train in one
  program: the state carries a leading replica axis, and replica r is the run
  with seed config.seed + r (and its swept values). In a multi-process run every
  process trains; process 0 alone writes logs, pictures and the summary (orbax
  coordinates the checkpoint writes).
  """
  primary = jax.process_index() == 0
  log = (lambda *a: None) if quiet or not primary else (lambda *a: print(*a, flush=True))
  try:
    num_devices = parallel.device_count(config.parallel, config.num_devices)
  except ValueError as e:
    raise config_lib.ConfigError(str(e)) from None
  config_lib.validate(config, num_devices=num_devices)
  os.makedirs(workdir, exist_ok=True)
  train_set, eval_sets = load_data(config)
  model = build_model(config, train_set.images.shape[1:])
  steps_per_epoch = len(train_set) // config.batch_size
  estimator = build_estimator(config)
  optimizer = build_optimizer(config, estimator, steps_per_epoch, model=model)
  keys = [_run_keys(config.seed + r) for r in range(config.num_replicas)]
  init = build_init(config, model, train_set)
  states = [training.create_train_state(
      {**init(k["init"]), **estimator.init_params(k["baseline"], model)}, optimizer,
      key=k["train"]) for k in keys]
  state = states[0] if config.num_replicas == 1 else replicas.stack(states)
  del states

  evaluator = build_evaluator(config, model, eval_sets, key=keys[0]["eval"])
  run_config = config_to_dict(config)
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"),
                                 max_to_keep=config.keep_checkpoints)
  writer = tensorboard_writer.NullWriter()
  try:  # close the event file on every exit, errors included
    try:  # and orbax's background machinery
      state = restore_or_start(ckpt, state, run_config, workdir,
                               allow_config_change=allow_config_change, primary=primary, log=log)
      if primary and config.tensorboard:
        # Drops an earlier attempt's events past the restored step (all of them on a
        # fresh start), as metrics.jsonl is truncated.
        writer = tensorboard_writer.TensorBoardWriter(
            workdir, purge_step=int(np.max(state.step)) + 1)
      runner = parallel.make_runner(
          config.parallel, loss_fn=build_loss(config, model, estimator),
          optimizer=optimizer, replicas=_replica_spec(config, model, steps_per_epoch),
          preprocess=training.make_preprocess(train_set.max_value, config.dynamic_binarization,
                                              config.word_dropout),
          batch_size=config.batch_size, max_consecutive_skips=config.max_consecutive_skips,
          num_devices=config.num_devices, update_state=getattr(model, "update_state", None))
      state, timing, records = _train(config, runner, state, train_set, keys, ckpt, run_config,
                                      workdir, primary, log, writer, evaluator)
    finally:
      ckpt.close()
    return _finish(config, model, state, eval_sets, evaluator, keys, timing, records, workdir,
                   primary, log, writer)
  finally:
    writer.close()


def _replica_spec(config, model, steps_per_epoch) -> parallel.Replicas | None:
  """R > 1: each replica's loss and optimizer, built from its traced swept values."""
  if config.num_replicas == 1:
    return None

  def build(values):
    replica_config = replicas.TracedConfig(config, values)
    estimator = build_estimator(replica_config)
    return (build_loss(config, model, estimator),
            build_optimizer(replica_config, estimator, steps_per_epoch, model=model))

  sweep = replicas.parse_sweep(config.sweep, config.num_replicas)
  return parallel.Replicas(config.num_replicas, replicas.hyperparams(sweep), build)


def _train(config, runner, state, train_set, keys, ckpt, run_config, workdir, primary, log,
           writer, evaluator):
  """The host loop: one dispatch per chunk; chunks end at logging, checkpoint and
  epoch boundaries, where the host syncs once. Returns (host state, timing, the
  last metrics record of each replica)."""
  num_replicas = len(keys)
  steps_per_epoch = len(train_set) // config.batch_size
  total_steps = steps_per_epoch * config.epochs
  # Epoch permutations are made on the host: cheap, and identical in every process.
  # Each replica has its own data key, hence the data order of its seed's single run.
  def permutation(epoch):
    perms = [np.asarray(jax.random.permutation(jax.random.fold_in(k["data"], epoch),
                                               len(train_set))) for k in keys]
    return runner.put_data(perms[0] if num_replicas == 1 else np.stack(perms))
  # uint8 (corpus: int32 ids) on device, converted per batch
  train_images = runner.put_data(examples(config, train_set))
  steps = np.atleast_1d(np.asarray(jax.device_get(state.step)))
  step = int(steps.max())
  state = runner.put_state(state)
  # A zero-step call compiles the runner outside the timed loop (AOT lowering would
  # not do for pmap across processes, which takes process-local arguments).
  t = time.perf_counter()
  chunk = runner.chunk
  state, _ = chunk(state, train_images, permutation(0), np.int32(0), np.int32(0))
  runner.get_metrics(state.step)  # host sync: compile finished
  timing = {"compile_seconds": time.perf_counter() - t, "train_seconds": 0.0, "trained_steps": 0}
  perm_epoch, perm = -1, None
  records = [{} for _ in keys]
  pending = [{"steps": 0, "seconds": 0.0, "sums": {}} for _ in keys]  # since the last log point
  diverged = np.zeros(num_replicas, bool)
  while step < total_steps:
    epoch, position = divmod(step, steps_per_epoch)
    if epoch != perm_epoch:
      perm_epoch, perm = epoch, permutation(epoch)
    every = [(n, step % n if n else 0)
             for n in (config.log_every, config.eval_every, config.checkpoint_every)]
    num_steps = min([steps_per_epoch - position, total_steps - step]
                    + [n - done for n, done in every if n]
                    + ([config.steps_per_dispatch] if config.steps_per_dispatch else []))
    t = time.perf_counter()
    state, sums = chunk(state, train_images, perm, np.int32(position), np.int32(num_steps))
    sums, counters = runner.get_metrics(  # host sync: end of a chunk
        (sums, (state.step, state.skipped_total, state.skipped_consecutive)))
    seconds = time.perf_counter() - t
    new_steps, skipped_total, skipped_consecutive = (
        np.atleast_1d(np.asarray(c)).astype(int) for c in counters)
    step = int(new_steps.max())  # the active replicas' step; fewer than asked if all diverged
    timing["train_seconds"] += seconds
    timing["trained_steps"] += int((new_steps - steps).sum())
    for r in range(num_replicas):
      pending[r]["steps"] += int(new_steps[r] - steps[r])
      pending[r]["seconds"] += seconds
      for k, v in sums.items():
        pending[r]["sums"][k] = pending[r]["sums"].get(k, 0.0) + float(np.atleast_1d(v)[r])
    steps = new_steps
    now_diverged = skipped_consecutive >= config.max_consecutive_skips
    newly = np.flatnonzero(now_diverged & ~diverged)
    diverged = now_diverged
    at_log_point = (step % config.log_every == 0) if config.log_every else False
    # The final evaluation is _finish's; the periodic ones are extra logging points.
    at_eval_point = bool(config.eval_every) and step % config.eval_every == 0 and (
        step < total_steps) and not diverged.all()
    if at_log_point or at_eval_point or step == total_steps or len(newly):
      host_params = runner.get_state(state).params if at_eval_point else None
      for r in range(num_replicas):
        if diverged[r] and r not in newly:
          continue  # stopped earlier: nothing new to log
        record = run_logs.metrics_record(pending[r], int(steps[r]), steps_per_epoch,
                                 int(skipped_total[r]), config.batch_size)
        pending[r] = {"steps": 0, "seconds": 0.0, "sums": {}}
        if at_eval_point and not diverged[r]:
          params = host_params if num_replicas == 1 else replicas.index(host_params, r)
          record.update({f"{split}/{k}": v for split, metrics in
                         evaluator(params, key=keys[r]["eval"]).items() for k, v in metrics.items()})
        if num_replicas > 1:
          record = {"replica": r, **record}
        records[r] = record
        if primary:
          run_logs.log_record(record, total_steps, at_eval_point and not diverged[r], workdir, writer, log)
    for r in newly:
      if num_replicas == 1:
        raise RunError(f"stopping at step {step}: {skipped_consecutive[r]} consecutive updates "
                       f"had a non-finite loss, gradient or result and were skipped (try a lower "
                       f"learning_rate or grad_clip_norm); checkpoints are never written "
                       f"from a diverged state, so the newest one in the workdir is finite")
      log(f"replica {r} stopped at step {steps[r]}: {skipped_consecutive[r]} consecutive "
          f"non-finite updates were skipped; the other replicas train on")
    if diverged.all():
      raise RunError(f"stopping at step {step}: every replica diverged (each had "
                     f"{config.max_consecutive_skips} consecutive non-finite updates)")
    if (config.checkpoint_every and step % config.checkpoint_every == 0) or step == total_steps:
      # The data position is implied by the step (epoch permutations are keyed by
      # epoch); it is recorded for people reading the checkpoint. A stopped
      # replica is saved as it stopped (its last applied update is finite).
      ckpt.save(step, runner.get_state(state),
                {"step": step, "epoch": step // steps_per_epoch,
                 "position_in_epoch": step % steps_per_epoch, "config": run_config})
  return runner.get_state(state), timing, records


def _finish(config, model, state, eval_sets, evaluator, keys, timing, records, workdir,
            primary, log, writer):
  """Test (and validation) metrics, pictures and summary.json from the final host-side
  state; per replica, plus mean and sd over the replicas, for a replicated run."""
  t = time.perf_counter()
  num_replicas = len(keys)
  test_examples = examples(config, eval_sets["test"], as_float=True) if primary else None
  steps = np.atleast_1d(np.asarray(state.step))
  diverged = np.atleast_1d(np.asarray(state.skipped_consecutive)) >= config.max_consecutive_skips
  per_replica = []
  for r in range(num_replicas):
    params = state.params if num_replicas == 1 else replicas.index(state.params, r)
    out = {"steps": int(steps[r]),
           "skipped_updates": int(np.atleast_1d(np.asarray(state.skipped_total))[r]),
           "params_checksum": checkpoint.params_checksum(params),
           "train": {k.split("/", 1)[1]: v for k, v in records[r].items()
                     if k.startswith("train/")} or None}
    if diverged[r]:  # stopped: its params are its last finite ones, not a trained model
      out["diverged"] = True
    else:
      out.update(evaluator(params, final=True, key=keys[r]["eval"]))
      if primary:
        folder = workdir if num_replicas == 1 else os.path.join(workdir, f"replica_{r}")
        os.makedirs(folder, exist_ok=True)
        grids = pictures.write_run_pictures(config, model, params, test_examples, folder,
                                            key=keys[r]["picture"])
        prefix = "" if num_replicas == 1 else f"replica_{r}/"
        writer.images(int(steps[r]), {prefix + name: g for name, g in grids.items()})
    per_replica.append(out)
  trained_steps = timing.pop("trained_steps")
  summary = {
      "dataset": config.dataset, "model": config.model, "steps": int(steps.max()),
      "epochs": config.epochs, "parallel": config.parallel,
      "examples_per_sec": (trained_steps * config.batch_size / timing["train_seconds"]
                           if trained_steps else None),
      **timing}
  if num_replicas == 1:
    summary.update(per_replica[0])
  else:
    splits = [k for k in ("test", "validation") if k in eval_sets]
    summary.update(num_replicas=num_replicas, sweep=config.sweep,
                   params_checksum=checkpoint.params_checksum(state.params),
                   skipped_updates=int(np.sum(state.skipped_total)),
                   diverged=[int(r) for r in np.flatnonzero(diverged)],
                   replicas=[{**d, **out} for d, out in zip(replicas.describe(
                       num_replicas, replicas.parse_sweep(config.sweep, num_replicas),
                       config.seed), per_replica)])
    for split in splits:
      mean, sd = replicas.aggregate([out.get(split, {}) for out in per_replica], list(diverged))
      summary[split], summary[f"{split}_sd"] = mean, sd
  summary["eval_seconds"] = time.perf_counter() - t
  if config.likelihood == "bernoulli_grey":
    summary["note"] = ("likelihood='bernoulli_grey': recon is binary cross-entropy on grey "
                       "pixels, not a log-likelihood; neg_elbo is not a bound on -log p(x)")
  test_metrics = summary["test"]
  headline = "neg_elbo" if "neg_elbo" in test_metrics else "recon"
  if primary:
    run_logs.write_json_atomic(os.path.join(workdir, "summary.json"), summary)
    step = int(steps.max())
    for split in ("test", "validation", "test_sd", "validation_sd"):
      if summary.get(split):
        writer.scalars(step, {f"{split}/{k}": v for k, v in summary[split].items()})
    if num_replicas > 1:
      for r, out in enumerate(per_replica):
        writer.scalars(int(steps[r]), {f"replica_{r}/test/{k}": v
                                       for k, v in out.get("test", {}).items()})
    writer.hparams(config_to_dict(config), {f"test/{headline}": test_metrics.get(headline)})
  spread = (f" +- {summary['test_sd'][headline]:.2f} (sd over {num_replicas - diverged.sum()} "
            f"replicas)" if num_replicas > 1 and summary["test_sd"].get(headline) else "")
  log(f"test {headline} {test_metrics.get(headline, float('nan')):.2f}{spread} nats | summary in "
      f"{workdir}/summary.json")
  return summary

"""One training run from a config: data, model, compiled chunks, logging,
checkpoints, final evaluation and pictures. `experiments/train.py` is the CLI.

Writes into the workdir: metrics.jsonl (one JSON line per logging point),
TensorBoard event files (the same scalars, the final test metrics and picture
grids, the config; config.tensorboard), summary.json, checkpoints/ (orbax),
config.json, samples.png, reconstructions.png. A workdir with checkpoints
resumes from the newest one.
"""
from __future__ import annotations

import json
import os
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from vaejax import (checkpoint, config as config_lib, objectives, parallel, pictures,
                    tensorboard_writer, training)
from vaejax.builders import (EVAL_BINARIZATION_KEY, build_estimator, build_evaluator,  # noqa: F401
                             build_model, build_optimizer, examples, importance_nll,
                             learning_rate, load_data)

# Summary fields that are wall-clock measurements, so differ between identical runs.
TIMING_KEYS = ("examples_per_sec", "train_seconds", "compile_seconds", "eval_seconds")


class RunError(RuntimeError):
  """A run cannot continue (diverged, config mismatch on resume); the message says why."""


def config_to_dict(config: ml_collections.ConfigDict) -> dict:
  return json.loads(config.to_json())


def _write_json_atomic(path: str, obj: Any) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2, sort_keys=True)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def _truncate_metrics(path: str, last_step: int) -> None:
  """Drops logged lines past the step a resumed run restarts from."""
  if not os.path.exists(path):
    return
  def keep(line: str) -> bool:
    try:
      return json.loads(line)["step"] <= last_step
    except (ValueError, KeyError):  # a line cut short by a kill
      return False

  with open(path) as f:
    lines = [l for l in f if l.strip() and keep(l)]
  with open(path, "w") as f:
    f.writelines(lines)


def run(config: ml_collections.ConfigDict, workdir: str, *,
        allow_config_change: bool = False, quiet: bool = False) -> dict:
  """Trains (or resumes) the run in `workdir`; returns the summary it writes.

  In a multi-process run every process trains; process 0 alone writes logs,
  pictures and the summary (orbax coordinates the checkpoint writes).
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
  estimator = build_estimator(config)
  optimizer = build_optimizer(config, estimator, len(train_set) // config.batch_size)
  # One root key split by purpose; init_key's fold_ins name the two minor purposes.
  init_key, train_key, data_key, eval_key = jax.random.split(jax.random.PRNGKey(config.seed), 4)
  baseline_key, picture_key = jax.random.fold_in(init_key, 1), jax.random.fold_in(init_key, 2)
  params = {**model.init(init_key), **estimator.init_params(baseline_key, model)}
  state = training.create_train_state(params, optimizer, key=train_key)

  evaluator = build_evaluator(config, model, eval_sets, key=eval_key)
  run_config = config_to_dict(config)
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"),
                                 max_to_keep=config.keep_checkpoints)
  writer = tensorboard_writer.NullWriter()
  try:  # close the event file on every exit, errors included
    try:  # and orbax's background machinery
      state = _restore_or_start(ckpt, state, run_config, workdir, allow_config_change, primary,
                                log)
      if primary and config.tensorboard:
        # Drops an earlier attempt's events past the restored step (all of them on a
        # fresh start), as metrics.jsonl is truncated.
        writer = tensorboard_writer.TensorBoardWriter(workdir, purge_step=int(state.step) + 1)
      runner = parallel.make_runner(
          config.parallel, loss_fn=objectives.make_batch_loss(model, estimator.per_example),
          optimizer=optimizer,
          preprocess=training.make_preprocess(train_set.max_value, config.dynamic_binarization),
          batch_size=config.batch_size, max_consecutive_skips=config.max_consecutive_skips,
          num_devices=config.num_devices)
      state, timing, last_record = _train(config, runner, state, train_set, data_key, ckpt,
                                          run_config, workdir, primary, log, writer, evaluator)
    finally:
      ckpt.close()
    return _finish(config, model, state, eval_sets, evaluator, picture_key, timing,
                   last_record, workdir, primary, log, writer)
  finally:
    writer.close()


def changed_config_keys(saved: dict, run_config: dict) -> list[str]:
  """Keys whose value differs between a checkpoint's config and this run's.

  A key added to the config since the checkpoint was written counts as
  unchanged while it holds its default: that is how the old run behaved.
  """
  defaults = config_to_dict(config_lib.base_config())
  saved = {**{k: v for k, v in defaults.items() if k not in saved}, **saved}
  return sorted(k for k in set(run_config) | set(saved) if run_config.get(k) != saved.get(k))


def _restore_or_start(ckpt, state, run_config, workdir, allow_config_change, primary, log):
  """The newest readable checkpoint's state (config checked first), else `state`."""
  metrics_path = os.path.join(workdir, "metrics.jsonl")

  def check_config(meta: dict) -> None:
    changed = changed_config_keys(meta.get("config", {}), run_config)
    if not changed:
      return
    if not allow_config_change:
      raise RunError(f"{workdir} holds a checkpoint of a run with a different config "
                     f"(changed: {', '.join(changed)}); use a new --workdir or pass "
                     f"--allow_config_change to continue with the new config")
    log(f"continuing with a changed config (changed: {', '.join(changed)})")

  restored = ckpt.restore_latest(state, check_metadata=check_config)
  step = -1
  if restored is not None:
    step, state, _ = restored
    log(f"resuming from checkpoint at step {step} in {workdir}")
  if primary:
    _truncate_metrics(metrics_path, step)
    _write_json_atomic(os.path.join(workdir, "config.json"), run_config)
  return state


def _train(config, runner, state, train_set, data_key, ckpt, run_config, workdir, primary, log,
           writer, evaluator):
  """The host loop: one dispatch per chunk; chunks end at logging, checkpoint and
  epoch boundaries, where the host syncs once."""
  steps_per_epoch = len(train_set) // config.batch_size
  total_steps = steps_per_epoch * config.epochs
  # Epoch permutations are made on the host: cheap, and identical in every process.
  permutation = lambda epoch: runner.put_data(np.asarray(jax.random.permutation(  # noqa: E731
      jax.random.fold_in(data_key, epoch), len(train_set))))
  train_images = runner.put_data(examples(config, train_set))  # uint8 on device, converted per batch
  step = int(state.step)
  state = runner.put_state(state)
  # A zero-step call compiles the runner outside the timed loop (AOT lowering would
  # not do for pmap across processes, which takes process-local arguments).
  t = time.perf_counter()
  chunk = runner.chunk
  state, _ = chunk(state, train_images, permutation(0), np.int32(0), np.int32(0))
  runner.get_metrics(state.step)  # host sync: compile finished
  timing = {"compile_seconds": time.perf_counter() - t, "train_seconds": 0.0, "trained_steps": 0}
  perm_epoch, perm, record = -1, None, {}
  pending = {"steps": 0, "seconds": 0.0, "sums": {}}  # metrics since the last logging point
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
    new_step, skipped_total, skipped_consecutive = (int(c) for c in counters)
    num_steps, step = new_step - step, new_step  # fewer than asked if it diverged
    timing["train_seconds"] += seconds
    timing["trained_steps"] += num_steps
    pending["steps"] += num_steps
    pending["seconds"] += seconds
    for k, v in sums.items():
      pending["sums"][k] = pending["sums"].get(k, 0.0) + float(v)
    diverged = skipped_consecutive >= config.max_consecutive_skips
    at_log_point = (step % config.log_every == 0) if config.log_every else False
    # The final evaluation is _finish's; the periodic ones are extra logging points.
    at_eval_point = bool(config.eval_every) and step % config.eval_every == 0 and (
        step < total_steps) and not diverged
    if at_log_point or at_eval_point or step == total_steps or diverged:
      record = _metrics_record(pending, step, steps_per_epoch, skipped_total, config.batch_size)
      pending = {"steps": 0, "seconds": 0.0, "sums": {}}
      if at_eval_point:
        record.update({f"{split}/{k}": v for split, metrics in
                       evaluator(runner.get_state(state).params).items()
                       for k, v in metrics.items()})
      if primary:
        with open(os.path.join(workdir, "metrics.jsonl"), "a") as f:
          f.write(json.dumps(record) + "\n")
        writer.scalars(step, {k if "/" in k else f"train/{k}": v for k, v in record.items()
                              if k != "step"})
        shown = " ".join(f"{k} {record['train/' + k]:.2f}" for k in ("loss", "recon", "kl")
                         if record.get("train/" + k) is not None)
        if at_eval_point:
          headline = "neg_elbo" if "test/neg_elbo" in record else "recon"
          shown += f" | test {headline} {record['test/' + headline]:.2f}"
        log(f"step {step}/{total_steps} epoch {record['epoch']:.2f} {shown or 'no update applied'}"
            f" | skipped {skipped_total} | {record['examples_per_sec']:.0f} ex/s")
    if diverged:
      raise RunError(f"stopping at step {step}: {skipped_consecutive} consecutive updates had a "
                     f"non-finite loss, gradient or result and were skipped (try a lower "
                     f"learning_rate or grad_clip_norm); checkpoints are never written "
                     f"from a diverged state, so the newest one in the workdir is finite")
    if (config.checkpoint_every and step % config.checkpoint_every == 0) or step == total_steps:
      # The data position is implied by the step (epoch permutations are keyed by
      # epoch); it is recorded for people reading the checkpoint.
      ckpt.save(step, runner.get_state(state),
                {"step": step, "epoch": step // steps_per_epoch,
                 "position_in_epoch": step % steps_per_epoch, "config": run_config})
  return runner.get_state(state), timing, record


def _metrics_record(pending, step, steps_per_epoch, skipped_total, batch_size) -> dict:
  """One metrics.jsonl line: means over the applied steps since the last logging point."""
  sums, steps = pending["sums"], pending["steps"]
  applied = steps - int(sums.get("skipped", 0))
  means = {k: v / applied if applied else None for k, v in sums.items() if k != "skipped"}
  means["skipped"] = sums.get("skipped", 0) / steps if steps else 0.0
  return {"step": step, "epoch": step / steps_per_epoch,
          **{f"train/{k}": v for k, v in means.items()}, "skipped_total": skipped_total,
          "examples_per_sec": steps * batch_size / max(pending["seconds"], 1e-9)}


def _finish(config, model, state, eval_sets, evaluator, picture_key, timing, record, workdir,
            primary, log, writer):
  """Test (and validation) metrics, pictures and summary.json from the final host-side state."""
  t = time.perf_counter()
  evaluated = evaluator(state.params, final=True)
  test_metrics = evaluated["test"]
  trained_steps = timing.pop("trained_steps")
  summary = {
      "dataset": config.dataset, "model": config.model, "steps": int(state.step),
      "epochs": config.epochs, "parallel": config.parallel, **evaluated,
      "train": {k.split("/", 1)[1]: v for k, v in record.items() if k.startswith("train/")} or None,
      "skipped_updates": int(state.skipped_total),
      "params_checksum": checkpoint.params_checksum(state.params),
      "examples_per_sec": (trained_steps * config.batch_size / timing["train_seconds"]
                           if trained_steps else None),
      **timing, "eval_seconds": time.perf_counter() - t,
  }
  if config.likelihood == "bernoulli_grey":
    summary["note"] = ("likelihood='bernoulli_grey': recon is binary cross-entropy on grey "
                       "pixels, not a log-likelihood; neg_elbo is not a bound on -log p(x)")
  if primary:
    test_examples = examples(config, eval_sets["test"], as_float=True)
    grids = pictures.write_run_pictures(config, model, state.params, test_examples, workdir,
                                        key=picture_key)
    _write_json_atomic(os.path.join(workdir, "summary.json"), summary)
  headline = "neg_elbo" if "neg_elbo" in test_metrics else "recon"
  if primary:
    step = int(state.step)
    for split, metrics in evaluated.items():
      writer.scalars(step, {f"{split}/{k}": v for k, v in metrics.items()})
    writer.images(step, grids)
    writer.hparams(config_to_dict(config), {f"test/{headline}": test_metrics[headline]})
  log(f"test {headline} {test_metrics[headline]:.2f} nats | summary in {workdir}/summary.json")
  return summary

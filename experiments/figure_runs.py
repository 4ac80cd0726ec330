"""What experiments/figures.py reads from runs: their configs, checkpoints, summaries and
test examples, each failure a FigureError (one line on stderr, exit status 2)."""
import dataclasses
import json
import os


class FigureError(ValueError):
  """A figure cannot be drawn from these runs; the message says why."""


@dataclasses.dataclass(frozen=True)
class Options:
  """The flags' values, read once in main."""
  out: str
  data_dir: str | None = None
  seed: int = 0
  subset: int = 0
  num_draws: int = 10
  num_dims: int = 5
  test_index: int = 0
  grid: int = 15


def saved_config(workdir: str):
  """The run's config.json over today's defaults: checked before load_run, which
  spends seconds on the checkpoint."""
  from vaejax import runs
  try:
    return runs.read_config(workdir)
  except runs.NotARunError as e:
    raise FigureError(str(e)) from None


def load(workdir: str, opts: Options):
  """(config, model, params, test, step) of a run (vaejax.load_run) and its test set."""
  import vaejax
  from vaejax import checkpoint, data
  try:
    run = vaejax.load_run(workdir)
    test = data.load(run.config.dataset, "test", opts.data_dir or run.config.data_dir or None)
  except (ValueError, data.DataError, checkpoint.CheckpointError) as e:
    raise FigureError(str(e)) from None
  if opts.data_dir:
    run.config.data_dir = opts.data_dir
  return run.config, run.model, run.params, test, run.step


def read_summary(workdir: str) -> dict | None:
  path = os.path.join(workdir, "summary.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def eval_examples(config, test, subset: int):
  """(test set, its examples [N, ...] float: under dynamic binarisation the fixed draw)."""
  from vaejax import experiment
  if subset:
    test = test.spread(subset)
  return test, experiment.examples(config, test, as_float=True)


def write_json(out: str, name: str, obj) -> None:
  with open(os.path.join(out, name), "w") as f:
    json.dump(obj, f, indent=2)


def describe(workdir: str, config) -> str:
  return (f"{workdir} has model={config.model!r}, condition={config.condition!r}, "
          f"objective={config.objective!r}, latent_dim={config.latent_dim}")

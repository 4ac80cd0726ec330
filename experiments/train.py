"""Train a VAE from a config file and write its results into a workdir.

  python experiments/train.py --config experiments/configs/vae_flax_reference.py \
      --workdir runs/reference --config.data_dir=../shared/data [--config.key=value ...]

Writes metrics.jsonl, summary.json, checkpoints/, samples.png and
reconstructions.png into --workdir, and resumes from its newest checkpoint.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to an ml_collections config file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for checkpoints, metrics and pictures.")
_ALLOW_CHANGE = flags.DEFINE_bool("allow_config_change", False,
                                  "Resume a workdir even though its saved config differs.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "Multi-process runs: host:port of process 0 "
    "(default $VAEJAX_COORDINATOR_ADDRESS).")
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", None, "Multi-process runs: how many processes (default $VAEJAX_NUM_PROCESSES, else 1).")
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", None, "Multi-process runs: this process's index (default $VAEJAX_PROCESS_ID).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  # orbax logs every save at INFO through absl; keep the console to our progress lines.
  logging.set_verbosity(logging.WARNING)
  from vaejax import checkpoint, config, data, experiment, parallel
  try:
    # Before anything touches a device: every process must join first.
    parallel.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    experiment.run(_CONFIG.value, _WORKDIR.value, allow_config_change=_ALLOW_CHANGE.value)
  except (config.ConfigError, data.DataError, experiment.RunError, checkpoint.CheckpointError,
          parallel.DistributedError, OSError) as e:  # OSError: an unusable workdir, say
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  from vaejax import cli
  app.run(main, flags_parser=cli.parse_flags)

"""Share of test codes in their own component at every kept checkpoint of an AAE
run, and with the parameters averaged over the last n checkpoints (uniform tail
averaging, Polyak-style). Output of this run: average_checkpoints.txt.

  python experiments/train.py --config experiments/configs/aae_mixture2d.py --workdir W \
      --config.data_dir=../shared/data --config.checkpoint_every=60 --config.keep_checkpoints=40
  python \
    experiments/results/aae_mnist/sweep_batch1000/checkpoint_every_epoch/average_checkpoints.py \
    W DATA_DIR
"""
import glob
import os
import sys

import jax

import vaejax
from vaejax.models import aae

workdir, data_dir = sys.argv[1], sys.argv[2]
run = vaejax.load_run(workdir)
test = run.examples("test", data_dir=data_dir)
folders = glob.glob(os.path.join(workdir, "checkpoints", "*"))
steps = sorted(int(os.path.basename(p)) for p in folders if os.path.basename(p).isdigit())


def metrics(params):
  out = aae.match_metrics(run.model, params, test, key=jax.random.PRNGKey(0))
  return {k: round(float(v), 4) for k, v in jax.device_get(out).items()}


tail = []
for step in steps:
  tail.append(vaejax.load_run(workdir, step=step).params)
  print("step", step, metrics(tail[-1]), flush=True)
for n in sorted({min(n, len(steps)) for n in (2, 5, 10, 20, len(steps))}):
  average = jax.tree_util.tree_map(lambda *a: sum(a) / len(a), *tail[-n:])
  print("average of the last", n, metrics(average), flush=True)

"""Replicated runs (vaejax.replicas): R models in one program equal R single runs."""
import json
import shutil
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from conftest import REPO
from vaejax import config as config_lib, experiment, replicas


def _config(data_dir, **overrides):
  config = config_lib.load_config_file(str(REPO / "experiments" / "configs" / "vae_smoke.py"))
  config.data_dir = data_dir
  config.tensorboard = False
  config.num_image_samples = 0
  config.update(overrides)
  return config


def _params(workdir, step=32):
  state = ocp.StandardCheckpointer().restore(str(workdir / "checkpoints" / str(step) / "state"))
  return state["params"]


@pytest.fixture(scope="module")
def three_replicas(tmp_path_factory, data_dir):
  workdir = tmp_path_factory.mktemp("replicas") / "run"
  summary = experiment.run(_config(data_dir, num_replicas=3, checkpoint_every=16,
                                   keep_checkpoints=3), str(workdir), quiet=True)
  return workdir, summary


def test_replica_r_equals_the_single_run_with_seed_plus_r(three_replicas, tmp_path, data_dir):
  workdir, summary = three_replicas
  stacked = _params(workdir)
  for r in (0, 2):
    single = tmp_path / f"seed{r}"
    experiment.run(_config(data_dir, seed=r), str(single), quiet=True)
    # Not bit-exact: vmapped, each matmul is a batched dot whose kernel sums in another
    # order (measured: ~1 float32 ulp per weight after 32 Adam steps). 1e-5 is far
    # below what one step with another batch or seed changes (~1e-3).
    diff = jax.tree_util.tree_map(lambda a, b: np.abs(a[r] - b).max(), stacked, _params(single))
    assert max(jax.tree_util.tree_leaves(diff)) < 1e-5
    single_test = json.loads((single / "summary.json").read_text())["test"]
    np.testing.assert_allclose(summary["replicas"][r]["test"]["neg_elbo"],
                               single_test["neg_elbo"], rtol=1e-5)
  assert summary["replicas"][1]["seed"] == 1
  neg_elbos = [summary["replicas"][r]["test"]["neg_elbo"] for r in range(3)]
  assert summary["test"]["neg_elbo"] == pytest.approx(np.mean(neg_elbos))
  assert summary["test_sd"]["neg_elbo"] == pytest.approx(np.std(neg_elbos, ddof=1))
  assert len(set(neg_elbos)) == 3  # three different seeds train three different models


def test_a_poisoned_replica_stops_and_the_others_are_unchanged(three_replicas, tmp_path,
                                                               data_dir):
  workdir, summary = three_replicas
  poisoned = experiment.run(_config(data_dir, num_replicas=3,
                                    sweep="learning_rate=1e-3,1e30,1e-3"),
                            str(tmp_path), quiet=True)
  assert poisoned["diverged"] == [1]
  assert poisoned["replicas"][1]["diverged"] and "test" not in poisoned["replicas"][1]
  assert poisoned["replicas"][1]["steps"] < 32
  for r in (0, 2):  # bit-exact: the same program, a stopped replica beside them
    assert poisoned["replicas"][r]["params_checksum"] == summary["replicas"][r]["params_checksum"]
  assert poisoned["test"]["neg_elbo"] == pytest.approx(
      np.mean([summary["replicas"][r]["test"]["neg_elbo"] for r in (0, 2)]))


def test_resume_of_a_replicated_run_reaches_the_uninterrupted_checksums(three_replicas, tmp_path,
                                                                        data_dir):
  workdir, summary = three_replicas
  # The state a kill after step 16 leaves: the checkpoint at 16, logs up to there.
  resumed = tmp_path / "run"
  shutil.copytree(workdir, resumed)
  shutil.rmtree(resumed / "checkpoints" / "32")
  (resumed / "summary.json").unlink()
  config = _config(data_dir, num_replicas=3, checkpoint_every=16,
                   keep_checkpoints=3)
  again = experiment.run(config, str(resumed), quiet=True)
  assert again["params_checksum"] == summary["params_checksum"]
  assert [r["params_checksum"] for r in again["replicas"]] == [
      r["params_checksum"] for r in summary["replicas"]]


def test_a_swept_beta_reaches_each_replica(tmp_path, data_dir):
  swept = experiment.run(_config(data_dir, num_replicas=2, sweep="beta=1,4"), str(tmp_path),
                         quiet=True)
  single = experiment.run(_config(data_dir, seed=1, beta=4.0), str(tmp_path / "single"),
                          quiet=True)
  assert swept["replicas"][1]["beta"] == 4.0
  np.testing.assert_allclose(swept["replicas"][1]["test"]["neg_elbo"],
                             single["test"]["neg_elbo"], rtol=1e-5)
  assert swept["replicas"][1]["test"]["kl"] < swept["replicas"][0]["test"]["kl"]


@pytest.mark.parametrize("sweep, num, message", [
    ("beta=1,2", 3, "beta has 2 values but config.num_replicas=3"),
    ("num_samples=1,5", 2, "num_samples cannot differ between replicas"),
    ("adam_b1=0.9,0.5", 2, "'adam_b1' is not sweepable"),
    ("beta=1,x", 2, "must be numbers"),
    ("beta", 2, "is not of the form key=v1,v2"),
    ("learning_rate=1e-3,-1", 2, "replica 1 (learning_rate=-1): config.learning_rate"),
    ("kl_warmup_steps=0,2.5", 2, "whole numbers"),
])
def test_bad_sweeps_are_one_line_config_errors(sweep, num, message):
  config = config_lib.base_config()
  config.num_replicas, config.sweep = num, sweep
  with pytest.raises(config_lib.ConfigError) as error:
    config_lib.validate(config)
  assert message in str(error.value) and "\n" not in str(error.value)


def test_parse_sweep_and_warmup_values():
  assert replicas.parse_sweep("beta=1,2; kl_warmup_steps=0,100", 2) == {
      "beta": [1.0, 2.0], "kl_warmup_steps": [0.0, 100.0]}
  config = config_lib.base_config()
  config.num_replicas, config.sweep = 2, "kl_warmup_steps=0,100"
  assert replicas.replica_config(config, 1, replicas.parse_sweep(config.sweep, 2)
                                 ).kl_warmup_steps == 100


@pytest.fixture(scope="module")
def three_replicas_batch_30(tmp_path_factory, data_dir):
  return experiment.run(_config(data_dir, num_replicas=3, batch_size=30),
                        str(tmp_path_factory.mktemp("one_device")), quiet=True)


@pytest.mark.parametrize("mode", ["sharding", "pmap"])
def test_replicas_over_three_faked_devices_match_one_device(three_replicas_batch_30, tmp_path,
                                                            data_dir, mode):
  # sharding puts one replica on each device; pmap splits each replica's batch of 30.
  import os
  import subprocess
  from test_train_script import SMOKE, TRAIN
  env = dict(os.environ)
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=3")
  proc = subprocess.run(TRAIN + ["--config", SMOKE, "--workdir", str(tmp_path),
                                 f"--config.data_dir={data_dir}", "--config.num_replicas=3",
                                 f"--config.parallel={mode}", "--config.batch_size=30",
                                 "--config.tensorboard=False", "--config.num_image_samples=0"],
                        capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  parallel = json.loads((tmp_path / "summary.json").read_text())
  for a, b in zip(parallel["replicas"], three_replicas_batch_30["replicas"]):
    np.testing.assert_allclose(a["test"]["neg_elbo"], b["test"]["neg_elbo"], rtol=1e-5)


def test_load_run_picks_a_replica(three_replicas):
  import vaejax
  workdir, summary = three_replicas
  run = vaejax.load_run(str(workdir), replica=2)
  assert run.config.seed == 2 and run.config.num_replicas == 1
  from vaejax import checkpoint
  assert checkpoint.params_checksum(run.params) == summary["replicas"][2]["params_checksum"]
  assert all(isinstance(x, jax.Array) for x in jax.tree_util.tree_leaves(run.params))
  with pytest.raises(vaejax.NotARunError, match="has 3 replica"):
    vaejax.load_run(str(workdir), replica=3)


def test_evaluate_script_evaluates_every_replica_or_the_one_asked(three_replicas, tmp_path):
  workdir, summary = three_replicas
  evaluate = [sys.executable, str(REPO / "experiments" / "evaluate.py"), "--workdir", str(workdir),
              "--k", "8", "--chunk", "8", "--subset", "40"]
  proc = subprocess.run(evaluate + ["--out", str(tmp_path / "all")], capture_output=True,
                        text=True, timeout=300, cwd=REPO)
  assert proc.returncode == 0, proc.stderr[-3000:]
  every = json.loads((tmp_path / "all" / "eval.json").read_text())
  nlls = [json.loads((tmp_path / "all" / f"replica_{r}" / "eval.json").read_text())["test"]["nll"]
          for r in range(3)]
  assert [r["test"]["nll"] for r in every["replicas"]] == nlls and len(set(nlls)) == 3
  assert every["test"]["nll"] == pytest.approx(np.mean(nlls))
  assert every["test_sd"]["nll"] == pytest.approx(np.std(nlls, ddof=1))
  assert "mean +- sd" in (tmp_path / "all" / "eval.md").read_text()
  proc = subprocess.run(evaluate + ["--replica", "1", "--out", str(tmp_path / "one")],
                        capture_output=True, text=True, timeout=300, cwd=REPO)
  assert proc.returncode == 0, proc.stderr[-3000:]
  # The same params, data and evaluation key: replica 1 alone gives the same numbers.
  assert json.loads((tmp_path / "one" / "eval.json").read_text())["test"]["nll"] == nlls[1]
  proc = subprocess.run(evaluate + ["--replica", "3"], capture_output=True, text=True,
                        timeout=300, cwd=REPO)
  assert proc.returncode == 2 and "has 3 replica(s); replica=3 is not one" in proc.stderr

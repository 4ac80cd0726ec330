"""pmap and sharding against the single-device step, on faked CPU devices.

Each case runs in a subprocess because XLA_FLAGS (the number of faked host
devices) must be set before jax initialises. Tolerance: parameters agree to
2e-5 absolute after 10 Adam steps at lr 1e-2 (the paths differ only in the
order of float reductions); test metrics of the CLI runs agree to 1e-3 nats.
"""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO

WORKER = str(REPO / "tests" / "_parallel_worker.py")


def _env(devices, model="vae"):
  xla_flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}"
  env = dict(os.environ, XLA_FLAGS=xla_flags.strip(), PYTHONPATH=str(REPO),
             VAEJAX_WORKER_MODEL=model)
  return env


def _worker(modes, out_dir, devices=8, extra=(), model="vae"):
  """Starts one worker process training `model` in each of `modes` (comma-separated);
  it writes out_dir/MODE.npz (MODE_pID.npz as process ID of a jax.distributed run)."""
  return subprocess.Popen([sys.executable, WORKER, modes, "10", str(out_dir), *extra],
                          env=_env(devices, model), cwd=REPO, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


def _finish(proc, timeout=300):
  try:
    out, err = proc.communicate(timeout=timeout)
  finally:
    proc.kill()
  assert proc.returncode == 0, err[-3000:]
  return out


def _train_modes(out_dir, model="vae", modes=("none", "pmap", "sharding")):
  """{mode: flattened params and metric sums} of `model` after 10 steps in each mode."""
  _finish(_worker(",".join(modes), out_dir, model=model))
  return {mode: _params(out_dir / f"{mode}.npz") for mode in modes}


def _params(path):
  with np.load(path) as f:
    return {k: f[k] for k in f.files}


def _assert_same(a, b, atol=2e-5):
  assert set(a) == set(b)
  for k in a:
    if k == "devices":
      continue
    np.testing.assert_allclose(a[k], b[k], atol=atol, rtol=1e-4, err_msg=k)


@pytest.fixture(scope="module")
def vae_modes(tmp_path_factory):
  return _train_modes(tmp_path_factory.mktemp("vae"))


def test_cvae_on_eight_devices_matches_one_device(tmp_path):
  """Labelled batches (a pytree) through both parallel paths; the learned prior trains."""
  results = _train_modes(tmp_path, model="cvae")
  single_device_cvae = results["none"]
  for mode in ("pmap", "sharding"):
    assert int(results[mode]["devices"]) == 8 and int(results[mode]["step"]) == 10
    _assert_same(results[mode], single_device_cvae)
  import jax
  from vaejax.models import cvae
  init = cvae.make_cvae(architecture="mlp", image_shape=(8, 8, 1), latent_dim=4, hidden=(32,),
                        condition="label", prior="learned").init(jax.random.PRNGKey(1))
  prior = {jax.tree_util.keystr(p): v for p, v in
           jax.tree_util.tree_flatten_with_path({"prior": init["prior"]})[0]}
  assert prior and all(not np.allclose(single_device_cvae[k], v) for k, v in prior.items())


def test_vqvae_ema_codebook_on_eight_devices_matches_one_device(tmp_path):
  """The EMA statistics come from the global batch (gathered over devices), so the
  codebook state, restarts included, is the single device's."""
  results = _train_modes(tmp_path, model="vqvae")
  single = results["none"]
  assert float(single["metric/restarts"]) > 0  # restarts happened in the compared steps
  for mode in ("pmap", "sharding"):
    result = results[mode]
    assert int(result["devices"]) == 8 and int(result["step"]) == 10
    _assert_same(result, single)


@pytest.mark.parametrize("model", ["aae", "wae"])
def test_prior_matching_autoencoders_on_eight_devices_match_one_device(model, tmp_path):
  """The AAE's three phases each average their gradient over devices; the WAE's
  MMD term gathers the codes of the global batch (pmap) or sees it whole
  (sharding): both give the single-device params."""
  results = _train_modes(tmp_path, model=model)
  single = results["none"]
  assert np.isfinite(float(single["metric/loss"]))
  key = "metric/discriminator_accuracy" if model == "aae" else "metric/mmd"
  assert key in single
  for mode in ("pmap", "sharding"):
    result = results[mode]
    assert int(result["devices"]) == 8 and int(result["step"]) == 10
    _assert_same(result, single)


@pytest.mark.parametrize("model", ["mvae", "mmvae", "mopoe"])
def test_multimodal_vaes_on_eight_devices_match_one_device(model, tmp_path):
  """MVAE's sub-sampled ELBO, MMVAE's stratified IWAE with DReG and MoPoE's ELBO are
  per-example objectives: pmap and sharding give the single-device params."""
  results = _train_modes(tmp_path, model=model)
  single = results["none"]
  assert np.isfinite(float(single["metric/loss"])) and "metric/neg_elbo" in single
  for mode in ("pmap", "sharding"):
    result = results[mode]
    assert int(result["devices"]) == 8 and int(result["step"]) == 10
    _assert_same(result, single)


def test_sequence_vae_with_word_dropout_on_eight_devices_matches_one_device(tmp_path):
  """The GRU sequence VAE's IWAE step, with each example's dropped decoder inputs
  keyed by its global index: pmap and sharding give the single-device params."""
  results = _train_modes(tmp_path, model="seqvae")
  single = results["none"]
  assert np.isfinite(float(single["metric/loss"]))
  assert any("decoder" in k and "cell" in k for k in single)
  for mode in ("pmap", "sharding"):
    result = results[mode]
    assert int(result["devices"]) == 8 and int(result["step"]) == 10
    # Gradients summed over 8 time steps in another order: one GRU weight in 256
    # drifted 1.7e-4 in 10 Adam steps at lr 1e-2 (Adam rescales near-zero gradients).
    # Other dropout draws (rate 0.2 instead of 0.25) move 69% of the weights by more.
    _assert_same(result, single, atol=5e-4)


@pytest.mark.parametrize("mode", ["pmap", "sharding"])
def test_eight_devices_match_one_device(mode, vae_modes):
  result = vae_modes[mode]
  assert int(result["devices"]) == 8 and int(result["step"]) == 10
  _assert_same(result, vae_modes["none"])
  # And the run actually trained: the params moved away from the shared init.
  assert any(np.abs(v).sum() > 0 for k, v in result.items() if k.startswith("['decoder']"))


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.parametrize("mode", ["pmap", "sharding"])
def test_two_processes_through_jax_distributed_match_one_process(mode, vae_modes, tmp_path):
  address = f"127.0.0.1:{_free_port()}"
  procs = [_worker(mode, tmp_path, devices=4, extra=(address, "2", str(i))) for i in range(2)]
  outs = [_finish(p, timeout=240) for p in procs]
  p0, p1 = _params(tmp_path / f"{mode}_p0.npz"), _params(tmp_path / f"{mode}_p1.npz")
  assert int(p0["devices"]) == 8
  for k in p0:  # the two processes hold bit-identical params
    np.testing.assert_array_equal(p0[k], p1[k], err_msg=k)
  assert [l.split()[2] for o in outs for l in o.splitlines() if l.startswith("checksum")][0] == \
      [l.split()[2] for o in outs for l in o.splitlines() if l.startswith("checksum")][1]
  _assert_same(p0, vae_modes["none"])


@pytest.fixture(scope="module")
def smoke_summaries(tmp_path_factory, data_dir):
  summaries = {}
  for mode in ("none", "pmap", "sharding"):
    workdir = tmp_path_factory.mktemp(mode)
    proc = subprocess.run(
        [sys.executable, str(REPO / "experiments" / "train.py"), "--config",
         str(REPO / "experiments" / "configs" / "vae_smoke.py"), "--workdir", str(workdir),
         f"--config.data_dir={data_dir}", f"--config.parallel={mode}"],
        env=_env(8), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summaries[mode] = json.loads((workdir / "summary.json").read_text())
  return summaries


@pytest.mark.parametrize("mode", ["pmap", "sharding"])
def test_train_script_on_eight_devices_gives_the_same_test_metrics(mode, smoke_summaries):
  ref, got = smoke_summaries["none"]["test"], smoke_summaries[mode]["test"]
  assert smoke_summaries[mode]["parallel"] == mode
  for k in ref:
    assert abs(got[k] - ref[k]) < 1e-3, (k, got[k], ref[k])


def _cli_error(tmp_path, *overrides):
  proc = subprocess.run(
      [sys.executable, str(REPO / "experiments" / "train.py"), "--config",
       str(REPO / "experiments" / "configs" / "vae_smoke.py"), "--workdir", str(tmp_path),
       *overrides], env=_env(8), cwd=REPO, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2
  return proc.stderr.strip()


def test_indivisible_batch_is_refused(tmp_path):
  err = _cli_error(tmp_path, "--config.parallel=pmap", "--config.batch_size=60")
  assert err == ("error: config.batch_size=60 does not divide over 8 devices; "
                 "use a multiple of 8")


def test_more_devices_than_exist_is_refused(tmp_path):
  err = _cli_error(tmp_path, "--config.parallel=sharding", "--config.num_devices=16")
  assert err == "error: config.num_devices=16 but only 8 devices exist (cpu)"

"""vaejax.load_run on a trained run, and the run's TensorBoard event files."""
import json
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

import vaejax
from conftest import REPO
from vaejax import checkpoint, config as config_lib, evaluate, experiment


def _metrics(workdir):
  return [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines() if l.strip()]


def _raw_checkpoint_params(workdir, step):
  """The params as orbax stores them, read without any target structure."""
  state = ocp.StandardCheckpointer().restore(workdir / "checkpoints" / str(step) / "state")
  return state["params"]


def _assert_trees_equal(a, b):
  flat_a, flat_b = jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves_with_path(b)
  assert [jax.tree_util.keystr(p) for p, _ in flat_a] == [jax.tree_util.keystr(p) for p, _ in flat_b]
  for (_, x), (_, y) in zip(flat_a, flat_b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_load_run_restores_the_newest_checkpoint_exactly(trained_run):
  run = vaejax.load_run(str(trained_run))
  summary = json.loads((trained_run / "summary.json").read_text())
  assert run.step == summary["steps"] == 32
  assert checkpoint.params_checksum(run.params) == summary["params_checksum"]
  _assert_trees_equal(run.params, _raw_checkpoint_params(trained_run, 32))
  # On the device, not host numpy (which every jitted call would transfer again).
  assert all(isinstance(x, jax.Array) and x.devices() == {jax.local_devices()[0]}
             for x in jax.tree_util.tree_leaves(run.params))
  assert run.config.latent_dim == 8 and run.model.latent_dim == 8


def test_load_run_at_an_older_step(trained_run):
  run = vaejax.load_run(str(trained_run), step=16)
  assert run.step == 16
  _assert_trees_equal(run.params, _raw_checkpoint_params(trained_run, 16))
  with pytest.raises(vaejax.NotARunError, match=r"no checkpoint at step 17; it has \[.*16, 24, 32\]"):
    vaejax.load_run(str(trained_run), step=17)


def test_not_a_run_gives_a_clear_error(tmp_path):
  with pytest.raises(vaejax.NotARunError, match="not a run: it has no config.json"):
    vaejax.load_run(str(tmp_path))
  with pytest.raises(vaejax.NotARunError, match="does not exist"):
    vaejax.load_run(str(tmp_path / "missing"))
  (tmp_path / "config.json").write_text("{}")
  with pytest.raises(vaejax.NotARunError, match="no checkpoints/"):
    vaejax.load_run(str(tmp_path))
  assert issubclass(vaejax.NotARunError, ValueError)


def test_run_methods_give_documented_shapes_and_ranges(trained_run):
  run = vaejax.load_run(str(trained_run))
  images = run.sample(key=jax.random.PRNGKey(0), num_samples=6)
  assert images.shape == (6, 28, 28, 1)
  assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0
  x = run.examples("test", num=4)
  assert x["image"].shape == (4, 28, 28, 1) and x["label"].shape == (4,)
  assert set(np.unique(np.asarray(x["image"]))) <= {0.0, 1.0}  # binarized MNIST
  q = run.encode(x)
  assert q.mean.shape == q.log_var.shape == (4, 8)
  recon = run.reconstruct(x)
  assert recon.shape == (4, 28, 28, 1) and 0.0 <= float(recon.min()) <= float(recon.max()) <= 1.0
  # Training improves reconstructions: the last checkpoint beats the first.
  early = vaejax.load_run(str(trained_run), step=8).reconstruct(x)
  assert np.mean(np.abs(recon - x["image"])) < np.mean(np.abs(early - x["image"]))
  np.testing.assert_allclose(run.decode(q.mean), recon, rtol=1e-5, atol=1e-6)
  path = run.interpolate(x, jax.tree_util.tree_map(lambda a: a[::-1], x), num_steps=5)
  assert path.shape == (4, 5, 28, 28, 1)
  np.testing.assert_allclose(path[:, 0], recon, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(path[:, -1], recon[::-1], rtol=1e-5, atol=1e-6)
  first = jax.tree_util.tree_map(lambda a: a[0], x)
  rows = run.traverse(first, dims=[3, 5], values=np.linspace(-3.0, 3.0, 4))
  assert rows.shape == (2, 4, 28, 28, 1)
  z = np.array(q.mean[0]).copy()
  z[5] = 1.0  # the third of linspace(-3, 3, 4)
  np.testing.assert_allclose(rows[1, 2], run.decode(z[None])[0], rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="needs a 2-D latent, the model's has 8"):
    run.decode_grid()
  with pytest.raises(ValueError, match=r"dims=\[8\] must be a list of latent dimensions in \[0, 8\)"):
    run.traverse(first, dims=[8], values=[0.0])


def _events(workdir):
  from tensorboard.backend.event_processing import event_accumulator as ea
  acc = ea.EventAccumulator(str(workdir), size_guidance={ea.SCALARS: 0, ea.IMAGES: 0})
  acc.Reload()
  return acc


def test_event_file_holds_the_logged_scalars_at_their_steps(trained_run):
  acc = _events(trained_run)
  records = _metrics(trained_run)
  assert [r["step"] for r in records] == [8, 16, 24, 32]
  for key in ("train/loss", "train/recon", "train/kl"):
    events = acc.Scalars(key)
    assert [e.step for e in events] == [r["step"] for r in records]
    np.testing.assert_allclose([e.value for e in events], [r[key] for r in records], rtol=1e-6)
  assert [e.step for e in acc.Scalars("train/examples_per_sec")] == [8, 16, 24, 32]
  summary = json.loads((trained_run / "summary.json").read_text())
  for key, value in summary["test"].items():
    (event,) = acc.Scalars(f"test/{key}")
    assert event.step == 32 and event.value == pytest.approx(value, rel=1e-6)
  assert {"samples", "reconstructions"} <= set(acc.Tags()["images"])
  assert acc.Images("samples")[0].step == 32
  assert "_hparams_/session_start_info" in acc.PluginTagToContent("hparams")
  config_text = acc.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
  assert '"latent_dim": 8' in config_text


def test_resumed_run_purges_the_events_it_rewrites(trained_run, tmp_path):
  workdir = tmp_path / "run"
  shutil.copytree(trained_run, workdir)
  shutil.rmtree(workdir / "checkpoints" / "32")  # as if killed between steps 24 and 32
  config = config_lib.base_config()
  config.update(json.loads((workdir / "config.json").read_text()))
  experiment.run(config, str(workdir), quiet=True)
  acc = _events(workdir)
  records = _metrics(workdir)
  loss = acc.Scalars("train/loss")
  assert [e.step for e in loss] == [8, 16, 24, 32]  # no step twice
  np.testing.assert_allclose([e.value for e in loss], [r["train/loss"] for r in records], rtol=1e-6)
  assert [e.step for e in acc.Scalars("test/neg_elbo")] == [32]


def test_eval_every_logs_test_bounds_during_training(tmp_path, data_dir):
  """eval_every adds logging points with the test bounds of the params at that step."""
  config = config_lib.load_config_file(str(REPO / "experiments" / "configs" / "vae_smoke.py"))
  config.update(dict(data_dir=data_dir, train_subset=512, eval_subset=200, log_every=3,
                     eval_every=4, checkpoint_every=4, num_image_samples=0))
  experiment.run(config, str(tmp_path), quiet=True)
  records = _metrics(tmp_path)  # 8 steps: logged at 3 and 6, evaluated at 4, final at 8
  assert [r["step"] for r in records] == [3, 4, 6, 8]
  assert [r["step"] for r in records if "test/neg_elbo" in r] == [4]
  mid = vaejax.load_run(str(tmp_path), step=4)
  expected = evaluate.evaluate_dataset(
      mid.model, experiment.build_estimator(mid.config, for_eval=True).per_example, mid.params,
      mid.examples("test", num=200), key=jax.random.split(jax.random.PRNGKey(config.seed), 4)[3],
      batch_size=200)
  assert records[1]["test/neg_elbo"] == pytest.approx(float(expected["neg_elbo"]), rel=1e-5)
  acc = _events(tmp_path)
  assert [e.step for e in acc.Scalars("test/neg_elbo")] == [4, 8]

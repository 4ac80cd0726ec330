"""The VQ-VAE: quantisation, straight-through and codebook gradients, the EMA
codebook and restarts by value, and a run through checkpoint and resume."""
import functools
import math
import shutil
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vaejax import (builders, checkpoint, config as config_lib, estimators, experiment, objectives,
                    training)
from vaejax.models import STATS, code_prior, vqvae

from conftest import REPO

SHAPE = (8, 8, 1)  # a 2 x 2 code grid


def _model(**kw):
  settings = dict(image_shape=SHAPE, features=(4, 8), num_codes=6, code_dim=3)
  return vqvae.make_vqvae(**{**settings, **kw})


def _image(seed=0):
  return (jax.random.uniform(jax.random.PRNGKey(seed), SHAPE) > 0.5).astype(jnp.float32)


def test_quantisation_picks_the_nearest_code():
  z_e = jax.random.normal(jax.random.PRNGKey(0), (50, 3))
  embedding = jax.random.normal(jax.random.PRNGKey(1), (7, 3))
  distances = np.sum((np.asarray(z_e)[:, None, :] - np.asarray(embedding)[None]) ** 2, -1)
  np.testing.assert_array_equal(vqvae.nearest_codes(z_e, embedding), distances.argmin(-1))


def _flat(tree):
  return np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(tree)])


def _loss_grad(model, params, x):
  return jax.jit(jax.grad(lambda p: -model.objective(p, x, key=None)[0]))(params)


def _encoder_pullback(model, params, x, cotangent):
  """J_enc^T cotangent for z_e = encode(params, x): the encoder params' pytree."""
  def pull(enc, cot):
    return jax.vjp(lambda e: model.encode({**params, "encoder": e}, x), enc)[1](cot)[0]
  return jax.jit(pull)(params["encoder"], cotangent)


def _recon_grad_at(model, params, x, z_q):
  """dL/dz at z = z_q and the decoder's gradient, L = -log p(x | z_q)."""
  def recon(decoder, z):
    return -model._log_density({**params, "decoder": decoder}, x, z)
  return jax.jit(jax.grad(recon, argnums=(0, 1)))(params["decoder"], z_q)


def test_straight_through_gradient_is_the_decoder_gradient_at_z_q_passed_to_the_encoder():
  """With no commitment term and the EMA (no codebook term), the encoder's gradient is
  J_enc^T dL/dz evaluated at z = z_q: the quantisation is skipped on the way back."""
  model = _model(commitment_cost=0.0, codebook_update="ema")
  params, x = jax.jit(model.init)(jax.random.PRNGKey(2)), _image()
  grads = _loss_grad(model, params, x)
  z_e = jax.jit(model.encode)(params, x)
  z_q = model.embedding(params)[jax.jit(model.posterior)(params, x).mean]
  assert not np.allclose(z_e, z_q)  # the two points differ, so the test can fail
  _, dloss_dz = _recon_grad_at(model, params, x, z_q)
  np.testing.assert_allclose(_flat(grads["encoder"]),
                             _flat(_encoder_pullback(model, params, x, dloss_dz)), rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_allclose(_flat(grads["codebook"]), 0.0)  # the EMA's state: no gradient


def test_codebook_and_commitment_gradients_reach_only_their_parameters():
  """Codebook loss: d/de_k = sum over positions p coded k of 2 (e_k - z_e_p), and
  nothing from the reconstruction; commitment: 2 beta (z_e - z_q) into the encoder only;
  the decoder sees the reconstruction only."""
  beta = 0.25
  model = _model(commitment_cost=beta)
  params, x = jax.jit(model.init)(jax.random.PRNGKey(3)), _image(1)
  grads = _loss_grad(model, params, x)
  z_e = jax.jit(model.encode)(params, x)
  codes = jax.jit(model.posterior)(params, x).mean
  e = params["codebook"]["embedding"]
  expected = np.zeros_like(e)
  for p, k in enumerate(np.asarray(codes)):
    expected[k] += 2 * (e[k] - z_e[p])
  np.testing.assert_allclose(grads["codebook"]["embedding"], expected, rtol=1e-5, atol=1e-6)
  z_q = e[codes]
  decoder, dloss_dz = _recon_grad_at(model, params, x, z_q)
  encoder = _encoder_pullback(model, params, x, dloss_dz + 2 * beta * (z_e - z_q))
  np.testing.assert_allclose(_flat(grads["encoder"]), _flat(encoder), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(_flat(grads["decoder"]), _flat(decoder), rtol=1e-5, atol=1e-6)


def test_ema_update_equals_the_running_averages_by_hand():
  g, eps, K = 0.9, 1e-5, 6
  model = _model(codebook_update="ema", ema_decay=g)
  params = jax.jit(model.init)(jax.random.PRNGKey(4))
  codes = np.array([[0, 0, 2, 5], [2, 0, 5, 5]], np.int32)  # [B, P]: code 1, 3, 4 unused
  z_e = np.arange(2 * 4 * 3, dtype=np.float32).reshape(2, 4, 3) / 10
  updates, metrics = jax.jit(model.update_state)(params, {"codes": codes, "z_e": z_e},
                                                 key=jax.random.PRNGKey(0))
  book = jax.tree_util.tree_map(np.asarray, params["codebook"])
  n = np.array([3, 0, 2, 0, 0, 3], np.float32)
  sums = np.zeros((K, 3), np.float32)
  for b in range(2):
    for p in range(4):
      sums[codes[b, p]] += z_e[b, p]
  count = g * book["count"] + (1 - g) * n
  total = count.sum()
  smoothed = (count + eps) / (total + K * eps) * total
  m = g * book["sum"] + (1 - g) * sums
  new = updates["codebook"]
  np.testing.assert_allclose(new["count"], count, rtol=1e-6)
  np.testing.assert_allclose(new["sum"], m, rtol=1e-6)
  np.testing.assert_allclose(new["embedding"], m / smoothed[:, None], rtol=1e-5)
  np.testing.assert_array_equal(new["idle_steps"], [0, 1, 0, 1, 1, 0])
  p = n / n.sum()
  np.testing.assert_allclose(metrics["perplexity"], np.exp(-np.sum(p[p > 0] * np.log(p[p > 0]))),
                             rtol=1e-6)
  assert float(metrics["codes_used"]) == 3


def test_a_code_unused_for_restart_after_batches_restarts_at_an_encoder_output():
  model = _model(codebook_update="ema", restart_after=2)
  params = jax.jit(model.init)(jax.random.PRNGKey(5))
  codes = np.zeros((2, 4), np.int32)  # only code 0 is used
  z_e = np.asarray(jax.random.normal(jax.random.PRNGKey(6), (2, 4, 3)))
  stats = {"codes": codes, "z_e": z_e}
  update_state = jax.jit(model.update_state)
  updates, metrics = update_state(params, stats, key=jax.random.PRNGKey(7))
  assert float(metrics["restarts"]) == 0  # one idle batch: not yet
  params = {**params, **updates}
  updates, metrics = update_state(params, stats, key=jax.random.PRNGKey(8))
  new = updates["codebook"]
  assert float(metrics["restarts"]) == 5
  rows = z_e.reshape(-1, 3)
  for k in range(1, 6):  # each restarted code is one of the batch's encoder outputs
    assert np.min(np.abs(rows - np.asarray(new["embedding"][k])).sum(-1)) == 0
    assert float(new["count"][k]) == 1 and float(new["idle_steps"][k]) == 0
  np.testing.assert_allclose(new["sum"][1:], new["embedding"][1:])


def test_train_step_applies_the_ema_from_the_global_batch_and_zero_adam_updates_to_it():
  """Through training.make_train_step: the state group's new value is update_state's,
  computed from the step's own codes, and the optimizer leaves it alone."""
  model = _model(codebook_update="ema")
  per_example = estimators.make_estimator("vq", "straight_through").per_example
  loss_fn = objectives.make_batch_loss(model, per_example)
  from vaejax import optim
  optimizer = optim.skippable_adam(1e-2)
  step = jax.jit(training.make_train_step(loss_fn, optimizer, training.make_preprocess(1, False),
                                          update_state=model.update_state))
  state = training.create_train_state(jax.jit(model.init)(jax.random.PRNGKey(9)), optimizer,
                                      key=jax.random.PRNGKey(10))
  batch = np.asarray(jax.random.bernoulli(jax.random.PRNGKey(11), 0.5, (4,) + SHAPE), np.uint8)
  _, metrics = jax.jit(loss_fn)(state.params, batch.astype(np.float32), key=jax.random.PRNGKey(0))
  expected, _ = jax.jit(model.update_state)(state.params, metrics[STATS], key=jax.random.PRNGKey(0))
  new_state, step_metrics = step(state, batch)
  assert STATS not in step_metrics and "perplexity" in step_metrics
  for name in ("count", "sum", "embedding"):
    np.testing.assert_allclose(new_state.params["codebook"][name], expected["codebook"][name],
                               rtol=1e-6, err_msg=name)
  assert not np.allclose(new_state.params["encoder"]["to_code"]["kernel"],
                         state.params["encoder"]["to_code"]["kernel"])


@pytest.mark.parametrize("override,message", [
    ({"objective": "elbo", "estimator": "pathwise"}, "objective='vq'"),
    ({"codebook_update": "loss"}, "restart_after_steps needs codebook_update='ema'"),
    ({"hidden": (8, 16, 32)}, "two conv widths"),
    ({"likelihood": "gaussian_learned", "dataset": "mnist"}, "likelihood"),
    ({"prior_dropout": 0.1}, "prior_dropout applies to model='vqvae_prior' only"),
])
def test_bad_vqvae_configs_are_refused_with_the_reason(override, message):
  config = config_lib.load_config_file(str(REPO / "experiments/configs/vqvae_mnist_smoke.py"))
  config.update(override)
  with pytest.raises(config_lib.ConfigError, match=message):
    config_lib.validate(config)


def test_config_prior_dropout_reaches_the_train_loss_and_not_the_evaluation(vqvae_run, data_dir):
  """Through the builders, as train.py builds a run: the prior gets config.prior_dropout;
  the training estimator is its training_objective, the evaluation's its objective."""
  config = _smoke_config("vqvae_prior_smoke", data_dir, vqvae_workdir=str(vqvae_run[0]),
                         prior_dropout=0.5)
  model = builders.build_model(config, (28, 28, 1))
  assert model.network.dropout == 0.5
  params = jax.jit(model.init)(jax.random.PRNGKey(0))
  x, key = jnp.zeros((28, 28, 1)).at[8:20, 12:16].set(1.0), jax.random.PRNGKey(1)
  value = lambda f: float(jax.jit(lambda p: f(p, x, key=key)[0])(params))  # noqa: E731
  trained = value(functools.partial(builders.build_estimator(config).per_example, model))
  evaluated = value(functools.partial(
      builders.build_estimator(config, for_eval=True).per_example, model))
  assert trained == value(model.training_objective) != evaluated == value(model.objective)


def test_prior_dropout_outside_zero_one_is_refused():
  config = config_lib.load_config_file(str(REPO / "experiments/configs/vqvae_prior_smoke.py"))
  config.update(vqvae_workdir="runs/v", prior_dropout=1.0)
  with pytest.raises(config_lib.ConfigError, match=r"prior_dropout=1.0 must be in \[0, 1\)"):
    config_lib.validate(config)
  config.prior_dropout = 0.1
  config_lib.validate(config)


def _smoke_config(name, data_dir, **overrides):
  config = config_lib.load_config_file(str(REPO / f"experiments/configs/{name}.py"))
  config.update(data_dir=data_dir, eval_subset=128, num_image_samples=4, tensorboard=False,
                **overrides)
  return config


@pytest.fixture(scope="module")
def vqvae_run(tmp_path_factory, data_dir):
  """(workdir, summary) of a smoke VQ-VAE run: EMA codebook with restarts, 16 steps."""
  workdir = tmp_path_factory.mktemp("vqvae") / "run"
  config = _smoke_config("vqvae_mnist_smoke", data_dir, train_subset=256, checkpoint_every=8,
                         log_every=8)
  return workdir, experiment.run(config, str(workdir), quiet=True)


def test_vqvae_trains_and_resumes_exactly_from_its_checkpoint(vqvae_run, tmp_path, data_dir):
  """EMA codebook with restarts through the run loop: a copy of a finished run whose
  newest checkpoint is removed resumes from the one before and ends on the same
  params (the checksum covers the codebook state); the summary reports the
  uniform-prior bound and codebook use."""
  workdir, straight = vqvae_run
  shutil.copytree(workdir, tmp_path / "resumed")
  shutil.rmtree(tmp_path / "resumed" / "checkpoints" / "16")
  (tmp_path / "resumed" / "summary.json").unlink()
  config = _smoke_config("vqvae_mnist_smoke", data_dir, train_subset=256, checkpoint_every=8,
                         log_every=8)
  resumed = experiment.run(config, str(tmp_path / "resumed"), quiet=True)
  assert straight["steps"] == resumed["steps"] == 16
  assert resumed["params_checksum"] == straight["params_checksum"]
  assert resumed["test"] == straight["test"]
  test = straight["test"]
  np.testing.assert_allclose(test["neg_elbo"], test["recon"] + 49 * math.log(32), rtol=1e-6)
  assert 1 <= test["codes_used"] <= 32 and 1 <= test["perplexity"] <= test["codes_used"]
  assert straight["train"]["restarts"] >= 0 and (workdir / "samples.png").exists()


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_prior_over_codes_is_causal_by_its_jacobian(dropout):
  """d logits_i / d one_hot_j = 0 for every j >= i (and not for j < i), also under
  training's dropout."""
  net = code_prior.CausalTransformer(num_codes=5, num_positions=6, width=8, depth=2, heads=2,
                                     dropout=dropout)
  codes = jax.random.randint(jax.random.PRNGKey(0), (6,), 0, 5)
  one_hot = jax.nn.one_hot(codes, 5)
  params = net.init(jax.random.PRNGKey(1), one_hot)["params"]
  apply = lambda h: net.apply({"params": params}, h, deterministic=not dropout,  # noqa: E731
                              rngs={"dropout": jax.random.PRNGKey(2)})
  jac = jax.jit(jax.jacobian(apply))(one_hot)  # [P, K, P, K]
  influence = np.abs(np.asarray(jac)).sum(axis=(1, 3))  # [i, j]
  upper = np.triu(np.ones((6, 6), bool))  # j >= i
  assert np.all(influence[upper] == 0)
  assert np.all(influence[~upper] > 0)


def test_prior_dropout_acts_in_the_train_steps_loss_only():
  """With dropout, `objective` (evaluation) is the dropout-free prior's, whatever the
  key; `training_objective` draws its masks from the key; the code_prior estimator
  uses the latter in training and the former for evaluation; without dropout the
  two coincide."""
  vq = _model()
  vq_params = vq.init(jax.random.PRNGKey(0))
  make = lambda rate: code_prior.make_vq_prior(  # noqa: E731
      vq, lambda: vq_params, width=8, depth=1, heads=2, dropout=rate)
  model, plain = make(0.5), make(0.0)
  params = model.init(jax.random.PRNGKey(1))
  x, keys = _image(), jax.random.split(jax.random.PRNGKey(2), 2)
  value = lambda f, k: float(jax.jit(lambda p: f(p, x, key=k)[0])(params))  # noqa: E731
  evaluated = value(model.objective, keys[0])
  assert evaluated == value(model.objective, keys[1]) == value(plain.objective, keys[0])
  trained = [value(model.training_objective, k) for k in keys]
  assert trained[0] != trained[1] and evaluated not in trained
  assert value(plain.training_objective, keys[0]) == evaluated
  for in_training, expected in ((True, trained[0]), (False, evaluated)):
    estimator = estimators.make_estimator("code_prior", "maximum_likelihood",
                                          training=in_training)
    assert value(functools.partial(estimator.per_example, model), keys[0]) == expected
  with pytest.raises(ValueError, match="dropout 1.0 is outside"):
    make(1.0)


def test_teacher_forced_log_prob_is_the_sum_of_the_sampled_paths_step_log_probs():
  net = code_prior.CausalTransformer(num_codes=7, num_positions=5, width=8, depth=1, heads=2)
  params = net.init(jax.random.PRNGKey(2), jnp.zeros((5, 7)))["params"]
  prior = code_prior.AutoregressiveCodes(net, params)
  z = jax.jit(lambda k: prior.sample(key=k))(jax.random.PRNGKey(3))
  logits = jax.jit(prior.logits)
  steps = 0.0
  for i in range(5):  # position i scored from the codes drawn before it only
    prefix = jnp.where(jnp.arange(5) < i, z, 0)
    steps += jax.nn.log_softmax(logits(prefix)[i])[z[i]]
  np.testing.assert_allclose(jax.jit(prior.log_prob)(z), steps, rtol=1e-5)


def test_tempered_sampling_draws_each_code_from_softmax_of_logits_over_temperature():
  net = code_prior.CausalTransformer(num_codes=4, num_positions=1, width=8, depth=1, heads=2)
  params = net.init(jax.random.PRNGKey(4), jnp.zeros((1, 4)))["params"]
  params["logits"]["bias"] = jnp.array([1.0, 0.0, -1.0, 0.5])  # distinct probabilities
  prior = code_prior.AutoregressiveCodes(net, params)
  logits = np.asarray(prior.logits(jnp.zeros((1,), jnp.int32))[0], np.float64)
  n, temperature = 40000, 0.5
  draws = jax.jit(jax.vmap(lambda k: prior.sample(key=k, temperature=temperature)))(
      jax.random.split(jax.random.PRNGKey(5), n))
  freq = np.bincount(np.asarray(draws[:, 0]), minlength=4) / n

  def z_scores(t):
    p = np.exp(logits / t - np.max(logits / t))
    p /= p.sum()
    return np.abs(freq - p) / np.sqrt(p * (1 - p) / n)
  assert np.max(z_scores(temperature)) < 5
  assert np.max(z_scores(1.0)) > 10  # the untempered prior is told apart


def test_near_zero_temperature_samples_greedily_and_zero_is_refused():
  net = code_prior.CausalTransformer(num_codes=6, num_positions=4, width=8, depth=1, heads=2)
  params = net.init(jax.random.PRNGKey(6), jnp.zeros((4, 6)))["params"]
  prior = code_prior.AutoregressiveCodes(net, params)  # top probabilities ~0.7 at T = 1
  greedy = jnp.zeros((4,), jnp.int32)
  for i in range(4):
    greedy = greedy.at[i].set(jnp.argmax(prior.logits(greedy)[i]))
  sample = jax.jit(prior.sample, static_argnames="temperature")
  keys = [jax.random.PRNGKey(seed) for seed in range(5)]
  for key in keys:
    np.testing.assert_array_equal(sample(key=key, temperature=1e-4), greedy)
  assert any(np.any(sample(key=key, temperature=1.0) != greedy) for key in keys)
  for bad in (0.0, -1.0, float("nan"), float("inf"), np.float32(0.0), jnp.array(0.0)):
    with pytest.raises(ValueError, match="temperature must be finite and > 0"):
      prior.sample(key=jax.random.PRNGKey(0), temperature=bad)


@pytest.fixture(scope="module")
def prior_run(vqvae_run, tmp_path_factory, data_dir):
  """(workdir, summary) of a smoke learned-prior run on vqvae_run's codes."""
  workdir = tmp_path_factory.mktemp("vqvae_prior") / "prior"
  config = _smoke_config("vqvae_prior_smoke", data_dir, vqvae_workdir=str(vqvae_run[0]))
  return workdir, experiment.run(config, str(workdir), quiet=True)


def test_learned_prior_fits_the_frozen_vqvae_codes(vqvae_run, prior_run):
  """Stage 2 through train.py's run: the VQ-VAE's params stay those of its run (the
  reconstruction term is unchanged), the prior beats the uniform one on the test
  codes, and the bound is recon + prior NLL."""
  workdir, stage1 = vqvae_run
  prior_dir, summary = prior_run
  test = summary["test"]
  np.testing.assert_allclose(test["recon"], stage1["test"]["recon"], rtol=1e-6)
  assert test["codes_used"] == stage1["test"]["codes_used"]
  assert test["prior_nll"] < 49 * math.log(32)
  np.testing.assert_allclose(test["neg_elbo"], test["recon"] + test["prior_nll"], rtol=1e-6)
  from vaejax import runs
  restored = runs.load_run(str(prior_dir))
  frozen = runs.load_run(str(workdir)).params
  assert checkpoint.params_checksum(restored.params["vqvae"]) == checkpoint.params_checksum(frozen)
  assert restored.sample(key=jax.random.PRNGKey(0), num_samples=3).shape == (3, 28, 28, 1)
  # experiments/vqvae_report.py's table reads both runs.
  sys.path.insert(0, str(REPO / "experiments"))
  try:
    import vqvae_report
  finally:
    sys.path.pop(0)
  row, = vqvae_report.report_rows({"ema": str(workdir)}, {"ema": str(prior_dir)})
  assert row["codes_used"] == test["codes_used"] and row["learned_bound"] == test["neg_elbo"]
  np.testing.assert_allclose(row["learned_bound_bits_per_dim"] * 784 * math.log(2),
                             test["neg_elbo"], rtol=1e-6)
  assert "| ema | ema | " in vqvae_report.markdown([row])


def test_samples_script_classifies_prior_samples_reconstructions_and_real_digits(
    prior_run, tmp_path, data_dir):
  """experiments/vqvae_samples.py end to end with a small saved classifier: one row
  per temperature, class counts over every sample, real test digits of every class
  (the split is sorted by class), and the reconstructions' share that of the run's own
  reconstructions of those digits, at a threshold that splits them in half; bad
  arguments are refused in one line."""
  import json
  import subprocess
  from vaejax import classifier, data, runs
  mnist = data.load("mnist", "train", data_dir).take(512)
  params, _ = classifier.load_or_train(
      str(tmp_path / "classifier"), data.IMAGE_SHAPE, lambda: (mnist.images, mnist.labels, {}),
      key=jax.random.PRNGKey(0), epochs=1, log=lambda *a: None)
  run = runs.load_run(str(prior_run[0]))
  real = run.examples("test", num=20, data_dir=data_dir)
  confidence = np.sort(np.asarray(classifier.probabilities(params, run.reconstruct(real))).max(-1))
  assert confidence[9] < confidence[10]
  threshold = (confidence[9] + confidence[10]) / 2  # half of the 20 pass
  command = [sys.executable, str(REPO / "experiments" / "vqvae_samples.py"),
             "--workdir", str(prior_run[0]), "--classifier_dir", str(tmp_path / "classifier"),
             "--data_dir", data_dir, "--num_samples", "20", "--threshold", repr(float(threshold)),
             "--out", str(tmp_path / "out")]
  proc = subprocess.run(command + ["--temperatures", "1,0.5"], capture_output=True, text=True,
                        timeout=300, cwd=REPO)
  assert proc.returncode == 0, proc.stderr[-2000:]
  with open(tmp_path / "out" / "sample_classes.json") as f:
    result = json.load(f)
  assert [r["temperature"] for r in result["by_temperature"]] == [1.0, 0.5]
  assert all(sum(r["class_counts"]) == 20 for r in result["by_temperature"])
  assert result["confident_share"] == result["by_temperature"][0]["confident_share"]
  counts = result["real_test_class_counts"]  # the first 20 would all be zeros
  assert sum(counts) == 20 and min(counts) >= 1
  assert result["reconstruction_confident_share"] == 0.5
  for name in ("classified_samples.png", "classified_samples_T0.5.png", "sample_classes.md"):
    assert (tmp_path / "out" / name).is_file()
  for bad, message in ((["--temperatures", "0"], "finite numbers > 0"),
                       (["--num_samples", "0"], "--num_samples must be >= 1")):
    proc = subprocess.run(command + bad, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0
    assert message in proc.stderr


def test_prior_needs_a_vqvae_run(vqvae_run, tmp_path, data_dir):
  config = _smoke_config("vqvae_prior_smoke", data_dir)
  with pytest.raises(config_lib.ConfigError, match="needs config.vqvae_workdir"):
    experiment.run(config, str(tmp_path / "a"), quiet=True)
  config.vqvae_workdir = str(tmp_path / "missing")
  with pytest.raises(config_lib.ConfigError, match="vqvae_workdir: .*does not exist"):
    experiment.run(config, str(tmp_path / "b"), quiet=True)
  config.vqvae_workdir, config.dataset = str(vqvae_run[0]), "mnist"
  config.dynamic_binarization = True
  with pytest.raises(config_lib.ConfigError, match="dataset='mnist' differs"):
    experiment.run(config, str(tmp_path / "c"), quiet=True)


def test_evaluate_script_refuses_a_vqvae_run_in_one_line(vqvae_run):
  import subprocess
  proc = subprocess.run([sys.executable, str(REPO / "experiments" / "evaluate.py"),
                         "--workdir", str(vqvae_run[0]), "--k", "10"],
                        capture_output=True, text=True, timeout=300, cwd=REPO)
  assert proc.returncode == 2
  assert proc.stderr.strip().count("\n") == 0 and "point mass" in proc.stderr


def _experiments_module(name):
  sys.path.insert(0, str(REPO / "experiments"))
  try:
    return __import__(name)
  finally:
    sys.path.pop(0)


def test_code_noise_counts_the_codes_that_follow_the_binarisation_noise():
  """Ink in the top 16 rows only: a patch-sum code changes with the draw where there
  is ink (two Binomial(16, 1/2) sums agree with probability C(32, 16) / 4^16 ~ 0.140)
  and never on blank patches; a code blind to the draw never changes. The relative
  distance is the per-position pairwise double sum's."""
  code_noise = _experiments_module("vqvae_code_noise")
  grey = np.zeros((400, 28, 28, 1), np.float32)
  grey[:, :16] = 0.5  # patch rows 0-3 of 7 have ink

  def patch_sums(x):
    return np.asarray(x).reshape(-1, 7, 4, 7, 4).sum(axis=(2, 4)).reshape(-1, 49).astype(int)
  embedding = np.random.default_rng(0).normal(size=(17, 3))
  result = code_noise.noise_changed_codes(patch_sums, grey, key=jax.random.PRNGKey(0),
                                          grid_shape=(7, 7), embedding=embedding)
  agree = math.comb(32, 16) / 4 ** 16
  assert result["ink_share"] == 4 / 7 and result["changed_blank"] == 0.0
  assert abs(result["changed_ink"] - (1 - agree)) < 0.015  # 11,200 ink positions: sd 0.0033
  np.testing.assert_allclose(result["changed"], result["changed_ink"] * 4 / 7)
  key_a, key_b = jax.random.split(jax.random.PRNGKey(0))
  a, b = (patch_sums(jax.random.bernoulli(k, grey)) for k in (key_a, key_b))
  baseline = np.zeros(49)
  for p in range(49):
    freq = np.bincount(np.concatenate([a[:, p], b[:, p]]), minlength=17) / 800
    baseline[p] = sum(freq[i] * freq[j] * np.sum((embedding[i] - embedding[j]) ** 2)
                      for i in range(17) for j in range(17))
  changed = a != b
  moved = np.sum((embedding[a] - embedding[b]) ** 2, axis=-1)[changed].mean()
  expected = moved / np.broadcast_to(baseline, a.shape)[changed].mean()
  np.testing.assert_allclose(result["relative_distance"], expected, rtol=1e-10)
  blind = code_noise.noise_changed_codes(lambda x: np.zeros((len(x), 49), int), grey,
                                         key=jax.random.PRNGKey(0), grid_shape=(7, 7),
                                         embedding=embedding)
  assert blind["changed"] == 0.0 and blind["relative_distance"] is None
  blank = code_noise.noise_changed_codes(patch_sums, np.zeros_like(grey),
                                         key=jax.random.PRNGKey(0), grid_shape=(7, 7))
  assert blank["changed_ink"] is None and blank["changed_blank"] == 0.0
  assert "relative_distance" not in blank


def test_code_noise_script_reads_a_vqvae_run_and_refuses_other_models(vqvae_run, prior_run,
                                                                      tmp_path, data_dir):
  import json
  import subprocess
  command = [sys.executable, str(REPO / "experiments" / "vqvae_code_noise.py"),
             "--data_dir", data_dir, "--num", "20", "--out", str(tmp_path)]
  proc = subprocess.run(command + ["--workdir", str(vqvae_run[0])], capture_output=True,
                        text=True, timeout=300, cwd=REPO)
  assert proc.returncode == 0, proc.stderr[-2000:]
  with open(tmp_path / "code_noise.json") as f:
    result = json.load(f)
  assert result["num_images"] == 20 and result["positions"] == 49
  assert 0 <= result["changed"] <= 1 and result["codebook_update"] == "ema"
  proc = subprocess.run(command + ["--workdir", str(prior_run[0])], capture_output=True,
                        text=True, timeout=300, cwd=REPO)
  assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0
  assert "not a VQ-VAE" in proc.stderr

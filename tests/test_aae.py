"""Adversarial and Wasserstein autoencoders: the phases' gradients, the batch term,
the sample distances, the priors, and a smoke run that resumes exactly."""
import json
import math
import shutil
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from scipy import stats

from conftest import REPO
from vaejax import (builders, config as config_lib, discrepancies, estimators, evaluate,
                    experiment, latent_priors, models, objectives, phases, training)
from vaejax.models import aae


def _model(regularizer="adversarial", supervised=True, **kwargs):
  return aae.make_prior_matching_ae(
      regularizer=regularizer, architecture="mlp", image_shape=(4, 4, 1), latent_dim=2,
      hidden=(8,), likelihood="bernoulli", latent_prior="mixture2d", discriminator_hidden=(8,),
      supervised=supervised and regularizer == "adversarial", **kwargs)


def _batch(n=6, seed=0):
  k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
  images = jax.random.bernoulli(k1, 0.4, (n, 4, 4, 1)).astype(jnp.float32)
  return {"image": images, "label": jax.random.randint(k2, (n,), 0, 10)}


def _phase_losses(model, mode="none"):
  estimator = estimators.make_estimator("aae", "adversarial")
  return builders.build_loss(ml_collections.ConfigDict({"parallel": mode}), model, estimator)


def _norms(grads):
  return {g: float(sum(jnp.sum(jnp.square(x)) for x in jax.tree_util.tree_leaves(v)))
          for g, v in grads.items()}


def test_each_phase_objective_has_gradient_only_on_its_networks():
  """Gradients of each phase's batch loss with respect to ALL params, by value:
  reconstruction -> encoder and decoder; discriminator -> discriminator;
  generator -> encoder (the stop-gradients, not just the phase's groups)."""
  model = _model()
  params, x = model.init(jax.random.PRNGKey(0)), _batch()
  owners = {"reconstruction": {"encoder", "decoder"}, "discriminator": {"discriminator"},
            "generator": {"encoder"}}
  for name, loss in _phase_losses(model).items():
    grads = jax.grad(lambda p: loss(p, x, key=jax.random.PRNGKey(1))[0])(params)
    norms = _norms(grads)
    for group in ("encoder", "decoder", "discriminator"):
      if group in owners[name]:
        assert norms[group] > 0, (name, group)
      else:
        assert norms[group] == 0, (name, group, norms)


@pytest.mark.parametrize("active", ["reconstruction", "discriminator", "generator"])
def test_a_phased_step_moves_exactly_the_groups_of_its_phases(active):
  """One train step with every phase but `active` at learning rate 0: the params
  that change are exactly the active phase's groups."""
  model = _model()
  params = model.init(jax.random.PRNGKey(0))
  optimizer = phases.PhasedOptimizer(tuple(
      (p.name, p.groups, optax.adam(1e-2 if p.name == active else 0.0)) for p in model.phases))
  step = training.make_train_step(_phase_losses(model), optimizer,
                                  training.make_preprocess(1, False))
  state = training.create_train_state(params, optimizer, key=jax.random.PRNGKey(2))
  new, metrics = jax.jit(step)(state, _batch())
  groups = dict((p.name, set(p.groups)) for p in model.phases)[active]
  for group in ("encoder", "decoder", "discriminator"):
    leaves = zip(jax.tree_util.tree_leaves(params[group]),
                 jax.tree_util.tree_leaves(new.params[group]))
    moved = [not np.array_equal(a, b) for a, b in leaves]
    # (a deterministic encoder's log-variance head is unused: it has no gradient)
    assert any(moved) if group in groups else not any(moved), (group, moved)
  assert int(new.step) == 1 and float(metrics["skipped"]) == 0
  assert set(new.opt_state) == {"reconstruction", "discriminator", "generator"}


def test_the_generator_phase_sees_the_discriminator_after_its_update():
  """Phases run in sequence: the encoder's generator update differs when the
  discriminator phase before it moved the discriminator."""
  model = _model()
  params, x = model.init(jax.random.PRNGKey(0)), _batch()
  encoders = []
  for disc_rate in (0.0, 0.1):
    rates = {"reconstruction": 0.0, "discriminator": disc_rate, "generator": 1e-2}
    optimizer = phases.PhasedOptimizer(tuple(
        (p.name, p.groups, optax.adam(rates[p.name])) for p in model.phases))
    out, *_ = phases.phased_update(_phase_losses(model), optimizer, params,
                                   optimizer.init(params), x, key=jax.random.PRNGKey(3),
                                   example_offset=0, step=jnp.int32(0))
    encoders.append(out["encoder"])
  differ = [not np.allclose(a, b) for a, b in zip(*map(jax.tree_util.tree_leaves, encoders))]
  assert any(differ)


def test_wae_batch_loss_is_mean_reconstruction_plus_weighted_mmd():
  model = _model("mmd", mmd_weight=7.0)
  params, x = model.init(jax.random.PRNGKey(0)), _batch(8)
  key = jax.random.PRNGKey(4)
  loss_fn = objectives.make_batch_loss(model, estimators.make_estimator("wae", "mmd").per_example)
  loss, metrics = loss_fn(params, x, key=key)
  keys = objectives.example_keys(key, 8)
  _, per = jax.vmap(lambda e, k: model.objective(params, e, key=k))(x, keys)
  mmd = discrepancies.mmd(per["batch"]["code"], per["batch"]["prior_draw"])
  np.testing.assert_allclose(metrics["mmd"], mmd, rtol=1e-6)
  np.testing.assert_allclose(loss, jnp.mean(per["recon"]) + 7.0 * mmd, rtol=1e-6)
  np.testing.assert_allclose(metrics["loss"], loss, rtol=1e-6)
  # The MMD term reaches the encoder: its gradient changes with the weight.
  grad = lambda m: jax.grad(lambda p: objectives.make_batch_loss(  # noqa: E731
      m, estimators.make_estimator("wae", "mmd").per_example)(p, x, key=key)[0])(params)
  assert not np.allclose(grad(model)["encoder"]["hidden_0"]["kernel"],
                         grad(_model("mmd", mmd_weight=0.0))["encoder"]["hidden_0"]["kernel"])


def test_mmd_matches_a_hand_computed_example_and_blocks_agree():
  x, y = jnp.array([[0.0], [1.0]]), jnp.array([[0.0], [2.0]])
  # One scale, D = 1: k(a, b) = 2 / (2 + (a - b)^2); xx = 2/3, yy = 1/3, xy = (1 + 1/3 + 2/3 + 2/3) / 4.
  expected = 2 / 3 + 1 / 3 - 2 * (1 + 1 / 3 + 2 / 3 + 2 / 3) / 4
  np.testing.assert_allclose(discrepancies.mmd(x, y, scales=(1.0,)), expected, rtol=1e-6)
  a, b = jax.random.normal(jax.random.PRNGKey(0), (2, 400, 3))
  # MMD^2 is a difference of kernel means of size ~7 (seven scales), summed over 160,000
  # float32 terms in another order: absolute agreement to ~1e-6.
  np.testing.assert_allclose(discrepancies.mmd(a, b, block_size=100), discrepancies.mmd(a, b),
                             atol=1e-5)
  with pytest.raises(ValueError, match="at least two samples"):
    discrepancies.mmd(x[:1], y)


def test_mmd_of_one_distribution_is_zero_on_average_and_grows_with_a_shift():
  keys = jax.random.split(jax.random.PRNGKey(1), 30)
  draw = lambda k, shift: jax.random.normal(k, (2, 200, 2)) + jnp.array([0.0, shift])[:, None, None]  # noqa: E731
  same = np.array([float(discrepancies.mmd(*draw(k, 0.0))) for k in keys])
  standard_error = same.std(ddof=1) / math.sqrt(len(same))
  assert abs(same.mean()) < 3 * standard_error
  shifted = [float(discrepancies.mmd(*draw(keys[0], s))) for s in (0.5, 1.0, 2.0)]
  assert shifted[0] > same.mean() + 10 * standard_error
  assert shifted[0] < shifted[1] < shifted[2]


def test_sliced_wasserstein_matches_the_closed_form_between_1d_gaussians():
  """W2(N(m1, s1^2), N(m2, s2^2)) = sqrt((m1 - m2)^2 + (s1 - s2)^2); in 1-D every
  direction is +-1, so the sliced distance is W2 itself (quantile samples)."""
  u = (np.arange(20000) + 0.5) / 20000
  x = (1.0 + 2.0 * stats.norm.ppf(u))[:, None]
  y = (-0.5 + 0.5 * stats.norm.ppf(u))[::-1, None].copy()  # order does not matter
  expected = math.sqrt(1.5 ** 2 + 1.5 ** 2)
  got = discrepancies.sliced_wasserstein(jnp.asarray(x), jnp.asarray(y), key=jax.random.PRNGKey(0))
  np.testing.assert_allclose(got, expected, rtol=2e-3)
  with pytest.raises(ValueError, match="equal shape"):
    discrepancies.sliced_wasserstein(jnp.zeros((3, 2)), jnp.zeros((4, 2)), key=jax.random.PRNGKey(0))


def test_mixture_prior_is_normalised_and_labelled_draws_stay_in_their_component():
  prior = latent_priors.Mixture2D()
  grid = jnp.linspace(-7, 7, 281)
  z = jnp.stack(jnp.meshgrid(grid, grid), -1).reshape(-1, 2)
  cell = float(grid[1] - grid[0]) ** 2
  mass = float(jnp.sum(jnp.exp(jax.vmap(prior.log_prob)(z))) * cell)
  np.testing.assert_allclose(mass, 1.0, atol=1e-3)
  for label in (0, 7):
    mass = float(jnp.sum(jnp.exp(jax.vmap(lambda v: prior.log_prob(v, label))(z))) * cell)
    np.testing.assert_allclose(mass, 1.0, atol=1e-3)
    draws = jax.vmap(lambda k: prior.sample(key=k, label=label))(
        jax.random.split(jax.random.PRNGKey(label), 2000))
    assert float(jnp.mean(prior.component(draws) == label)) > 0.97
    np.testing.assert_allclose(jnp.mean(draws, 0), prior.means[label], atol=0.05)


def test_swiss_roll_has_no_density_and_its_labels_walk_outwards():
  roll = latent_priors.SwissRoll2D()
  with pytest.raises(latent_priors.NoDensityError):
    roll.log_prob(jnp.zeros(2))
  radius = [float(jnp.mean(jnp.linalg.norm(jax.vmap(lambda k: roll.sample(key=k, label=c))(
      jax.random.split(jax.random.PRNGKey(c), 500)), axis=-1))) for c in range(10)]
  assert all(1.0 + 0.3 * c < r < 1.0 + 0.3 * (c + 1) + 0.05 for c, r in enumerate(radius))
  with pytest.raises(ValueError, match="2-D"):
    latent_priors.make_latent_prior("swissroll2d", 3)


def test_vae_with_the_mixture_prior_uses_its_density_and_the_monte_carlo_kl():
  config = config_lib.base_config()
  config.update(latent_dim=2, latent_prior="mixture2d", analytic_kl=False)
  config_lib.validate(config)
  vae = models.make(config, (28, 28, 1))
  assert not objectives.has_closed_form_kl(vae) and not models.closed_form_kl(config)
  z = jnp.array([1.0, -2.0])
  params = vae.init(jax.random.PRNGKey(0))
  np.testing.assert_allclose(vae.log_prior(params, None, z),
                             latent_priors.Mixture2D().log_prob(z), rtol=1e-6)
  config.analytic_kl = True
  with pytest.raises(config_lib.ConfigError, match="analytic_kl=False"):
    config_lib.validate(config)


def test_smoke_run_reports_the_prior_match_and_resumes_exactly(tmp_path, data_dir):
  """Every network (encoder, decoder, discriminator) and all three Adam states
  come back from a checkpoint: a copy whose newest checkpoint is removed resumes
  and ends on the uninterrupted run's params."""
  config = config_lib.load_config_file(
      str(REPO / "experiments" / "configs" / "aae_mixture2d_smoke.py"))
  config.update(data_dir=data_dir, train_subset=512, checkpoint_every=4, log_every=4,
                eval_subset=200, num_image_samples=4, tensorboard=False)
  straight = experiment.run(config, str(tmp_path / "a"), quiet=True)
  shutil.copytree(tmp_path / "a", tmp_path / "b")
  shutil.rmtree(tmp_path / "b" / "checkpoints" / "8")
  resumed = experiment.run(config, str(tmp_path / "b"), quiet=True)
  assert straight["steps"] == resumed["steps"] == 8
  assert resumed["params_checksum"] == straight["params_checksum"]
  test = straight["test"]
  assert {"recon", "discriminator_accuracy", "mmd", "sliced_wasserstein",
          "component_accuracy"} <= set(test)
  assert 0 <= test["component_accuracy"] <= 1 and test["sliced_wasserstein"] > 0
  assert (tmp_path / "a" / "samples.png").exists()


def test_parzen_window_with_one_sample_is_the_gaussian_density():
  rng = np.random.default_rng(0)
  sample, data = rng.normal(size=(1, 5)), rng.normal(size=(4, 5))
  sigmas = (0.3, 1.0)
  got = evaluate.parzen_log_likelihood(sample, data, sigmas, batch_size=2)
  for i, sigma in enumerate(sigmas):
    expected = stats.multivariate_normal(sample[0], sigma ** 2 * np.eye(5)).logpdf(data)
    np.testing.assert_allclose(got[i], expected, rtol=1e-5)
  # Two samples: the log of the mean of their kernels.
  two = np.concatenate([sample, sample + 1.0])
  got = evaluate.parzen_log_likelihood(two, data, (1.0,))[0]
  each = [stats.multivariate_normal(s, np.eye(5)).logpdf(data) for s in two]
  np.testing.assert_allclose(got, np.logaddexp(*each) - math.log(2), rtol=1e-5)


def test_report_script_tables_the_prior_match_and_parzen_score(tmp_path, data_dir):
  """experiments/aae_report.py on a smoke supervised AAE (2-D mixture prior, validation
  split): the table, the figure and a Parzen bandwidth chosen on validation."""
  config = config_lib.load_config_file(
      str(REPO / "experiments" / "configs" / "aae_mixture2d_smoke.py"))
  config.update(data_dir=data_dir, train_subset=256, eval_subset=200, num_image_samples=4,
                tensorboard=False, validation_split=True)
  experiment.run(config, str(tmp_path / "run"), quiet=True)
  proc = subprocess.run(
      [sys.executable, str(REPO / "experiments" / "aae_report.py"), f"--runs=aae={tmp_path / 'run'}",
       "--parzen=aae", "--parzen_samples=50", "--parzen_subset=100", "--figure=mixture2d=aae",
       f"--out={tmp_path / 'out'}", f"--data_dir={data_dir}"],
      capture_output=True, text=True, timeout=600, cwd=REPO)
  assert proc.returncode == 0, proc.stderr[-3000:]
  (row,) = json.loads((tmp_path / "out" / "aae_report.json").read_text())["rows"]
  assert row["model"] == "aae" and row["latent_prior"] == "mixture2d" and row["supervised"]
  best = max(row["parzen_validation"], key=row["parzen_validation"].get)
  assert float(best) == row["parzen_sigma"] and math.isfinite(row["parzen_test"])
  assert 0 <= row["component_accuracy"] <= 1 and "mmd" in row
  assert (tmp_path / "out" / "codes_over_priors.png").exists()
  assert "| aae | aae | mixture2d | True |" in proc.stdout
  bad = subprocess.run([sys.executable, str(REPO / "experiments" / "aae_report.py"),
                        f"--runs=x={tmp_path / 'nothing'}", f"--out={tmp_path / 'o2'}"],
                       capture_output=True, text=True, timeout=300, cwd=REPO)
  assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0


def _phased_setup():
  model = _model()
  optimizer = phases.PhasedOptimizer(tuple((p.name, p.groups, optax.adam(1e-2))
                                           for p in model.phases))
  step = training.make_train_step(_phase_losses(model), optimizer,
                                  training.make_preprocess(1, False))
  state = training.create_train_state(model.init(jax.random.PRNGKey(0)), optimizer,
                                      key=jax.random.PRNGKey(1))
  return model, step, state


def test_a_non_finite_phase_discards_the_whole_step():
  """A NaN in the discriminator makes its phase and the generator's non-finite while
  the reconstruction phase is finite: the guard keeps none of the three updates."""
  _, step, state = _phased_setup()
  params = state.params
  kernel = params["discriminator"]["hidden_0"]["kernel"]
  poisoned = {**params, "discriminator": {**params["discriminator"], "hidden_0": {
      **params["discriminator"]["hidden_0"], "kernel": kernel.at[0, 0].set(jnp.nan)}}}
  state = state.replace(params=poisoned)
  x = {"image": (jax.random.uniform(jax.random.PRNGKey(5), (6, 4, 4, 1)) < 0.4).astype(jnp.uint8),
       "label": jnp.arange(6) % 10}
  new, metrics = jax.jit(step)(state, x)
  assert np.isfinite(float(metrics["loss"])) and not np.isfinite(float(metrics["generator_loss"]))
  assert int(new.step) == 1 and int(new.skipped_total) == 1 and float(metrics["skipped"]) == 1
  same = jax.tree_util.tree_map(lambda a, b: bool(np.array_equal(a, b, equal_nan=True)),
                                (new.params, new.opt_state), (state.params, state.opt_state))
  assert all(jax.tree_util.tree_leaves(same))


def test_phased_chunk_runner_compiles_once():
  _, step, state = _phased_setup()
  chunk = jax.jit(chex.assert_max_traces(training.make_train_chunk(step, 8), n=1),
                  donate_argnums=0)
  data = {"image": (jax.random.uniform(jax.random.PRNGKey(2), (32, 4, 4, 1)) < 0.3
                    ).astype(jnp.uint8), "label": jnp.arange(32) % 10}
  perm = jnp.arange(32)
  for first, num in [(0, 1), (1, 2), (0, 4)]:
    state, sums = chunk(state, data, perm, np.int32(first), np.int32(num))
  assert int(state.step) == 7
  assert set(sums) >= {"loss", "recon", "discriminator_loss", "generator_loss",
                       "discriminator_accuracy", "skipped"}

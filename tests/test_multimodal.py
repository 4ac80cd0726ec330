"""Multimodal VAEs: the experts' product and mixtures, the three objectives by value and
gradient, missing modalities, and a smoke run per model."""
import json
import math
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from conftest import REPO
from vaejax import config as config_lib, experiment, experts, models, paired_digits, run_data
from vaejax.models import multimodal, multimodal_objectives
from vaejax.models.multimodal import Modality

MODALITIES = (Modality("image", (2, 2, 1), "bernoulli"), Modality("label", (3,), "categorical"))


def _model(model="mmvae", estimator="pathwise", num_samples=3, modalities=MODALITIES, hidden=(8,),
           latent_dim=2):
  return multimodal.make_multimodal_vae(model=model, modalities=modalities, latent_dim=latent_dim,
                                        hidden=hidden, estimator=estimator, num_samples=num_samples)


def _example(label=1):
  return {"image": jnp.asarray([[[1.0], [0.0]], [[0.0], [1.0]]]), "label": jnp.asarray(label)}


def _precision_product(means, variances):
  precision = np.sum(1.0 / variances, axis=0)
  return np.sum(means / variances, axis=0) / precision, 1.0 / precision


def test_product_of_experts_is_the_closed_form_product():
  rng = np.random.default_rng(0)
  means, variances = rng.normal(size=(3, 5)), rng.uniform(0.1, 3.0, size=(3, 5))
  q = experts.product_of_experts(jnp.asarray(means), jnp.asarray(np.log(variances)),
                                 jnp.ones(3))
  mean, var = _precision_product(means, variances)
  np.testing.assert_allclose(q.mean, mean, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.exp(q.log_var), var, rtol=1e-5)
  # The product's density is proportional to the product of the experts' densities.
  z = rng.normal(size=(4, 5))
  ratio = [float(q.log_prob(zi)) - sum(stats.norm.logpdf(zi, means[e], np.sqrt(variances[e])).sum()
                                       for e in range(3)) for zi in z]
  np.testing.assert_allclose(ratio, ratio[0], atol=1e-4)


@pytest.mark.parametrize("variance", [1e-8, 1e8])
def test_product_of_experts_is_stable_for_extreme_variances(variance):
  means = jnp.asarray([[0.3, -2.0], [1.5, 4.0]])
  log_vars = jnp.log(jnp.asarray([[variance, variance], [1.0, 2.0]]))
  q = experts.product_of_experts(means, log_vars, jnp.ones(2))
  mean, var = _precision_product(np.asarray(means, np.float64), np.exp(np.asarray(log_vars, np.float64)))
  np.testing.assert_allclose(q.mean, mean, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(q.log_var, np.log(var), rtol=1e-5, atol=1e-6)
  grads = jax.grad(lambda m, v: jnp.sum(experts.product_of_experts(m, v, jnp.ones(2)).log_prob(
      jnp.ones(2))), argnums=(0, 1))(means, log_vars)
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in grads)


def test_an_absent_expert_drops_out_exactly_even_when_non_finite():
  means = jnp.asarray([[0.3, -2.0], [jnp.nan, jnp.inf], [1.5, 4.0]])
  log_vars = jnp.asarray([[0.1, -1.0], [jnp.nan, -jnp.inf], [0.5, 2.0]])
  q = experts.product_of_experts(means, log_vars, jnp.asarray([1.0, 0.0, 1.0]))
  two = experts.product_of_experts(means[::2], log_vars[::2], jnp.ones(2))
  np.testing.assert_array_equal(q.mean, two.mean)
  np.testing.assert_array_equal(q.log_var, two.log_var)


def test_mixture_log_prob_and_stratified_draws():
  means = jnp.asarray([[-3.0, 0.0], [2.0, 1.0], [0.0, 0.0]])
  log_vars = jnp.log(jnp.asarray([[0.5, 0.5], [2.0, 1.0], [1.0, 1.0]]))
  q = experts.MixtureOfGaussians(means, log_vars,
                                 experts.uniform_log_weights(jnp.asarray([1.0, 1.0, 0.0])))
  z = jnp.asarray([0.4, -0.7])
  expected = np.log(0.5 * sum(np.prod(stats.norm.pdf(np.asarray(z), means[c], np.exp(0.5 * log_vars[c])))
                              for c in range(2)))
  np.testing.assert_allclose(q.log_prob(z), expected, rtol=1e-5)
  draws = q.stratified_sample(key=jax.random.PRNGKey(0), num_samples=4000)
  assert draws.shape == (3, 4000, 2)
  np.testing.assert_allclose(draws.mean(axis=1), means, atol=0.1)
  np.testing.assert_allclose(draws.var(axis=1), jnp.exp(log_vars), rtol=0.1)
  picked = jax.vmap(lambda k: q.sample(key=k))(jax.random.split(jax.random.PRNGKey(1), 4000))
  assert abs(float(jnp.mean(picked[:, 0] < -0.5)) - 0.5) < 0.03  # the absent third never drawn


def test_mopoe_components_are_the_subset_products():
  means = jnp.asarray([[1.0, 0.0], [0.0, 2.0]])
  log_vars = jnp.log(jnp.asarray([[0.5, 1.0], [1.0, 0.25]]))
  q = experts.mixture_of_products(means, log_vars, jnp.ones(2), experts.nonempty_subsets(2))
  with_prior_means = np.concatenate([np.asarray(means), np.zeros((1, 2))])
  with_prior_vars = np.concatenate([np.exp(np.asarray(log_vars)), np.ones((1, 2))])
  for s, subset in enumerate(([0], [1], [0, 1])):
    mean, var = _precision_product(with_prior_means[subset + [2]], with_prior_vars[subset + [2]])
    np.testing.assert_allclose(q.means[s], mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(jnp.exp(q.log_vars[s]), var, rtol=1e-5)
  np.testing.assert_allclose(jnp.exp(q.log_weights), [1 / 3] * 3, rtol=1e-6)
  only_first = experts.mixture_of_products(means, log_vars, jnp.asarray([1.0, 0.0]),
                                           experts.nonempty_subsets(2))
  np.testing.assert_allclose(jnp.exp(only_first.log_weights), [1.0, 0.0, 0.0])


def test_stratified_iwae_bound_equals_its_definition():
  """The MMVAE bound (1/M) sum_m log (1/K) sum_k p(X, z_mk) / q(z_mk|X), rebuilt in
  float64 from the same draws and the decoders' outputs."""
  model = _model(num_samples=3)
  params, x = model.init(jax.random.PRNGKey(0)), _example()
  key = jax.random.PRNGKey(5)
  _, metrics = multimodal_objectives.stratified_iwae(model, params, x, key=key)
  means, log_vars = (np.asarray(a, np.float64) for a in model.experts(params, x))
  z = np.asarray(experts.MixtureOfGaussians(jnp.asarray(means), jnp.asarray(log_vars), jnp.zeros(2))
                 .stratified_sample(key=key, num_samples=3), np.float64)
  bound = 0.0
  for m in range(2):
    log_w = []
    for k in range(3):
      zk = z[m, k]
      logits = np.asarray(model.decode(params, "image", jnp.asarray(zk, jnp.float32)), np.float64)
      image = np.asarray(x["image"])
      log_image = np.sum(image * logits - np.logaddexp(0, logits))
      class_logits = np.asarray(model.decode(params, "label", jnp.asarray(zk, jnp.float32)), np.float64)
      log_label = class_logits[1] - np.logaddexp.reduce(class_logits)
      log_q = np.logaddexp.reduce([np.log(0.5) + stats.norm.logpdf(zk, means[j], np.exp(0.5 * log_vars[j])).sum()
                                   for j in range(2)])
      log_w.append(log_image + log_label + stats.norm.logpdf(zk).sum() - log_q)
    bound += 0.5 * (np.logaddexp.reduce(log_w) - math.log(3))
  np.testing.assert_allclose(-float(metrics["loss"]), bound, rtol=1e-5)


def _grads(model, params, x, keys):
  def grad(key):
    return jax.grad(lambda p: model.objective(p, x, key=key)[0])(params)
  return jax.jit(jax.vmap(grad))(keys)


@pytest.mark.parametrize("modalities", [MODALITIES, MODALITIES[:1]], ids=["two", "one"])
def test_dreg_is_unbiased_for_the_stratified_iwae_gradient(modalities):
  """Over 40,000 draws the mixture DReG's mean encoder gradient equals the pathwise
  gradient of the same bound within 4 standard errors; decoder gradients agree
  draw by draw (both are sum_k w~_k grad log p(X, z_k))."""
  pathwise, dreg = _model("mmvae", "pathwise", 4, modalities), _model("mmvae", "dreg", 4, modalities)
  params, x = jax.jit(pathwise.init)(jax.random.PRNGKey(3)), _example()
  keys = jax.random.split(jax.random.PRNGKey(11), 40_000)
  g_path, g_dreg = _grads(pathwise, params, x, keys), _grads(dreg, params, x, keys)
  for a, b in zip(jax.tree_util.tree_leaves(g_path["decoder"]),
                  jax.tree_util.tree_leaves(g_dreg["decoder"])):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
  worst = 0.0
  for a, b in zip(jax.tree_util.tree_leaves(g_path["encoder"]),
                  jax.tree_util.tree_leaves(g_dreg["encoder"])):
    diff = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    stderr = diff.std(axis=0) / math.sqrt(len(diff)) + 1e-7
    worst = max(worst, float(np.max(np.abs(diff.mean(axis=0)) / stderr)))
  assert worst < 4.5, worst
  # DReG's point: a lower-variance encoder gradient than the pathwise one.
  var = lambda g: sum(float(np.sum(np.var(np.asarray(leaf), axis=0)))  # noqa: E731
                      for leaf in jax.tree_util.tree_leaves(g["encoder"]))
  assert var(g_dreg) < var(g_path)


def test_mvae_subsampled_objective_sums_joint_and_single_modality_elbos():
  model = _model("mvae", num_samples=1)
  params, x = model.init(jax.random.PRNGKey(0)), _example()
  key = jax.random.PRNGKey(2)
  surrogate, metrics = model.objective(params, x, key=key)
  # Rebuild: the ELBO of each of the three posteriors with the draw keys the objective uses.
  means, log_vars = model.experts(params, x)
  keys = jax.random.split(jax.random.split(key)[1], 3)  # the first half keys M > 2's subset
  total = 0.0
  for mask, k in zip(([1.0, 1.0], [1.0, 0.0], [0.0, 1.0]), keys):
    mask = jnp.asarray(mask)
    q = model.combine(means, log_vars, mask)
    z = q.sample(key=k)
    total += float(jnp.sum(mask * model.modality_log_likelihoods(params, x, z))
                   - q.kl_to_standard_normal())
  np.testing.assert_allclose(surrogate, total, rtol=1e-5)
  np.testing.assert_allclose(surrogate, -metrics["loss"] + metrics["elbo_image"]
                             + metrics["elbo_label"], rtol=1e-5)


def test_likelihood_weights_scale_the_surrogate_not_the_reported_bound():
  heavy = (MODALITIES[0], Modality("label", (3,), "categorical", 50.0))
  plain, weighted = _model("mvae", modalities=MODALITIES), _model("mvae", modalities=heavy)
  params, x, key = plain.init(jax.random.PRNGKey(0)), _example(), jax.random.PRNGKey(1)
  s_plain, m_plain = plain.objective(params, x, key=key)
  s_weighted, m_weighted = weighted.objective(params, x, key=key)
  assert float(m_plain["loss"]) == pytest.approx(float(m_weighted["loss"]))
  assert float(s_weighted) < float(s_plain) - 10  # 49 more copies of each negative log p(label|z)


@pytest.mark.parametrize("name", ["mvae", "mmvae", "mopoe"])
def test_an_absent_modality_changes_nothing(name):
  """With the image masked out, its pixels (here flipped) affect neither the posterior,
  the objective nor its gradient; and log p(X|z) is the label's alone."""
  model = _model(name, num_samples=2 if name == "mmvae" else 1)
  params, key = jax.jit(model.init)(jax.random.PRNGKey(0)), jax.random.PRNGKey(4)
  mask = jnp.asarray([0.0, 1.0])
  x, flipped = ({**_example(), "mask": mask},
                {**_example(), "image": 1.0 - _example()["image"], "mask": mask})
  value = jax.jit(lambda p, ex: model.objective(p, ex, key=key)[0])
  grad = jax.jit(jax.grad(value))
  assert float(value(params, x)) == float(value(params, flipped))
  for a, b in zip(jax.tree_util.tree_leaves(grad(params, x)),
                  jax.tree_util.tree_leaves(grad(params, flipped))):
    np.testing.assert_array_equal(a, b)
  z = jnp.asarray([0.2, -0.1])
  assert float(jax.jit(model.log_likelihood)(params, x, z)) == pytest.approx(
      float(jax.jit(model.modality_log_likelihoods)(params, x, z)[1]))
  log_q = jax.jit(lambda ex: model.posterior(params, ex).log_prob(z))
  assert float(log_q(x)) == float(log_q(flipped))


def test_partners_share_only_the_class():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, size=(40, 28, 28, 1), dtype=np.uint8)
  labels = np.repeat(np.arange(4), 10)
  labels[-1] = 7  # a class of one: paired with itself
  partners = paired_digits.partner_images(images, labels, seed=3)
  assert partners.shape == (40, 28, 28, 3) and partners.dtype == np.uint8
  np.testing.assert_array_equal(partners, paired_digits.partner_images(images, labels, seed=3))
  assert not np.array_equal(partners, paired_digits.partner_images(images, labels, seed=4))
  bank = paired_digits.textures()
  assert bank.shape == (paired_digits.NUM_TEXTURES, paired_digits.TEXTURE_SIZE,
                        paired_digits.TEXTURE_SIZE, 3)
  white = np.full((2, 28, 28, 1), 255, np.uint8)
  inverted = paired_digits.partner_images(white, np.zeros(2), seed=0)  # all stroke
  plain = paired_digits.partner_images(np.zeros_like(white), np.zeros(2), seed=0)  # no stroke
  np.testing.assert_array_equal(inverted.astype(int), 255 - plain.astype(int))
  with pytest.raises(ValueError, match="28, 28, 1"):
    paired_digits.partner_images(images[:, :14], labels, seed=0)


def test_integer_blend_equals_the_float32_formula_for_every_pixel_pair():
  """The partner data sets were first made with float32 arithmetic; the integer blend
  must give the same bytes, so every (background, stroke) pair is compared."""
  grey = np.arange(256, dtype=np.uint8)[:, None]
  stroke = np.arange(256, dtype=np.uint8)[None, :]
  g, s = grey.astype(np.float32), stroke.astype(np.float32) / 255.0
  expected = np.round(g * (1 - s) + (255 - g) * s).astype(np.uint8)
  np.testing.assert_array_equal(paired_digits.blend(grey, stroke), expected)
  assert paired_digits.blend(grey, stroke).dtype == np.uint8


def test_partner_is_another_image_of_the_same_class():
  """Stroke images that are one-hot per example reveal the partner index."""
  n = 30
  images = np.zeros((n, 28, 28, 1), np.uint8)
  for i in range(n):
    images[i].flat[i] = 255  # pixel i lit: the partner shows which source it drew
  labels = np.arange(n) % 3
  partners = paired_digits.partner_images(images, labels, seed=1).astype(int)
  background = paired_digits.partner_images(np.zeros_like(images), labels, seed=1).astype(int)
  changed = np.abs(partners - background).sum(-1).reshape(n, -1)
  source = changed.argmax(-1)
  assert np.all(changed.max(-1) > 0)
  assert np.all(labels[source] == labels) and np.all(source != np.arange(n))


@pytest.mark.parametrize("change, message", [
    (dict(modalities=("image", "text")), "distinct modalities"),
    (dict(modalities=("label",)), "must include 'image'"),
    (dict(modality_weights=(1.0,)), "one positive weight per modality"),
    (dict(num_samples=5), "num_samples"),
    (dict(dataset="binarized_mnist", dynamic_binarization=False), "no training labels"),
    (dict(image2_likelihood="gaussian_learned", modalities=("image", "image2")), "grey-level"),
])
def test_config_names_the_bad_multimodal_key(change, message):
  config = config_lib.load_config_file(
      str(REPO / "experiments" / "configs" / "mvae_mnist_label_smoke.py"))
  config.update(**change)
  with pytest.raises(config_lib.ConfigError, match=message):
    config_lib.validate(config)


def test_config_refuses_a_kl_warmup_for_the_iwae_bound_and_family_keys_elsewhere():
  config = config_lib.load_config_file(str(REPO / "experiments" / "configs" / "mmvae_pairs_smoke.py"))
  config.kl_warmup_steps = 10
  with pytest.raises(config_lib.ConfigError, match="kl_warmup_steps"):
    config_lib.validate(config)
  config = config_lib.base_config()
  config.modality_weights = (1.0, 2.0)
  with pytest.raises(config_lib.ConfigError, match="modality_weights applies to model="):
    config_lib.validate(config)


def test_kl_warmup_scales_the_kl_in_the_surrogate_only():
  cold = _model("mvae", num_samples=1)
  warm = multimodal.make_multimodal_vae(model="mvae", modalities=MODALITIES, latent_dim=2,
                                        hidden=(8,), kl_warmup_steps=100)
  params, x, key = cold.init(jax.random.PRNGKey(0)), _example(), jax.random.PRNGKey(1)
  s_cold, m_cold = cold.objective(params, x, key=key, step=50)
  s_half, m_half = warm.objective(params, x, key=key, step=50)
  s_zero, _ = warm.objective(params, x, key=key, step=0)
  assert float(m_cold["loss"]) == pytest.approx(float(m_half["loss"]))
  kl_total = float(s_zero - s_cold)  # sum over the three ELBOs of their KLs
  assert kl_total > 0
  assert float(s_half) == pytest.approx(float(s_cold) + 0.5 * kl_total, rel=1e-5)


@pytest.mark.parametrize("config_name", ["mvae_mnist_label_smoke", "mmvae_pairs_smoke"])
def test_smoke_run_reports_and_resumes_exactly(config_name, tmp_path, data_dir):
  config = config_lib.load_config_file(str(REPO / "experiments" / "configs" / f"{config_name}.py"))
  config.update(data_dir=data_dir, train_subset=512, checkpoint_every=4, log_every=4,
                eval_subset=100, num_image_samples=4, tensorboard=False,
                eval_importance_samples=10)
  straight = experiment.run(config, str(tmp_path / "a"), quiet=True)
  shutil.copytree(tmp_path / "a", tmp_path / "b")
  shutil.rmtree(tmp_path / "b" / "checkpoints" / str(straight["steps"]))
  resumed = experiment.run(config, str(tmp_path / "b"), quiet=True)
  assert resumed["params_checksum"] == straight["params_checksum"]
  test = straight["test"]
  assert math.isfinite(test["nll"]) and test["nll"] <= test["neg_elbo"] + 1.0
  if config_name.startswith("mvae"):
    assert 0 <= test["image_to_label_accuracy"] <= 1
  else:
    assert test["neg_iwae"] <= test["neg_elbo"] + 1e-3  # the K-draw bound is the tighter
  assert (tmp_path / "a" / "samples.png").exists()


def test_compare_script_tables_coherences(tmp_path, data_dir):
  runs = []
  for name in ("mvae", "mopoe"):
    config = config_lib.load_config_file(str(REPO / "experiments" / "configs" / f"{name}_pairs_smoke.py"))
    config.update(data_dir=data_dir, train_subset=256, eval_subset=100, num_image_samples=4,
                  tensorboard=False)
    experiment.run(config, str(tmp_path / name), quiet=True)
    runs.append(str(tmp_path / name))
  proc = subprocess.run(
      [sys.executable, str(REPO / "experiments" / "compare_multimodal.py"),
       f"--workdirs={','.join(runs)}", f"--classifier_dir={tmp_path / 'cls'}",
       f"--data_dir={data_dir}", f"--out={tmp_path / 'out'}", "--joint_samples=200",
       "--importance_samples=10", "--probe_train=300", "--test_subset=100",
       "--train_subset=1000", "--classifier_epochs=1"],
      capture_output=True, text=True, timeout=900, cwd=REPO)
  assert proc.returncode == 0, proc.stderr[-3000:]
  rows = json.loads((tmp_path / "out" / "multimodal.json").read_text())
  assert [r["model"] for r in rows] == ["mvae", "mopoe"]
  for r in rows:
    for key in ("cross_image_to_image2", "cross_image2_to_image", "joint", "probe_image",
                "probe_image2", "probe_all"):
      assert 0 <= r[key] <= 1, key
    assert r["nll_all"] > 0 and math.isfinite(r["nll_image2"])
  assert (tmp_path / "out" / "mvae_generation.png").exists()
  assert json.loads((tmp_path / "cls" / "image" / "classifier.json").read_text())["epochs"] == 1
  assert "| mopoe (mopoe, step " in (tmp_path / "out" / "multimodal.md").read_text()


def test_svhn_partners_pair_each_digit_with_an_svhn_image_of_its_class(monkeypatch, data_dir):
  """partner='svhn_cropped' through a stand-in for TFDS's loader (no network here):
  every MNIST digit gets a 32 x 32 x 3 SVHN image of its own class."""
  def fake_svhn(split, data_dir=None):
    labels = np.arange(500) % 10
    return np.broadcast_to(labels[:, None, None, None] * 20, (500, 32, 32, 3)).astype(np.uint8), labels
  monkeypatch.setattr(paired_digits, "load_svhn", fake_svhn)
  config = config_lib.load_config_file(str(REPO / "experiments" / "configs" / "mmvae_pairs_smoke.py"))
  config.update(data_dir=data_dir, partner="svhn_cropped", train_subset=300, eval_subset=100)
  config_lib.validate(config)
  train, evals = run_data.load_data(config)
  for ds in (train, evals["test"]):
    assert ds.extra["image2"].shape == (len(ds), 32, 32, 3)
    np.testing.assert_array_equal(ds.extra["image2"][:, 0, 0, 0], ds.labels * 20)
  model = models.make(config, train.images.shape[1:])
  assert model.modalities[1].shape == (32, 32, 3)


@pytest.mark.parametrize("name", ["mvae", "mmvae", "mopoe"])
def test_three_modalities_train_with_finite_gradients(name):
  """M = 3 adds MVAE's random subset and MoPoE's seven subsets; one modality absent."""
  modalities = MODALITIES + (Modality("image2", (2, 2, 3), "continuous_bernoulli"),)
  model = _model(name, modalities=modalities, num_samples=2 if name == "mmvae" else 1)
  params = jax.jit(model.init)(jax.random.PRNGKey(0))
  x = {**_example(), "image2": jnp.full((2, 2, 3), 0.3), "mask": jnp.asarray([1.0, 0.0, 1.0])}
  value = jax.jit(lambda p, key: model.objective(p, x, key=key)[0])
  values = [float(value(params, jax.random.PRNGKey(k))) for k in range(4)]
  assert all(math.isfinite(v) for v in values) and len(set(values)) > 1
  grads = jax.jit(jax.grad(value))(params, jax.random.PRNGKey(0))
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree_util.tree_leaves(grads))
  assert float(jnp.sum(jnp.abs(grads["decoder"]["label"]["out"]["kernel"]))) == 0.0  # absent

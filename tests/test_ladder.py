"""The ladder VAE (vaejax.models.ladder): the precision-weighted merge, the
top-down posterior, and estimators whose gradients reach the prior networks that
q and p share."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vaejax import distributions, estimators
from vaejax.models import ladder

D = 3
MODEL = ladder.make_ladder_vae(image_shape=(1, D, 1), latent_dims=(2, 1), hidden=((4,), (3,)),
                               likelihood="gaussian_fixed", gaussian_scale=0.7)
X = jnp.array([0.9, -0.5, 1.2]).reshape(1, D, 1)


def _params(seed=0):
  return MODEL.init(jax.random.PRNGKey(seed))


def _draw(params, key):
  """One reparameterised z ~ q(z|X) [latent_dim], as the pathwise ELBO draws it."""
  from vaejax import objectives
  return objectives.draw(MODEL.posterior(params, X), key=key, num_samples=1)[0]


def test_precision_weighted_merge_is_the_normalised_product():
  rng = np.random.default_rng(0)
  a = distributions.DiagGaussian(jnp.asarray(rng.normal(size=4), jnp.float32),
                                 jnp.asarray([-2.0, 0.0, 1.5, 3.0], jnp.float32))
  b = distributions.DiagGaussian(jnp.asarray(rng.normal(size=4), jnp.float32),
                                 jnp.asarray([1.0, 0.0, -1.0, 2.5], jnp.float32))
  merged = a.precision_weighted(b)
  np.testing.assert_allclose(np.exp(-merged.log_var), np.exp(-a.log_var) + np.exp(-b.log_var),
                             rtol=1e-5)
  # log a(z) + log b(z) - log merged(z) is the same for every z: log Z = log N(m_a; m_b, va + vb).
  zs = jnp.asarray(rng.normal(size=(6, 4)) * 2, jnp.float32)
  gaps = jax.vmap(lambda z: a.log_prob(z) + b.log_prob(z) - merged.log_prob(z))(zs)
  log_z = distributions.DiagGaussian(b.mean, jnp.log(jnp.exp(a.log_var) + jnp.exp(b.log_var))
                                     ).log_prob(a.mean)
  np.testing.assert_allclose(gaps, np.full(6, log_z), rtol=1e-5, atol=1e-5)
  # Far-apart precisions stay finite and pick the sharper Gaussian.
  sharp = distributions.DiagGaussian(jnp.ones(1), jnp.full(1, -40.0))
  flat = distributions.DiagGaussian(jnp.zeros(1), jnp.full(1, 40.0))
  both = sharp.precision_weighted(flat)
  assert np.isfinite(both.log_var).all()
  np.testing.assert_allclose(both.mean, 1.0)
  np.testing.assert_allclose(both.log_var, -40.0)


def test_posterior_merges_each_rung_with_the_prior_given_the_layer_above():
  params = _params()
  q = MODEL.posterior(params, X)
  z = q.sample(key=jax.random.PRNGKey(1))
  z1, z2 = z[:2], z[2:]
  up1, up2 = q.bottom_up()
  prior_1 = MODEL.prior(params).log_prob  # p(z2) p(z1|z2): its layer 1 is p(z1|z2)
  mean_p, log_var_p = MODEL.priors[0].apply({"params": params["decoder"]["layer_1"]}, z2)
  var = 1 / (np.exp(-up1.log_var) + np.exp(-log_var_p))
  mean = var * (up1.mean * np.exp(-up1.log_var) + mean_p * np.exp(-log_var_p))
  expected = (distributions.DiagGaussian(mean, np.log(var)).log_prob(z1) + up2.log_prob(z2))
  np.testing.assert_allclose(q.log_prob(z), expected, rtol=1e-5)
  # layer KLs add up to log q - log p, the top layer against N(0, I).
  kls = MODEL.layer_kls(params, X, z)
  np.testing.assert_allclose(jnp.sum(kls), q.log_prob(z) - prior_1(z), rtol=1e-5, atol=1e-5)
  # A flat bottom rung leaves q(z1 | z2, x) = p(z1 | z2): layer 1 carries no KL.
  flat = jax.tree_util.tree_map(lambda a: a, params)
  flat["encoder"]["layer_1"]["head"]["log_var"]["bias"] = jnp.full(2, 50.0)
  assert abs(float(MODEL.layer_kls(flat, X, MODEL.posterior(flat, X).sample(
      key=jax.random.PRNGKey(2)))[0])) < 1e-3


@dataclasses.dataclass(frozen=True)
class _PriorStoppedInQ(ladder.LadderVAE):
  """A wrong ladder: q sees the prior networks as constants (the hvae view)."""

  def posterior(self, params, x):
    return ladder.LadderPosterior(self, {"encoder": params["encoder"],
                                         "decoder": jax.lax.stop_gradient(params["decoder"])}, x)


def _paired_z(model, estimator, reference, params, n=20_000):
  """|mean| / se of (estimator - reference) gradients drawn with the same keys, per leaf."""
  def one(key):
    g = lambda est, m: jax.grad(lambda p: est.per_example(m, p, X, key=key)[0])(params)  # noqa: E731
    return jax.tree_util.tree_map(jnp.subtract, g(estimator, model), g(reference, MODEL))
  diffs = jax.jit(jax.vmap(one))(jax.random.split(jax.random.PRNGKey(3), n))
  return {jax.tree_util.keystr(path): float(np.max(np.abs(d.mean(0)) / (d.std(0) / np.sqrt(n) + 1e-9)))
          for path, d in jax.tree_util.tree_leaves_with_path(diffs)}


PATHWISE_IWAE = estimators.make_estimator("iwae", "pathwise", num_samples=3)


@pytest.mark.parametrize("objective,estimator", [("iwae", "dreg"), ("elbo", "stl")])
def test_dreg_and_stl_are_unbiased_for_every_parameter_shared_ones_included(objective, estimator):
  """Against the pathwise gradient of the same bound: DReG's two surrogates add up to the
  generalised DReG of Bauer & Mnih 2021 for the prior networks in q and p."""
  params = jax.tree_util.tree_map(lambda p: p + 0.3 * jnp.sign(p + 0.1), _params(1))
  kw = dict(num_samples=3) if objective == "iwae" else dict(analytic_kl=False)
  reference = estimators.make_estimator(objective, "pathwise", **kw)
  z = _paired_z(MODEL, estimators.make_estimator(objective, estimator, **kw), reference, params)
  assert max(z.values()) < 5, z
  assert any("'decoder']['layer_1']" in k for k in z)  # the shared prior net was checked


def test_the_paired_check_finds_the_bias_of_a_posterior_blind_to_the_shared_prior():
  """The same check has the power to fail: stopping the prior nets inside q drops the
  variational half of their gradient."""
  params = jax.tree_util.tree_map(lambda p: p + 0.3 * jnp.sign(p + 0.1), _params(1))
  wrong = _PriorStoppedInQ(*[getattr(MODEL, f.name) for f in dataclasses.fields(MODEL)])
  z = _paired_z(wrong, estimators.make_estimator("iwae", "dreg", num_samples=3), PATHWISE_IWAE,
                params)
  shared = max(v for k, v in z.items() if "'decoder']['layer_1']" in k)
  assert shared > 8, z
  assert max(v for k, v in z.items() if "'encoder'" in k) < 5, z


def test_layer_statistics_report_each_layer():
  from vaejax import evaluate
  params = _params()
  xs = jnp.tile(X[None], (5, 1, 1, 1)) + 0.1 * jnp.arange(5.0)[:, None, None, None]
  stats = evaluate.layer_statistics(MODEL, params, xs, key=jax.random.PRNGKey(4), batch_size=5)
  assert np.asarray(stats["kl"]).shape == (2,) and np.all(np.asarray(stats["kl"]) > 0)


def test_rws_and_empty_rungs_are_refused(data_dir):
  from vaejax import config as config_lib
  config = config_lib.base_config()
  config.update(dict(model="ladder", objective="iwae", estimator="rws", num_samples=5,
                     analytic_kl=False, data_dir=data_dir))
  with pytest.raises(config_lib.ConfigError, match="rws' does not apply to model='ladder'"):
    config_lib.validate(config)
  config.update(dict(estimator="dreg", layer_hidden=((200,), ())))
  with pytest.raises(config_lib.ConfigError, match="every ladder rung needs"):
    config_lib.validate(config)
  with pytest.raises(ValueError, match="every ladder rung needs"):
    ladder.make_ladder_vae(image_shape=(1, D, 1), latent_dims=(2, 1), hidden=((4,), ()))



def test_smoke_config_trains_and_its_kl_warms_up(tmp_path, data_dir):
  import json
  from conftest import REPO
  from vaejax import config as config_lib, experiment
  config = config_lib.load_config_file(str(REPO / "experiments" / "configs" / "ladder_vae_smoke.py"))
  config.update(dict(data_dir=data_dir, num_image_samples=0, tensorboard=False))
  summary = experiment.run(config, str(tmp_path), quiet=True)
  assert summary["model"] == "ladder" and summary["steps"] == 32
  assert np.isfinite(summary["test"]["nll"]) and summary["test"]["kl"] > 0
  logged = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  # Warm-up over 16 steps: the loss weighs the KL by step / 16 until then, fully after.
  early, late = logged[0], logged[-1]
  assert early["train/loss"] < early["train/recon"] + early["train/kl"] - 1e-3
  assert late["train/loss"] == pytest.approx(late["train/recon"] + late["train/kl"], rel=1e-5)


def test_conditional_kl_is_each_layers_kl_given_the_layers_above():
  """Per unit in closed form given z_{l+1}; its mean over z ~ q is the layer's KL (the
  Monte-Carlo layer_kls agree within 4 standard errors); z_l itself is not read."""
  params = jax.tree_util.tree_map(lambda p: p + 0.3 * jnp.sign(p + 0.1), _params(1))
  q = MODEL.posterior(params, X)
  zs = jax.vmap(lambda k: q.sample(key=k))(jax.random.split(jax.random.PRNGKey(5), 50_000))
  conditional = jax.vmap(lambda z: MODEL.conditional_kl_per_dim(params, X, z))(zs)
  monte_carlo = jax.vmap(lambda z: MODEL.layer_kls(params, X, z))(zs)
  per_layer = np.stack([conditional[:, :2].sum(1), conditional[:, 2]], axis=1)
  se = np.asarray(monte_carlo.std(0)) / np.sqrt(len(zs))
  np.testing.assert_array_less(np.abs(per_layer.mean(0) - np.asarray(monte_carlo.mean(0))), 4 * se)
  assert np.all(per_layer > 0) and per_layer[:, 0].std() > 1e-3  # layer 1 varies with z2
  # The top layer has nothing above it: KL(q(z2|x) || N(0, I)) for every draw.
  top = q.bottom_up()[-1].kl_to_standard_normal_per_dim()
  np.testing.assert_allclose(conditional[:, 2], np.full(len(zs), float(top[0])), rtol=1e-5)
  moved = zs[0].at[:2].add(3.0)  # another z1, the same z2
  np.testing.assert_allclose(MODEL.conditional_kl_per_dim(params, X, moved), conditional[0],
                             rtol=1e-6)


def test_analytic_kl_elbo_gradient_is_unbiased():
  """Paired with the Monte-Carlo-KL ELBO's gradient (same draws), every parameter."""
  params = jax.tree_util.tree_map(lambda p: p + 0.3 * jnp.sign(p + 0.1), _params(1))
  monte_carlo = estimators.make_estimator("elbo", "pathwise", analytic_kl=False)
  analytic = estimators.make_estimator("elbo", "pathwise", analytic_kl=True)
  z = _paired_z(MODEL, analytic, monte_carlo, params)
  assert max(z.values()) < 5, z
  assert any("'decoder']['layer_1']" in k for k in z)  # the shared prior net was checked


def _exact_kl(model, params):
  """KL(q(z|x) || p(z)) = KL(q(z2|x) || N(0, 1)) + E_q(z2|x) KL_1(z2), the expectation over
  the one-unit z2 by 40-point Gauss-Hermite quadrature (exact to float rounding here)."""
  top = model.posterior(params, X).bottom_up()[-1]
  nodes, weights = np.polynomial.hermite.hermgauss(40)
  z2 = top.mean + jnp.exp(0.5 * top.log_var) * np.sqrt(2.0) * jnp.asarray(nodes, jnp.float32)[:, None]
  kl_1 = jax.vmap(lambda v: jnp.sum(model.conditional_kl_per_dim(
      params, X, jnp.concatenate([jnp.zeros(2), v]))[:2]))(z2)
  return jnp.sum(jnp.asarray(weights, jnp.float32) * kl_1) / np.sqrt(np.pi) + top.kl_to_standard_normal()


def _kl_gradient_draws(model, params, n=20_000):
  """The gradient of sum conditional_kl_per_dim(z), z ~ q reparameterised, per draw:
  a params-shaped tree of [n, ...] arrays."""
  def one(key):
    return jax.grad(lambda p: jnp.sum(model.conditional_kl_per_dim(
        p, X, model.posterior(p, X).sample(key=key))))(params)
  return jax.jit(jax.vmap(one))(jax.random.split(jax.random.PRNGKey(7), n))


@dataclasses.dataclass(frozen=True)
class _ConditionalKLWithoutPath(ladder.LadderVAE):
  """A wrong analytic KL: the layers above enter as constants, so layer 1's KL sends
  no gradient through the draw of z2 into q(z2|x)."""

  def conditional_kl_per_dim(self, params, x, z):
    return super().conditional_kl_per_dim(params, x, jax.lax.stop_gradient(z))


def test_conditional_kl_gradient_is_the_exact_kls_and_the_check_can_fail():
  """Mean over draws against the quadrature KL's gradient, in standard errors of the
  right estimator's mean; the wrong one (no path through z2) is far off on q(z2|x)."""
  params = jax.tree_util.tree_map(lambda p: p + 0.3 * jnp.sign(p + 0.1), _params(1))
  q = MODEL.posterior(params, X)
  zs = jax.vmap(lambda k: q.sample(key=k))(jax.random.split(jax.random.PRNGKey(8), 20_000))
  values = jax.vmap(lambda z: jnp.sum(MODEL.conditional_kl_per_dim(params, X, z)))(zs)
  assert abs(float(values.mean() - _exact_kl(MODEL, params))) < 4 * float(values.std()) / np.sqrt(20_000)
  exact = jax.grad(lambda p: _exact_kl(MODEL, p))(params)
  right = _kl_gradient_draws(MODEL, params)
  wrong = _kl_gradient_draws(
      _ConditionalKLWithoutPath(*[getattr(MODEL, f.name) for f in dataclasses.fields(MODEL)]),
      params)
  se = jax.tree_util.tree_map(lambda g: g.std(0) / np.sqrt(g.shape[0]) + 1e-6, right)

  def z_scores(draws):
    return {jax.tree_util.keystr(path): float(np.max(np.abs(g.mean(0) - e) / s))
            for (path, g), e, s in zip(jax.tree_util.tree_leaves_with_path(draws),
                                       jax.tree_util.tree_leaves(exact),
                                       jax.tree_util.tree_leaves(se))}
  z_right, z_wrong = z_scores(right), z_scores(wrong)
  assert max(z_right.values()) < 5, z_right
  assert max(v for k, v in z_wrong.items() if "'encoder']['layer_2']" in k) > 8, z_wrong


def test_free_bits_floor_each_units_conditional_kl():
  """A floor between the units' KLs removes the KL gradient of exactly the units below
  it (per unit, at this draw of the layers above); a floor above every unit leaves the
  gradient of E log p(x|z) alone. The metrics report the unfloored KL of the draw."""
  from vaejax import objectives
  params = _params(2)
  key = jax.random.PRNGKey(6)

  def draw(p):
    return _draw(p, key)

  def grad(estimator):
    return jax.grad(lambda p: estimator.per_example(MODEL, p, X, key=key)[0])(params)

  def floored(free_bits):
    return estimators.make_estimator(
        "elbo", "pathwise", kl_penalty=objectives.make_kl_penalty(free_bits=free_bits))

  def close(a, b):
    jax.tree_util.tree_map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6),
                           a, b)

  kls = np.asarray(MODEL.conditional_kl_per_dim(params, X, draw(params)))
  floor = float(np.mean(np.sort(kls)[:2]))  # strictly between two units' KLs: no ties
  above = kls > floor
  assert 0 < above.sum() < len(kls)
  close(grad(floored(floor)), jax.grad(lambda p: MODEL.log_likelihood(p, X, draw(p)) - jnp.sum(
      jnp.where(above, MODEL.conditional_kl_per_dim(p, X, draw(p)), 0.0)))(params))
  close(grad(floored(100.0)), jax.grad(lambda p: MODEL.log_likelihood(p, X, draw(p)))(params))
  _, metrics = floored(100.0).per_example(MODEL, params, X, key=key)
  np.testing.assert_allclose(metrics["kl"], kls.sum(), rtol=1e-5)


def test_capacity_control_targets_the_ladders_conditional_kl():
  """gamma * |KL - C(t)| on the summed conditional KL of the draw: value at C(0) = 0
  and C = C_max, and the gradient's KL part flips sign when the target passes the KL."""
  from vaejax import objectives
  params, key = _params(3), jax.random.PRNGKey(7)
  est = estimators.make_estimator("elbo", "pathwise", kl_penalty=objectives.make_kl_penalty(
      capacity_max=50.0, capacity_steps=100, capacity_gamma=10.0))

  def kl(p):
    return jnp.sum(MODEL.conditional_kl_per_dim(p, X, _draw(p, key)))

  def recon(p):
    return MODEL.log_likelihood(p, X, _draw(p, key))
  total_kl = float(kl(params))
  assert 0.1 < total_kl < 50.0
  for step, sign in [(0, 1.0), (100, -1.0)]:  # target 0 (below the KL), then 50 (above)
    value, metrics = est.per_example(MODEL, params, X, key=key, step=step)
    capacity = 50.0 * min(1.0, step / 100)
    np.testing.assert_allclose(metrics["loss"], -float(recon(params)) + 10.0 * abs(
        total_kl - capacity), rtol=1e-5)
    want = jax.grad(lambda p: recon(p) - sign * 10.0 * kl(p))(params)
    got = jax.grad(lambda p: est.per_example(MODEL, p, X, key=key, step=step)[0])(params)
    jax.tree_util.tree_map(
        lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-5), got, want)


def test_analytic_kl_and_free_bits_are_the_ladders_only(data_dir):
  from vaejax import config as config_lib
  config = config_lib.load_config_file(str(__import__("conftest").REPO / "experiments" /
                                           "configs" / "ladder_vae_smoke.py"))
  config.update(dict(data_dir=data_dir, analytic_kl=True, free_bits=0.5))
  config_lib.validate(config)
  config.model = "hvae"
  with pytest.raises(config_lib.ConfigError, match="model='hvae' has no closed-form KL"):
    config_lib.validate(config)
  config.update(dict(model="ladder", estimator="score_function", free_bits=0.0))
  with pytest.raises(config_lib.ConfigError, match="reparameterised draw of the layers above"):
    config_lib.validate(config)
  with pytest.raises(ValueError, match="conditional on a reparameterised draw"):
    estimators.make_estimator("elbo", "score_function", analytic_kl=True).per_example(
        MODEL, _params(), X, key=jax.random.PRNGKey(0))

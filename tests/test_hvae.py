"""The hierarchical VAE against exact answers on a two-layer linear-Gaussian model.

Model: z2 ~ N(0, 1), z1 | z2 ~ N(A z2 + a, sp^2 I_2), x | z1 ~ N(W z1 + b, s^2 I_3),
with A = (alpha, 0) and W's columns orthogonal. Then p(z1) = N(a, A A^T + sp^2 I)
is diagonal, the exact posterior factorises as p(z1|x) p(z2|z1) (z2 and x are
independent given z1), and both factors are diagonal Gaussians with means linear
in x and z1: the model's linear encoders represent them exactly. With every
log-variance constant in its input, each term of the ELBO is the expectation of
a quadratic under the joint Gaussian q(z1, z2|x), so the ELBO and its gradient
are exact too. Unbiasedness is checked by z-scores (< 5 on every coordinate).
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vaejax import diagnostics, estimators, evaluate, nets
from vaejax.models import hvae

D, L1, L2, SCALE, PRIOR_SCALE, ALPHA = 3, 2, 1, 0.6, 0.8, 1.3
MODEL = hvae.make_hvae(image_shape=(1, D, 1), latent_dims=(L1, L2), hidden=((), ()),
                       likelihood="gaussian_fixed", gaussian_scale=SCALE, activation="linear")
X = jnp.array([0.9, -0.5, 1.2]).reshape(1, D, 1)


def _unclip(log_var):
  """The log_var bias that GaussianHead's soft clip maps to `log_var`."""
  bound = nets.LOG_VAR_BOUND
  return jnp.asarray(bound * np.arctanh(np.asarray(log_var) / bound), jnp.float32)


def _set_head(head, kernel, bias, log_var):
  head["mean"]["kernel"] = jnp.asarray(kernel, jnp.float32)
  head["mean"]["bias"] = jnp.asarray(bias, jnp.float32)
  head["log_var"]["kernel"] = jnp.zeros_like(head["log_var"]["kernel"])
  head["log_var"]["bias"] = _unclip(log_var)


def _generative(params):
  """(A [L1, L2], a [L1], sp^2 [L1], W [D, L1], b [D]) of the params."""
  head = params["decoder"]["layer_1"]["head"]
  var_p = jnp.exp(nets.soft_clip(head["log_var"]["bias"], nets.LOG_VAR_BOUND))
  W = jax.jacfwd(lambda z: MODEL.decoder.apply({"params": params["decoder"]["x"]}, z).reshape(D))(
      jnp.zeros(L1))
  b = MODEL.decoder.apply({"params": params["decoder"]["x"]}, jnp.zeros(L1)).reshape(D)
  return head["mean"]["kernel"].T, head["mean"]["bias"], var_p, W, b


def _exact_params():
  """A generative model with diagonal exact posterior factors, and q set to them."""
  params = MODEL.init(jax.random.PRNGKey(0))
  q_orth, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(D, D)))
  W, b = q_orth[:, :L1] * np.array([1.4, 0.7]), np.array([0.2, -0.1, 0.3])
  A, a = np.array([[ALPHA], [0.0]]), np.array([0.3, -0.2])
  params["decoder"]["x"]["out"] = {"kernel": jnp.asarray(W.T, jnp.float32),
                                   "bias": jnp.asarray(b, jnp.float32)}
  _set_head(params["decoder"]["layer_1"]["head"], A.T, a, np.full(L1, 2 * np.log(PRIOR_SCALE)))
  # q(z1|x) = p(z1|x): prior N(a, C1) with C1 diagonal, likelihood W, s.
  C1 = A @ A.T + PRIOR_SCALE ** 2 * np.eye(L1)
  cov1 = np.linalg.inv(np.linalg.inv(C1) + W.T @ W / SCALE ** 2)
  assert np.allclose(cov1, np.diag(np.diag(cov1)), atol=1e-9)
  gain = cov1 @ W.T / SCALE ** 2  # mean1 = gain x + cov1 (C1^-1 a - W^T b / s^2)
  _set_head(params["encoder"]["layer_1"]["head"], gain.T,
            cov1 @ (np.linalg.solve(C1, a) - W.T @ b / SCALE ** 2), np.log(np.diag(cov1)))
  # q(z2|z1) = p(z2|z1): precision 1 + A^T A / sp^2, mean v2 A^T (z1 - a) / sp^2.
  v2 = 1.0 / (1.0 + (A.T @ A)[0, 0] / PRIOR_SCALE ** 2)
  _set_head(params["encoder"]["layer_2"]["head"], v2 * A / PRIOR_SCALE ** 2,
            -v2 * A.T @ a / PRIOR_SCALE ** 2, np.full(L2, np.log(v2)))
  return params


def _generic_params(scale=0.25):
  """The exact posterior's params moved off it by N(0, scale^2) (log-variances stay
  constant in their input)."""
  params = _exact_params()
  leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
  keys = jax.random.split(jax.random.PRNGKey(7), len(leaves))
  moved = [leaf if "log_var" in jax.tree_util.keystr(path) and "kernel" in jax.tree_util.keystr(path)
           else leaf + scale * jax.random.normal(k, leaf.shape)
           for (path, leaf), k in zip(leaves, keys)]
  return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(params), moved)


def exact_log_evidence(params, x=X):
  A, a, var_p, W, b = _generative(params)
  C1 = A @ A.T + jnp.diag(var_p)
  cov = W @ C1 @ W.T + SCALE ** 2 * jnp.eye(D)
  r = x.reshape(D) - (W @ a + b)
  return -0.5 * (D * math.log(2 * math.pi) + jnp.linalg.slogdet(cov)[1] + r @ jnp.linalg.solve(cov, r))


def _expected_log_normal(K, k0, var, mean, cov):
  """E_u[log N(0; K u + k0, diag(var))] for u ~ N(mean, cov): log N of the residual."""
  m = K @ mean + k0
  return -0.5 * (jnp.sum(jnp.log(2 * math.pi * var)) + jnp.sum(jnp.diag(K @ cov @ K.T) / var)
                 + jnp.sum(m ** 2 / var))


def exact_elbo(params, x=X):
  """E_q[log p(x, z1, z2) - log q(z1, z2 | x)] under the joint Gaussian q."""
  terms = _exact_terms(params, x)
  return (terms["log_px"] + terms["log_pz1"] + terms["log_pz2"] - terms["log_qz1"]
          - terms["log_qz2"])


def _exact_terms(params, x=X):
  """Each term's expectation under the joint Gaussian q(z1, z2 | x)."""
  A, a, var_p, W, b = _generative(params)
  def layer(name, below):  # (mean kernel^T, bias, variance) of a q layer
    head = params["encoder"][name]["head"]
    return (head["mean"]["kernel"].T, head["mean"]["bias"],
            jnp.exp(nets.soft_clip(head["log_var"]["bias"], nets.LOG_VAR_BOUND)))
  G1, g1, v1 = layer("layer_1", None)
  B, c, v2 = layer("layer_2", None)
  m1 = G1 @ x.reshape(D) + g1
  S1 = jnp.diag(v1)
  mean = jnp.concatenate([m1, B @ m1 + c])  # u = (z1, z2)
  cov = jnp.block([[S1, S1 @ B.T], [B @ S1, B @ S1 @ B.T + jnp.diag(v2)]])
  I1, I2 = jnp.eye(L1), jnp.eye(L2)
  Z12, Z21 = jnp.zeros((L1, L2)), jnp.zeros((L2, L1))
  log_px = _expected_log_normal(jnp.concatenate([-W, jnp.zeros((D, L2))], 1), x.reshape(D) - b,
                                jnp.full(D, SCALE ** 2), mean, cov)
  log_pz1 = _expected_log_normal(jnp.concatenate([I1, -A], 1), -a, var_p, mean, cov)
  log_pz2 = _expected_log_normal(jnp.concatenate([Z21, I2], 1), jnp.zeros(L2), jnp.ones(L2), mean, cov)
  log_qz1 = _expected_log_normal(jnp.concatenate([I1, Z12], 1), -m1, v1, mean, cov)
  log_qz2 = _expected_log_normal(jnp.concatenate([-B, I2], 1), -c, v2, mean, cov)
  return dict(log_px=log_px, log_pz1=log_pz1, log_pz2=log_pz2, log_qz1=log_qz1, log_qz2=log_qz2)


def _draws(estimator, params, n, seed=0):
  est = estimator.per_example

  def one(key):
    (_, metrics), grads = jax.value_and_grad(
        lambda p: est(MODEL, p, X, key=key), has_aux=True)(params)
    return grads, metrics

  return jax.jit(jax.vmap(one))(jax.random.split(jax.random.PRNGKey(seed), n))


def _assert_unbiased(samples, exact, what):
  """z-scores of the mean of the draws against `exact`, leaf by leaf, except the
  log-variance kernels: the exact formulas hold them at 0 (a log-variance that
  depends on its input leaves the linear-Gaussian family), so they have no
  exact gradient here."""
  for (path, s), e in zip(jax.tree_util.tree_leaves_with_path(samples),
                          jax.tree_util.tree_leaves(exact)):
    if "'log_var']['kernel'" in jax.tree_util.keystr(path):
      continue
    s, e = np.asarray(s, np.float64), np.asarray(e, np.float64)
    mean, se = s.mean(0), s.std(0) / np.sqrt(s.shape[0]) + 1e-7
    z = np.abs(mean - e) / se
    assert z.max() < 5, f"{what} {jax.tree_util.keystr(path)}: z = {z.max():.1f}"


def test_exact_posterior_makes_every_log_weight_the_log_evidence():
  params = _exact_params()
  q = MODEL.posterior(params, X)
  log_px = exact_log_evidence(params)
  for seed in range(5):
    z = q.sample(key=jax.random.PRNGKey(seed))
    log_w = MODEL.log_likelihood(params, X, z) + MODEL.log_prior(params, X, z) - q.log_prob(z)
    np.testing.assert_allclose(log_w, log_px, rtol=1e-5, atol=1e-5)


def test_importance_sampled_log_likelihood_recovers_the_log_evidence():
  params = _generic_params(0.1)  # q near the posterior: within 0.01 nats at k = 20000
  xs = jnp.stack([X, -X, 0.5 * X])
  log_px = evaluate.importance_log_likelihood(MODEL, params, xs, key=jax.random.PRNGKey(0),
                                              num_samples=20000, chunk_size=2000, batch_size=3)
  exact = jax.vmap(lambda x: exact_log_evidence(params, x))(xs)
  np.testing.assert_allclose(log_px, exact, atol=0.02)


def test_exact_elbo_is_the_monte_carlo_elbo_and_at_most_the_evidence():
  params = _generic_params()
  grads, metrics = _draws(estimators.make_estimator("elbo", "pathwise", analytic_kl=False),
                          params, 4000)
  mc = -np.asarray(metrics["neg_elbo"])
  assert abs(mc.mean() - float(exact_elbo(params))) < 5 * mc.std() / np.sqrt(len(mc))
  assert float(exact_elbo(params)) < float(exact_log_evidence(params))
  np.testing.assert_allclose(exact_elbo(_exact_params()), exact_log_evidence(_exact_params()),
                             rtol=1e-5)


@pytest.mark.parametrize("estimator", ["pathwise", "stl", "score_function"])
def test_elbo_estimators_are_unbiased_for_the_exact_gradient(estimator):
  params = _generic_params()
  est = estimators.make_estimator("elbo", estimator, analytic_kl=False)
  grads, _ = _draws(est, params, 20000 if estimator == "score_function" else 4000)
  exact = jax.grad(exact_elbo)(params)  # a surrogate's gradient estimates the bound's
  _assert_unbiased(grads, exact, estimator)


@pytest.mark.parametrize("estimator", ["pathwise", "stl", "dreg", "vimco", "rws"])
def test_iwae_estimators_at_the_exact_posterior(estimator):
  """With q = p(z|x) the IWAE bound is log p(x) for every draw: the generative
  gradient is grad log p(x) and the encoder's expected gradient is 0."""
  params = _exact_params()
  est = estimators.make_estimator("iwae", estimator, num_samples=4)
  grads, metrics = _draws(est, params, 2000)
  np.testing.assert_allclose(-np.asarray(metrics["neg_iwae"]), exact_log_evidence(params),
                             rtol=1e-4, atol=1e-4)
  exact = jax.grad(exact_log_evidence)(params)
  if estimator == "rws":  # RWS's encoder follows the wake-phase score, also 0 on average
    exact = dict(exact, encoder=jax.tree_util.tree_map(jnp.zeros_like, exact["encoder"]))
  _assert_unbiased(grads, exact, estimator)


@pytest.mark.parametrize("objective,estimator", [("elbo", "stl"), ("iwae", "stl"), ("iwae", "dreg")])
def test_stl_and_dreg_encoder_gradients_vanish_at_the_exact_posterior(objective, estimator):
  """Through both layers' path: q(z2|z1) is evaluated at the z1 drawn with grad."""
  params = _exact_params()
  kwargs = {"analytic_kl": False} if objective == "elbo" else {"num_samples": 4}
  est = estimators.make_estimator(objective, estimator, **kwargs)
  grad_fn = lambda p, *, key: jax.grad(lambda q: est.per_example(MODEL, q, X, key=key)[0])(p)  # noqa: E731
  stats = diagnostics.gradient_statistics(grad_fn, params, key=jax.random.PRNGKey(0),
                                          num_draws=64, groups=("encoder", "decoder"))
  assert stats["encoder"]["variance"] < 1e-9
  assert stats["decoder"]["variance"] > 1e-4  # the decoder's gradient still varies
  pathwise = estimators.make_estimator(objective, "pathwise", **kwargs)
  grad_fn = lambda p, *, key: jax.grad(lambda q: pathwise.per_example(MODEL, q, X, key=key)[0])(p)  # noqa: E731
  stats = diagnostics.gradient_statistics(grad_fn, params, key=jax.random.PRNGKey(0),
                                          num_draws=64, groups=("encoder",))
  assert stats["encoder"]["variance"] > 1e-4


def test_analytic_kl_is_refused_with_a_clear_error():
  est = estimators.make_estimator("elbo", "pathwise", analytic_kl=True)
  with pytest.raises(ValueError, match="no closed-form KL: use analytic_kl=False"):
    est.per_example(MODEL, _exact_params(), X, key=jax.random.PRNGKey(0))


def _smoke_config(data_dir):
  from conftest import REPO
  from vaejax import config as config_lib
  config = config_lib.load_config_file(
      str(REPO / "experiments" / "configs" / "hvae2_iwae_table_smoke.py"))
  config.data_dir = data_dir
  return config


def test_smoke_run_trains_evaluates_samples_and_resumes_exactly(tmp_path, data_dir):
  import json
  import shutil

  import vaejax
  from vaejax import experiment
  summary = experiment.run(_smoke_config(data_dir), str(tmp_path / "a"), quiet=True)
  test = summary["test"]
  # The decoder starts at the training set's mean image (the config's
  # output_bias_init='data_mean'): about 207 nats per digit, plus what its random
  # hidden layers add. Training lowers the loss from one logged window to the next,
  # and the importance-sampled NLL (k = 100) is below the -ELBO.
  assert summary["model"] == "hvae" and summary["steps"] == 32
  assert 100 < test["nll"] < test["neg_elbo"] < 230
  losses = [json.loads(line)["train/neg_elbo"]
            for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
  assert len(losses) == 4 and losses[-1] < losses[0] - 10
  run = vaejax.load_run(str(tmp_path / "a"))
  assert run.model.latent_dim == 12
  images = run.sample(key=jax.random.PRNGKey(0), num_samples=4)
  assert images.shape == (4, 28, 28, 1) and 0 <= float(images.min()) <= float(images.max()) <= 1
  q = run.encode(run.examples("test", num=3))
  assert q.mean.shape == q.log_var.shape == (3, 12)
  stats = evaluate.latent_statistics(run.model, run.params, run.examples("test", num=50))
  assert stats["activity"].shape == (12,) and "kl_per_dim" not in stats
  layers = evaluate.layer_statistics(run.model, run.params, run.examples("test", num=50),
                                     key=jax.random.PRNGKey(0), batch_size=50)
  assert layers["kl"].shape == (2,) and float(layers["kl"].sum()) > 0
  active = np.asarray(stats["activity"]) > 0.01
  assert layers["active_units"].tolist() == [int(active[:8].sum()), int(active[8:].sum())]
  # Killed after step 16: resuming from that checkpoint ends where the whole run did.
  shutil.copytree(tmp_path / "a", tmp_path / "b")
  shutil.rmtree(tmp_path / "b" / "checkpoints" / "32")
  (tmp_path / "b" / "summary.json").unlink()
  resumed = experiment.run(_smoke_config(data_dir), str(tmp_path / "b"), quiet=True)
  assert resumed["params_checksum"] == summary["params_checksum"]
  assert json.loads((tmp_path / "b" / "summary.json").read_text())["test"] == test


def test_config_refuses_the_closed_form_kl_and_bad_layers(data_dir):
  from vaejax import config as config_lib
  config = _smoke_config(data_dir)
  config_lib.validate(config)
  for key, value, message in [("analytic_kl", True, "no closed-form KL"),
                              ("layer_hidden", ((32,),), "one tuple of positive widths"),
                              ("latent_dims", (8, 0), "positive ints"),
                              ("layer_hidden", (32, 16), "one tuple of positive widths"),
                              ("likelihood", "gaussian_learned", "not available")]:
    bad = _smoke_config(data_dir)
    bad[key] = value
    with pytest.raises(config_lib.ConfigError, match=message):
      config_lib.validate(bad)


def test_layer_statistics_give_each_layers_exact_kl():
  params = _generic_params()
  terms = _exact_terms(params)
  exact = [terms["log_qz1"] - terms["log_pz1"], terms["log_qz2"] - terms["log_pz2"]]
  xs = jnp.broadcast_to(X, (4000,) + X.shape)  # one draw per copy of x
  stats = evaluate.layer_statistics(MODEL, params, xs, key=jax.random.PRNGKey(0), batch_size=1000)
  np.testing.assert_allclose(stats["kl"], exact, atol=0.05)
  # One example: no variance over x, so no unit is active.
  np.testing.assert_array_equal(stats["active_units"], [0, 0])
  kls = jax.vmap(lambda k: MODEL.layer_kls(params, X, MODEL.posterior(params, X).sample(key=k)))(
      jax.random.split(jax.random.PRNGKey(1), 3))
  z = MODEL.posterior(params, X).sample(key=jax.random.split(jax.random.PRNGKey(1), 3)[0])
  total = MODEL.posterior(params, X).log_prob(z) - MODEL.log_prior(params, X, z)
  np.testing.assert_allclose(jnp.sum(kls[0]), total, rtol=1e-5, atol=1e-5)

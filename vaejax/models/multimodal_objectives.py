"""Training objectives of the multimodal VAEs (`multimodal.py`), for ONE example.

Each returns (surrogate, metrics): the gradient of the surrogate is the
estimator; metrics["loss"] is minus the bound itself with every likelihood
weight lambda_m = 1 and KL weight 1 (a bound on log p(X_observed)), whatever
the weights the surrogate uses (lambdas; `beta`, the KL warm-up of the ELBOs).
Absent modalities (mask 0) enter neither.

  subsampled_elbo   MVAE (Wu & Goodman 2018, sec. 3): sum of the ELBOs of the
                    product-of-experts posterior over the observed set, each
                    single observed modality and, when M > 2, one random subset
  stratified_iwae   MMVAE (Shi et al. 2019, eq. 4): (1/M) sum_m E[log (1/K) sum_k
                    p(X, z_mk) / q(z_mk|X)], z_mk ~ q_m(z|x_m), q the mixture;
                    gradient pathwise or DReG (below)
  mopoe_elbo        MoPoE (Sutter et al. 2021): sum_s pi_s (E_{q_s}[log p(X|z)] -
                    KL(q_s || p)) over the subsets' products q_s, one draw each;
                    the mixture's KL bounded by the mean of its components'

DReG for a mixture posterior. Tucker et al.'s identity E_q[f(z) d log q(z)] =
E[df/dz dz/dphi] needs z drawn from the q whose score it is; here z_mk is drawn
from component m but the score is the mixture's, d log q(z) = sum_j r_j(z)
d log q_j(z) with r_j = pi_j q_j / q. The identity turns the j = m part of each
sample's score term into a pathwise one (with weight w~_mk r_m(z_mk), w~ the
normalised importance weight), the j != m parts stay as score terms at fixed z.
The estimator is unbiased for the stratified IWAE gradient and is Tucker et
al.'s DReG (weights w~^2) for a single expert; the cross terms vanish as the
experts separate. Multiplying by w~^2 alone, as if z came from q, is biased
when the experts overlap.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from vaejax.distributions import DiagGaussian

sg = jax.lax.stop_gradient


def _lambdas(model) -> jax.Array:
  return jnp.asarray([m.weight for m in model.modalities], jnp.float32)


def _stop_generative(params):
  """params with every group but the encoder stopped: only q's parameters learn."""
  return {k: v if k == "encoder" else sg(v) for k, v in params.items()}


def subsampled_elbo(model, params, x, *, key, beta=1.0):
  """MVAE's objective (module docstring); metrics: loss = neg_elbo = -joint ELBO,
  recon, kl (joint) and elbo_<m>, each modality's own ELBO (0 where m is absent)."""
  means, log_vars = model.experts(params, x)
  mask = model.mask(x)
  num = len(model.modalities)
  subset_key, key = jax.random.split(key)
  rows = [mask] + [mask * row for row in jnp.eye(num)]
  if num > 2:
    rows.append(mask * jax.random.bernoulli(subset_key, 0.5, (num,)))
  subsets = jnp.stack(rows)  # [S, M]

  def elbo(subset, sample_key):
    q = model.combine(means, log_vars, subset)
    log_px = model.modality_log_likelihoods(params, x, q.sample(key=sample_key))  # [M]
    return subset * log_px, jnp.sum(q.kl_to_standard_normal_per_dim())

  log_px, kl = jax.vmap(elbo)(subsets, jax.random.split(key, subsets.shape[0]))
  used = jnp.any(subsets > 0, axis=1)
  surrogate = jnp.sum(jnp.where(used, log_px @ _lambdas(model) - beta * kl, 0.0))
  recon = -jnp.sum(log_px[0])
  metrics = {"loss": recon + kl[0], "recon": recon, "kl": kl[0], "neg_elbo": recon + kl[0]}
  for i, name in enumerate(model.names):
    metrics[f"elbo_{name}"] = jnp.sum(log_px[1 + i]) - kl[1 + i]
  return surrogate, metrics


def _log_weights(model, params, x, mask, q, z):
  """Per z of any leading shape [..., D]: the weighted log importance weight
  sum_m lambda_m log p(x_m|z) + log p(z) - log q(z|X), the plain log p(X|z) and
  log p(z) - log q(z|X) ([...] each; the plain log weight is the sum of the last two)."""
  def one(z_k):
    log_px = mask * model.modality_log_likelihoods(params, x, z_k)
    log_ratio = model.log_prior(params, x, z_k) - q.log_prob(z_k)
    return log_px @ _lambdas(model) + log_ratio, jnp.sum(log_px), log_ratio
  outs = jax.vmap(one)(z.reshape(-1, z.shape[-1]))
  return tuple(o.reshape(z.shape[:-1]) for o in outs)


def _stratified_bound(log_w, pi):
  """sum_m pi_m log (1/K) sum_k w_mk for log_w [M, K], pi [M] (0: absent): []."""
  per_expert = jax.nn.logsumexp(log_w, axis=1) - jnp.log(log_w.shape[1])
  return jnp.sum(jnp.where(pi > 0, pi * per_expert, 0.0))


def stratified_iwae(model, params, x, *, key, beta=1.0):
  """MMVAE's stratified IWAE bound, K = model.num_samples draws per expert, with
  model.estimator 'pathwise' or 'dreg' (module docstring). metrics: loss =
  neg_iwae (minus the bound), recon (-E log p(X|z) over the draws), kl (mean
  log q - log p over the draws), neg_elbo = recon + kl (the stratified ELBO)."""
  del beta  # the IWAE bound has no separate KL term to anneal (config refuses a warm-up)
  means, log_vars = model.experts(params, x)
  mask = model.mask(x)
  q = model.combine(means, log_vars, mask)
  z = q.stratified_sample(key=key, num_samples=model.num_samples)  # [M, K, D]
  pi = jnp.exp(q.log_weights)
  log_w, log_px, log_ratio = _log_weights(model, params, x, mask, q, z)
  value = _stratified_bound(log_px + log_ratio, pi)
  kl = -jnp.sum(pi[:, None] * log_ratio) / z.shape[1]
  recon = -jnp.sum(pi[:, None] * log_px) / z.shape[1]
  metrics = {"loss": -value, "recon": recon, "kl": kl, "neg_elbo": recon + kl, "neg_iwae": -value}
  if model.estimator == "pathwise":
    return _stratified_bound(log_w, pi), metrics
  return _dreg_surrogate(model, params, x, mask, q, z, log_w, pi), metrics


def _dreg_surrogate(model, params, x, mask, q, z, log_w, pi):
  """The doubly reparameterised surrogate of the stratified IWAE bound (module
  docstring). log_w [M, K]: the weighted log importance weights at z [M, K, D]."""
  q_stop = jax.tree_util.tree_map(sg, q)
  # Generative model: sum_k w~_k grad log p(X, z_k), z and q held fixed.
  gen_log_w = _log_weights(model, params, x, mask, q_stop, sg(z))[0]
  surrogate = _stratified_bound(gen_log_w, pi)
  # Encoder, pathwise: w~_k d log w_k / dz_k dz_k/dphi, log w at fixed parameters.
  live_log_w = _log_weights(model, _stop_generative(params), x, mask, q_stop, z)[0]
  weights = sg(jax.nn.softmax(log_w, axis=1))  # w~ [M, K]
  pathwise = jnp.sum(weights * live_log_w, axis=1)
  # The j = m part of the score term, -E[w~_k r_m(z_k) d log q_m(z_k)], by the identity:
  # minus the pathwise derivative of w~_k r_m with the other draws held fixed.
  num_samples = z.shape[1]
  others = jnp.where(jnp.eye(num_samples, dtype=bool)[None], -jnp.inf, sg(live_log_w)[:, None, :])
  log_rest = jax.nn.logsumexp(others, axis=2)  # log sum_{j != k} w_j, [M, K]
  log_normalised = live_log_w - jnp.logaddexp(live_log_w, log_rest)
  log_own = jax.vmap(lambda m, z_m: jax.vmap(
      lambda z_k: q_stop.component(m).log_prob(z_k) + q_stop.log_weights[m]
      - q_stop.log_prob(z_k))(z_m))(jnp.arange(z.shape[0]), z)  # log r_m(z_mk)
  own = jnp.exp(log_normalised + log_own)
  # The j != m parts stay score terms: -w~_k r_j(z_k) d log q_j(z_k), z fixed.
  z_fixed = sg(z)
  log_components = jax.vmap(lambda mean, log_var: jax.vmap(jax.vmap(
      lambda z_k: DiagGaussian(mean, log_var).log_prob(z_k)))(z_fixed))(
          q.means, q.log_vars)  # [J, M, K], live parameters
  log_r = sg(jax.nn.log_softmax(q.log_weights[:, None, None] + log_components, axis=0))
  cross = ~jnp.eye(z.shape[0], dtype=bool)[:, :, None] & (q.log_weights[:, None, None] > -jnp.inf)
  score = jnp.sum(jnp.where(cross, jnp.exp(log_r) * log_components, 0.0), axis=0)  # [M, K]
  per_expert = pathwise - jnp.sum(own, axis=1) - jnp.sum(weights * score, axis=1)
  return surrogate + jnp.sum(jnp.where(pi > 0, pi * per_expert, 0.0))


def mopoe_elbo(model, params, x, *, key, beta=1.0):
  """MoPoE's objective (module docstring): one draw from each subset's product;
  metrics: loss = neg_elbo, recon, kl (the components' mean KL)."""
  means, log_vars = model.experts(params, x)
  mask = model.mask(x)
  q = model.combine(means, log_vars, mask)
  keys = jax.random.split(key, q.means.shape[0])
  z = jax.vmap(lambda m, v, k: DiagGaussian(m, v).sample(key=k))(q.means, q.log_vars, keys)
  log_px = mask * jax.vmap(lambda z_s: model.modality_log_likelihoods(params, x, z_s))(z)
  kl = jax.vmap(lambda m, v: DiagGaussian(m, v).kl_to_standard_normal())(
      q.means, q.log_vars)
  pi = jnp.exp(q.log_weights)

  def expectation(per_subset):  # sum_s pi_s f_s, invalid subsets (pi = 0) dropped
    return jnp.sum(jnp.where(pi > 0, pi * per_subset, 0.0))
  recon, kl_mean = -expectation(jnp.sum(log_px, axis=1)), expectation(kl)
  surrogate = expectation(log_px @ _lambdas(model) - beta * kl)
  return surrogate, {"loss": recon + kl_mean, "recon": recon, "kl": kl_mean,
                     "neg_elbo": recon + kl_mean}


OBJECTIVES = {"poe": subsampled_elbo, "moe": stratified_iwae, "mopoe": mopoe_elbo}

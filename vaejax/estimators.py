"""Gradient estimators as surrogate objectives, written for ONE example.

Every estimator returns (surrogate, metrics): the gradient of `surrogate` with
respect to the params IS the estimator (stop_gradient marks what is held
fixed), while `metrics["loss"]` is minus the bound it estimates, so every
estimator of one objective reports comparable numbers. `make_estimator` picks
one by (objective, estimator) name and closes over the static settings.

  objective  estimator       gradient of
  elbo       pathwise        the (beta-)ELBO, reparameterised; analytic (the ladder's: given
                             the layers above) or Monte-Carlo KL
  elbo       stl             the ELBO, sticking the landing (Roeder et al. 2017)
  elbo       score_function  the ELBO: REINFORCE for the encoder, pathwise decoder;
                             baseline none | moving_average | learned (input-dependent)
  iwae       pathwise        IWAE-K (Burda et al. 2015)
  iwae       stl             IWAE-K with the score term dropped (biased for K > 1)
  iwae       dreg            IWAE-K, doubly reparameterised (Tucker et al. 2018)
  iwae       vimco           IWAE-K, score function with leave-one-out baselines (Mnih & Rezende 2016)
  iwae       rws             reweighted wake-sleep: IWAE decoder gradient, wake-phase encoder
                             gradient (Bornschein & Bengio 2015); not the gradient of one objective
  ae         pathwise        the deterministic autoencoder's log p(x | z = encoder mean)
  vq         straight_through  the VQ-VAE's own objective (van den Oord et al. 2017):
                             `model.objective`, a family that writes its objective itself
                             (models.base, objective tier)
  code_prior maximum_likelihood  a learned prior over a frozen VQ-VAE's codes: model.objective
                             (model.training_objective, with dropout, in the train step)
  aae        adversarial     the adversarial autoencoder's three phases (model.phases,
                             vaejax.phases); model.objective is its evaluation
  wae        mmd             WAE-MMD: model.objective plus its batch term (model.batch_objective)
  mvae       pathwise        multimodal VAEs' own objectives (models.multimodal_objectives):
  mmvae      dreg, pathwise  MVAE's sub-sampled ELBO, MMVAE's stratified IWAE (DReG for a
  mopoe      pathwise        mixture posterior), MoPoE's ELBO

Baselines live in params["baseline"]; a moving average is a scalar fitted by
`make_optimizer` with SGD at rate 1 - decay on 0.5 (b - signal)^2, which is
exactly b <- decay b + (1 - decay) mean(signal).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from vaejax.models import OWN_OBJECTIVE, LatentVariableModel, image_of
from vaejax.objectives import (ElboTerms, KLPenalty, analytic_kl_per_dim, draw,
                               has_closed_form_kl, has_conditional_kl, iwae_bound, kl_term,
                               log_mean_exp, log_terms, make_kl_penalty, over_samples)

OBJECTIVE_ESTIMATORS = {
    "elbo": ("pathwise", "stl", "score_function"),
    "iwae": ("pathwise", "stl", "dreg", "vimco", "rws"),
    "ae": ("pathwise",),
    "vq": ("straight_through",),
    "code_prior": ("maximum_likelihood",),
    "aae": ("adversarial",),
    "wae": ("mmd",),
    "mvae": ("pathwise",),
    "mmvae": ("dreg", "pathwise"),
    "mopoe": ("pathwise",),
}
# Objectives a model family defines itself (model.objective); the estimator is part of it.
OWN_OBJECTIVES = tuple(OWN_OBJECTIVE.values())
BASELINES = ("none", "moving_average", "learned")
sg = jax.lax.stop_gradient


class Estimator(NamedTuple):
  """per_example(model, params, x, *, key, step=0) -> (surrogate, metrics);
  init_params(key, model) -> extra params merged into the model's (e.g. {"baseline": ...})."""
  name: str
  per_example: Callable
  init_params: Callable[[jax.Array, LatentVariableModel], dict]
  baseline: str = "none"
  baseline_decay: float = 0.99


def display_name(objective: str, estimator: str) -> str:
  """'iwae'/'pathwise' -> 'iwae', 'iwae'/'stl' -> 'iwae_stl', 'iwae'/'dreg' -> 'dreg', ..."""
  if objective == "iwae":
    return {"pathwise": "iwae", "stl": "iwae_stl"}.get(estimator, estimator)
  return estimator if objective == "elbo" else objective


class BaselineNet(nn.Module):
  """Input-dependent baseline b(x): one tanh hidden layer on the flattened image."""
  hidden: int = 100

  @nn.compact
  def __call__(self, x):
    h = jnp.tanh(nn.Dense(self.hidden)(image_of(x).reshape(-1)))
    return nn.Dense(1)(h)[0]


def _metrics(log_px_z, kl, iwae=None):
  recon = -jnp.mean(log_px_z)
  m = {"recon": recon, "kl": kl, "neg_elbo": recon + kl}
  if iwae is not None:
    m["neg_iwae"] = -iwae
  return m


def _stop_params(params, groups, *, inside: bool):
  """params with stop_gradient on the top-level groups in `groups` (inside=True)
  or on every other group (inside=False)."""
  return {k: (jax.tree_util.tree_map(sg, v) if (k in groups) == inside else v)
          for k, v in params.items()}


def make_estimator(objective: str = "elbo", estimator: str = "pathwise", *, beta: float = 1.0,
                   num_samples: int = 1, analytic_kl: bool = True, baseline: str = "none",
                   baseline_decay: float = 0.99,
                   kl_penalty: KLPenalty | None = None, training: bool = False) -> Estimator:
  """The estimator `estimator` of `objective` (see the module docstring).

  training: True for the train step's loss: a model that writes its own objective
  then uses its `training_objective` where it has one (dropout; models.base);
  False (evaluation, diagnostics), always `objective`.

  kl_penalty: the ELBO's KL term (`objectives.make_kl_penalty`: warm-up, free
  bits, capacity), which replaces `beta`; default beta * KL. Free bits and
  capacity need the closed-form KL (the pathwise estimator with analytic_kl).
  Raises ValueError for an unknown or inapplicable name or setting.
  """
  if objective not in OBJECTIVE_ESTIMATORS:
    raise ValueError(f"unknown objective {objective!r}; valid: {list(OBJECTIVE_ESTIMATORS)}")
  if estimator not in OBJECTIVE_ESTIMATORS[objective]:
    raise ValueError(f"estimator {estimator!r} does not apply to objective {objective!r}; "
                     f"valid: {list(OBJECTIVE_ESTIMATORS[objective])}")
  if baseline not in BASELINES:
    raise ValueError(f"unknown baseline {baseline!r}; valid: {list(BASELINES)}")
  if baseline != "none" and estimator != "score_function":
    raise ValueError(f"baseline={baseline!r} applies to estimator='score_function' only")
  if kl_penalty is not None and kl_penalty.needs_closed_form and not (
      objective == "elbo" and estimator == "pathwise" and analytic_kl):
    raise ValueError("free bits and capacity control need the closed-form KL: objective="
                     "'elbo', estimator='pathwise', analytic_kl=True")
  if estimator == "vimco" and num_samples < 2:
    raise ValueError("vimco needs num_samples >= 2 (its baselines leave one sample out)")
  K = num_samples
  name = display_name(objective, estimator)
  penalty = kl_penalty or make_kl_penalty(beta=beta)

  def ae(model, params, x, *, key, step=0):
    recon = -model.log_likelihood(params, x, model.posterior(params, x).mean)
    return -recon, {"loss": recon, "recon": recon}

  def elbo(model, params, x, *, key, step=0):
    q = model.posterior(params, x)
    z = draw(q, key=key, num_samples=K)
    if estimator == "score_function":
      z = sg(z)  # a plain sample: the encoder learns through log q only
    q_density = jax.tree_util.tree_map(sg, q) if estimator == "stl" else q
    log_px_z, log_qz_x, log_pz = log_terms(model, params, x, z, q_density)
    closed_form = has_closed_form_kl(model)
    if analytic_kl and has_conditional_kl(model) and not closed_form and (
        estimator == "score_function"):
      # The conditional KL's gradient reaches the layers above through the draw.
      raise ValueError(f"{type(model).__name__}'s analytic KL is conditional on a "
                       f"reparameterised draw: use analytic_kl=False with score_function")
    kl_per_dim = (analytic_kl_per_dim(model, params, x, q, z)
                  if closed_form or analytic_kl else None)
    terms = ElboTerms(log_px_z, log_qz_x, log_pz,
                      kl_term(model, params, x, q, log_qz_x, log_pz, kl_per_dim))
    # STL needs the Monte-Carlo KL: the score term it drops lives in log q.
    if analytic_kl and estimator != "stl":
      value = jnp.mean(terms.log_px_z) - penalty.penalty(kl_per_dim, step)
    else:
      value = jnp.mean(terms.log_px_z) - penalty.weight(step) * jnp.mean(
          terms.log_qz_x - terms.log_pz)
    surrogate = value
    if estimator == "score_function":
      signal = terms.log_px_z
      if not analytic_kl:
        signal = signal + penalty.weight(step) * (terms.log_pz - terms.log_qz_x)
      b, fit_baseline = _baseline(params, x, jnp.mean(signal))
      surrogate = value + jnp.mean(sg(signal - b) * terms.log_qz_x) + fit_baseline
    return surrogate, dict(_metrics(terms.log_px_z, terms.kl), loss=-value)

  def iwae(model, params, x, *, key, step=0):
    q = model.posterior(params, x)
    z = draw(q, key=key, num_samples=K)
    if estimator == "vimco":
      z = sg(z)  # score function: no pathwise gradient through z
    log_px_z, log_qz, log_pz = log_terms(model, params, x, z, q)
    terms = ElboTerms(log_px_z, log_qz, log_pz, kl_term(model, params, x, q, log_qz, log_pz))
    bound = iwae_bound(terms)
    if estimator == "pathwise":
      surrogate = bound
    elif estimator == "stl":
      _, log_qz_sg, _ = log_terms(model, params, x, z, jax.tree_util.tree_map(sg, q))
      surrogate = log_mean_exp(log_px_z + log_pz - log_qz_sg)
    elif estimator in ("dreg", "rws"):
      # Generative model (decoder and any learned prior): the IWAE gradient
      # sum_k w_k grad log p(x, z_k), z held fixed.
      gen_params = _stop_params(params, model.inference_groups, inside=True)
      gen_log_px_z, _, gen_log_pz = log_terms(model, gen_params, x, sg(z), q)
      surrogate = log_mean_exp(gen_log_px_z + gen_log_pz - sg(log_qz))
      weights = sg(jax.nn.softmax(log_px_z + log_pz - log_qz))
      if estimator == "dreg":
        # Encoder: sum_k w_k^2 d log w_k / d z_k dz_k/dphi, log q at fixed parameters.
        enc_params = _stop_params(params, model.inference_groups, inside=False)
        enc_log_px_z, enc_log_qz, enc_log_pz = log_terms(
            model, enc_params, x, z, jax.tree_util.tree_map(sg, q))
        surrogate += jnp.sum(jnp.square(weights) * (enc_log_px_z + enc_log_pz - enc_log_qz))
      else:  # rws wake-phase encoder: sum_k w_k grad log q(z_k | x), z held fixed
        surrogate += jnp.sum(weights * over_samples(q.log_prob, sg(z)))
    else:  # vimco: leave-one-out baselines for each sample's score term
      log_w = log_px_z + log_pz - log_qz
      surrogate = bound + jnp.sum(sg(_vimco_signals(log_w)) * log_qz)
    return surrogate, dict(_metrics(log_px_z, terms.kl, bound), loss=-bound)

  def _baseline(params, x, mean_signal):
    """(b, term whose gradient fits b to the signal); b is zero without a baseline."""
    if baseline == "none":
      return 0.0, 0.0
    if baseline == "moving_average":
      b = params["baseline"]["value"]
    else:
      b = BaselineNet().apply({"params": params["baseline"]}, x)
    return b, -0.5 * jnp.square(b - sg(mean_signal))

  def init_params(key, model):
    if baseline == "moving_average":
      return {"baseline": {"value": jnp.zeros((), jnp.float32)}}
    if baseline == "learned":
      return {"baseline": BaselineNet().init(key, jnp.zeros(model.image_shape))["params"]}
    return {}

  def own(model, params, x, *, key, step=0):
    objective = getattr(model, "training_objective", None) if training else None
    return (objective or model.objective)(params, x, key=key, step=step)

  per_example = {"elbo": elbo, "iwae": iwae, "ae": ae, **dict.fromkeys(OWN_OBJECTIVES, own)}[objective]
  return Estimator(name, per_example, init_params, baseline, baseline_decay)


def _vimco_signals(log_w):
  """L - L_{-k} for each k, L_{-k} replacing log w_k by the mean of the others. [K]."""
  K = log_w.shape[0]
  others_mean = (jnp.sum(log_w) - log_w) / (K - 1)
  replaced = jnp.where(jnp.eye(K, dtype=bool), others_mean[:, None], log_w[None, :])  # [K, K]
  return log_mean_exp(log_w) - jax.vmap(log_mean_exp)(replaced)


def make_optimizer(base: optax.GradientTransformation, estimator: Estimator):
  """`base` for every parameter, except a moving-average baseline's exact EMA update."""
  if estimator.baseline != "moving_average":
    return base
  labels = lambda params: {k: jax.tree_util.tree_map(  # noqa: E731
      lambda _: "ema" if k == "baseline" else "main", v) for k, v in params.items()}
  return optax.multi_transform(
      {"main": base, "ema": optax.sgd(1.0 - estimator.baseline_decay)}, labels)

"""Recurrent sequence VAEs (VRAE, sentence VAE, RNN LM): masking, a Python-loop
reference, sampled paths, word dropout, the sigmoid warm-up and collapse metrics."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vaejax import distributions, estimators, evaluate, nets, objectives, tokens, training
from vaejax.models import recurrent

VOCAB = tokens.vocabulary("names")


def _tokens(word, length=14):
  return {"tokens": jnp.asarray(tokens.encode([word], VOCAB, length)[0], jnp.int32)}


def _token_model(length=14, **kwargs):
  settings = dict(latent_dim=3, vocab_size=len(VOCAB), hidden=8, embed_dim=5)
  settings.update(kwargs)
  return recurrent.make_sequence_vae(image_shape=(length,), **settings)


def _elbo_and_grads(model, params, x, key=jax.random.PRNGKey(3)):
  estimator = estimators.make_estimator("elbo", "pathwise")
  value = lambda p: estimator.per_example(model, p, x, key=key)[0]  # noqa: E731
  return jax.value_and_grad(value)(params)


def _assert_trees_close(a, b, **tol):
  jax.tree_util.tree_map(lambda u, v: np.testing.assert_allclose(u, v, **tol), a, b)


def test_token_encoding_round_trips_and_masks_up_to_the_first_eos():
  ids = tokens.encode(["ANN", "BO"], VOCAB, 6)
  assert ids.tolist() == [[4, 17, 17, tokens.EOS, 0, 0], [5, 18, tokens.EOS, 0, 0, 0]]
  assert [tokens.decode(r, VOCAB) for r in ids] == ["ANN", "BO"]
  garbage = np.array([4, tokens.EOS, 9, tokens.EOS, 7])
  np.testing.assert_array_equal(tokens.valid_mask(jnp.asarray(garbage)), [1, 1, 0, 0, 0])
  with pytest.raises(ValueError, match="needs 7 steps"):
    tokens.encode(["ABCDEF"], VOCAB, 6)
  with pytest.raises(ValueError, match="outside the vocabulary"):
    tokens.encode(["A-B"], VOCAB, 6)


def test_padded_steps_change_neither_the_loss_nor_the_gradients():
  model = _token_model()
  params = model.init(jax.random.PRNGKey(0))
  x = _tokens("MILLER")
  value, grads = _elbo_and_grads(model, params, x)
  # Anything after the EOS is padding: other ids there change nothing.
  noisy = {"tokens": x["tokens"].at[8:].set(jnp.array([5, 9, tokens.EOS, 20, 3, 1]))}
  noisy_value, noisy_grads = _elbo_and_grads(model, params, noisy)
  assert float(noisy_value) == pytest.approx(float(value), abs=1e-6)
  _assert_trees_close(noisy_grads, grads, atol=1e-6)
  # Nor does a longer padded length (same params: they do not depend on T).
  longer = _token_model(length=20)
  long_value, long_grads = _elbo_and_grads(longer, params, _tokens("MILLER", 20))
  assert float(long_value) == pytest.approx(float(value), abs=1e-5)
  _assert_trees_close(long_grads, grads, atol=1e-5)
  # While the scored steps do matter.
  assert abs(float(_elbo_and_grads(model, params, _tokens("MILLET"))[0]) - float(value)) > 1e-3


def _reference_token_terms(model, params, word, z):
  """log p(x|z) and q's (mean, log_var) by Python loops over the characters, one
  Flax GRUCell step at a time: the definition, written independently."""
  cell = nn.GRUCell(features=model.hidden)
  ids = [VOCAB.index(c) for c in word] + [tokens.EOS]
  enc, dec = params["encoder"], params["decoder"]
  h = jnp.zeros(model.hidden)
  for i in ids:
    h, _ = cell.apply({"params": enc["cell"]}, h, enc["embed"][i])
  head = enc["head"]
  mean = h @ head["mean"]["kernel"] + head["mean"]["bias"]
  log_var = nets.soft_clip(h @ head["log_var"]["kernel"] + head["log_var"]["bias"],
                           nets.LOG_VAR_BOUND)
  h = jnp.tanh(z @ dec["initial"]["kernel"] + dec["initial"]["bias"])
  log_px, previous = 0.0, tokens.BOS
  for i in ids:
    h, _ = cell.apply({"params": dec["cell"]}, h, dec["embed"][previous])
    logits = h @ dec["out"]["kernel"] + dec["out"]["bias"]
    log_px = log_px + jax.nn.log_softmax(logits)[i]
    previous = i
  return log_px, mean, log_var


def test_token_model_matches_a_python_loop_reference_in_value_and_gradient():
  model = _token_model()
  params = model.init(jax.random.PRNGKey(1))
  x, z = _tokens("GARCIA"), jnp.array([0.3, -1.2, 0.7])
  log_px, mean, log_var = _reference_token_terms(model, params, "GARCIA", z)
  q = model.posterior(params, x)
  np.testing.assert_allclose(q.mean, mean, atol=1e-5)
  np.testing.assert_allclose(q.log_var, log_var, atol=1e-5)
  assert float(model.log_likelihood(params, x, z)) == pytest.approx(float(log_px), abs=1e-4)
  # The per-example ELBO at a fixed reparameterisation noise, by value and gradient.
  eps = jnp.array([0.5, 0.1, -0.4])

  def elbo(p, loop):
    if loop:
      _, m, lv = _reference_token_terms(model, p, "GARCIA", jnp.zeros(3))
      zz = m + jnp.exp(0.5 * lv) * eps
      log_px_z = _reference_token_terms(model, p, "GARCIA", zz)[0]
      kl = 0.5 * jnp.sum(jnp.square(m) + jnp.exp(lv) - 1.0 - lv)
      return log_px_z - kl
    qq = model.posterior(p, x)
    zz = qq.mean + jnp.exp(0.5 * qq.log_var) * eps
    return model.log_likelihood(p, x, zz) - jnp.sum(model.kl_per_dim(p, x, qq))

  value, grads = jax.value_and_grad(elbo)(params, False)
  ref_value, ref_grads = jax.value_and_grad(elbo)(params, True)
  assert float(value) == pytest.approx(float(ref_value), abs=1e-4)
  _assert_trees_close(grads, ref_grads, atol=1e-4)


def test_row_model_with_an_lstm_and_z_at_every_step_matches_a_loop_reference():
  model = recurrent.make_sequence_vae(image_shape=(6, 5, 1), latent_dim=2, hidden=7,
                                      cell="lstm", latent_feed="every_step")
  params = model.init(jax.random.PRNGKey(2))
  image = jax.random.bernoulli(jax.random.PRNGKey(3), 0.4, (6, 5, 1)).astype(jnp.float32)
  z = jnp.array([0.4, -0.9])
  cell, dec = nn.OptimizedLSTMCell(features=7), params["decoder"]
  h = jnp.tanh(z @ dec["initial"]["kernel"] + dec["initial"]["bias"])
  carry, previous, log_px = (jnp.zeros(7), h), jnp.zeros(5), 0.0
  for row in image[..., 0]:
    carry, out = cell.apply({"params": dec["cell"]}, carry, jnp.concatenate([previous, z]))
    logits = out @ dec["out"]["kernel"] + dec["out"]["bias"]
    log_px += jnp.sum(row * jax.nn.log_sigmoid(logits) + (1 - row) * jax.nn.log_sigmoid(-logits))
    previous = row
  assert float(model.log_likelihood(params, image, z)) == pytest.approx(float(log_px), abs=1e-4)


@pytest.mark.parametrize("kind", ["tokens", "rows", "rows_no_input"])
@pytest.mark.parametrize("greedy", [False, True])
def test_teacher_forced_likelihood_is_the_sum_of_the_sampled_paths_step_log_probs(kind, greedy):
  if kind == "tokens":
    model = _token_model()
  else:
    model = recurrent.make_sequence_vae(image_shape=(7, 4, 1), latent_dim=3, hidden=8,
                                        decoder_input="previous" if kind == "rows" else "none")
  params = model.init(jax.random.PRNGKey(4))
  z = jnp.array([1.0, -0.5, 0.2])
  path = model.ancestral_sample(params, z, key=jax.random.PRNGKey(5), greedy=greedy)
  expected = jnp.sum(path["mask"] * path["log_prob"])
  got = model.log_likelihood(params, model.as_example(path["sample"]), z)
  assert float(got) == pytest.approx(float(expected), abs=1e-4)


def test_the_rnn_language_model_bounds_are_its_exact_log_likelihood():
  model = _token_model(latent_dim=0)
  params = model.init(jax.random.PRNGKey(6))
  assert params["encoder"] == {}
  x = _tokens("LOPEZ")
  exact = model.log_likelihood(params, x, jnp.zeros(0))
  key = jax.random.PRNGKey(7)
  elbo = estimators.make_estimator("elbo", "pathwise").per_example(model, params, x, key=key)
  iwae = estimators.make_estimator("iwae", "pathwise", num_samples=3).per_example(
      model, params, x, key=key)
  assert -float(elbo[1]["loss"]) == pytest.approx(float(exact), abs=1e-5)
  assert -float(iwae[1]["loss"]) == pytest.approx(float(exact), abs=1e-5)
  log_px = evaluate.importance_log_likelihood(
      model, params, {"tokens": x["tokens"][None]}, key=key, num_samples=4, chunk_size=2,
      batch_size=1)
  assert float(log_px[0]) == pytest.approx(float(exact), abs=1e-5)


def test_word_dropout_replaces_decoder_inputs_by_unk_at_its_rate():
  batch = {"tokens": jnp.asarray(tokens.encode(["SMITH"] * 400, VOCAB, 14))}
  plain = training.make_preprocess(1, False)(batch, key=jax.random.PRNGKey(0))
  assert "keep" not in plain and plain["tokens"].dtype == jnp.int32
  dropped = training.make_preprocess(1, False, 0.3)(batch, key=jax.random.PRNGKey(0))
  assert dropped["keep"].shape == (400, 14)
  assert 0.27 < 1 - float(dropped["keep"].mean()) < 0.33
  # Per example: an example's draw does not depend on where the batch is cut.
  tail = training.make_preprocess(1, False, 0.3)(
      {"tokens": batch["tokens"][200:]}, key=jax.random.PRNGKey(0), example_offset=200)
  np.testing.assert_array_equal(tail["keep"], dropped["keep"][200:])
  # An image batch becomes {"image", "keep"} with one entry per row.
  images = training.make_preprocess(1, False, 0.5)(jnp.ones((3, 28, 28, 1), jnp.uint8),
                                                   key=jax.random.PRNGKey(1))
  assert images["keep"].shape == (3, 28) and images["image"].dtype == jnp.float32
  # The model: keeping everything is no dropout; dropping input t is feeding UNK there.
  model = _token_model()
  params = model.init(jax.random.PRNGKey(8))
  x, z = _tokens("SMITH"), jnp.array([0.1, 0.2, 0.3])
  full = model.log_likelihood(params, x, z)
  assert float(model.log_likelihood(params, {**x, "keep": jnp.ones(14)}, z)) == float(full)
  keep = jnp.ones(14).at[3].set(0.0).at[0].set(0.0)  # input 0 (BOS) is never dropped
  dropped_logits = model.logits(params, {**x, "keep": keep}, z)
  logits = model.logits(params, x, z)
  np.testing.assert_allclose(dropped_logits[:3], logits[:3], atol=1e-6)
  assert float(jnp.abs(dropped_logits[3] - logits[3]).max()) > 1e-4
  # Feeding UNK at input 3 by hand (through a model whose data hold UNK there) agrees.
  ids = jnp.concatenate([jnp.array([tokens.BOS]), x["tokens"][:-1]]).at[3].set(tokens.UNK)
  carry = model._initial_carry(params, z)
  _, outs = model.recurrence.scan(params["decoder"]["cell"], carry,
                                  params["decoder"]["embed"][ids])
  np.testing.assert_allclose(dropped_logits, outs @ params["decoder"]["out"]["kernel"]
                             + params["decoder"]["out"]["bias"], atol=1e-5)


def test_sigmoid_warmup_runs_from_zero_to_beta_through_half_at_midpoint():
  penalty = objectives.make_kl_penalty(beta=2.0, warmup_steps=100, warmup_shape="sigmoid")
  weights = np.array([float(penalty.weight(t)) for t in range(0, 201, 10)])
  assert weights[0] == 0.0 and weights[5] == pytest.approx(1.0) and weights[10] == pytest.approx(2.0)
  assert np.all(np.diff(weights) >= 0) and np.all(weights[10:] == weights[10])
  # Slower than linear early on, faster in the middle.
  linear = objectives.make_kl_penalty(beta=2.0, warmup_steps=100)
  assert float(penalty.weight(10)) < float(linear.weight(10))
  rise = lambda p: float(p.weight(60)) - float(p.weight(40))  # noqa: E731
  assert rise(penalty) > 1.5 * rise(linear)
  with pytest.raises(ValueError, match="warmup_shape"):
    objectives.make_kl_penalty(warmup_steps=10, warmup_shape="cosine")


class _GivenPosterior:
  """q(z|x) = N(x["mean"], exp(x["log_var"])): collapse metrics with known answers."""
  def posterior(self, params, x):
    return distributions.DiagGaussian(x["mean"], x["log_var"])


def test_mutual_information_is_zero_when_q_ignores_x_and_log_n_when_it_identifies_x():
  model, n = _GivenPosterior(), 64
  same = {"mean": jnp.ones((n, 2)), "log_var": jnp.zeros((n, 2))}
  out = evaluate.collapse_metrics(model, None, same, key=jax.random.PRNGKey(0), batch_size=16)
  assert float(out["mutual_information"]) == pytest.approx(0.0, abs=1e-5)
  assert int(out["active_units"]) == 0
  apart = {"mean": 50.0 * jnp.stack([jnp.arange(n), -jnp.arange(n)], 1).astype(jnp.float32),
           "log_var": jnp.zeros((n, 2))}
  out = evaluate.collapse_metrics(model, None, apart, key=jax.random.PRNGKey(0), batch_size=16)
  assert float(out["mutual_information"]) == pytest.approx(np.log(n), abs=1e-4)
  assert int(out["active_units"]) == 2
  assert float(out["kl"]) >= float(out["mutual_information"])


def test_dataset_metrics_report_the_decoders_accuracy_under_prior_z(monkeypatch):
  model = _token_model()
  params = model.init(jax.random.PRNGKey(9))
  examples = {"tokens": jnp.asarray(tokens.encode(["SMITH", "JONES", "LI"] * 3, VOCAB, 14),
                                    jnp.int32)}
  metrics = model.dataset_metrics(params, examples)
  at_mean, at_prior = [], []
  for i, t in enumerate(examples["tokens"]):
    x = {"tokens": t}
    at_mean.append(float(model.next_step_accuracy(params, x, model.posterior(params, x).mean)))
    z = model.prior().sample(key=jax.random.fold_in(jax.random.PRNGKey(recurrent.PRIOR_Z_KEY), i))
    at_prior.append(float(model.next_step_accuracy(params, x, z)))
  assert metrics["next_step_accuracy"] == pytest.approx(np.mean(at_mean), abs=1e-6)
  assert metrics["next_step_accuracy_prior_z"] == pytest.approx(np.mean(at_prior), abs=1e-6)
  # Accuracy counts the scored steps only: all six of "SMITH" + EOS right scores 1.
  right = jax.nn.one_hot(examples["tokens"][0], len(VOCAB)) * 100.0  # predicts every target
  monkeypatch.setattr(recurrent.SequenceVAE, "logits", lambda self, p, x, z: right)
  assert float(model.next_step_accuracy(params, {"tokens": examples["tokens"][0]}, None)) == 1.0
  monkeypatch.setattr(recurrent.SequenceVAE, "logits", lambda self, p, x, z: -right)
  assert float(model.next_step_accuracy(params, {"tokens": examples["tokens"][0]}, None)) == 0.0

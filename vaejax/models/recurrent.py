"""Recurrent sequence VAEs: the variational recurrent autoencoder (Fabius & van
Amersfoort 2014) and the sentence VAE (Bowman et al. 2016, "Generating
sentences from a continuous space").

An RNN encoder reads the sequence and its final hidden state gives q(z|x); an
RNN decoder whose initial state is tanh(W z + b) (and, with latent_feed
'every_step', which reads z at every step) gives p(x|z) = prod_t p(x_t | x_<t, z)
under teacher forcing (decoder_input 'previous', Bowman's decoder), or
prod_t p(x_t | z) when it reads no previous step (decoder_input 'none': the
latent alone drives the recurrence). With latent_dim = 0 the model is the RNN
language model p(x) = prod_t p(x_t | x_<t) that Bowman et al. compare against:
every bound equals log p(x) exactly.

Two kinds of sequence, both ONE example:
  rows    an image [H, W, C] read as H steps of W*C Bernoulli pixels
          (sequential MNIST: 28 rows of 28 pixels)
  tokens  {"tokens": int [T]}: characters, EOS, padding (vaejax.tokens); the
          steps up to the first EOS are scored, a categorical per step
A training batch may carry "keep" [T] (word dropout, made by the train step's
preprocessing): a decoder input where keep is 0 is replaced by UNK (a zero
row for images, which a blank row also is). Evaluation never drops.

Params: {"encoder": {"embed", "cell", "head"}, "decoder": {"embed", "initial",
"cell", "out"}} ("embed" for tokens only; the encoder is empty at latent_dim 0).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from vaejax import distributions, nets, recurrent_nets, tokens
from vaejax.models.base import Example, Params, image_of

OBSERVATIONS = ("rows", "tokens")
DECODER_INPUTS = ("previous", "none")
LATENT_FEEDS = ("initial", "every_step")
# The fixed key of dataset_metrics' prior draws: every evaluation of a run draws the same z.
PRIOR_Z_KEY = 0


@dataclasses.dataclass(frozen=True)
class SequenceVAE:
  """A recurrent VAE over sequences of `length` steps (see the module docstring).

  Attributes:
    observation: 'rows' (Bernoulli pixels per step) or 'tokens' (categorical).
    image_shape: (H, W, C) for rows (H steps of W*C pixels); (T,) for tokens.
    latent_dim: dimension of z; 0 for the RNN language model.
    vocab_size: number of token ids (tokens only).
    hidden: units of the encoder's and the decoder's cell.
    embed_dim: token embedding width (tokens only; rows enter as they are).
    cell: 'gru' or 'lstm' (Flax's cells).
    decoder_input: 'previous' (teacher forcing on x_{t-1}) or 'none'.
    latent_feed: 'initial' (z sets the decoder's initial state) or 'every_step'
      (also concatenated to every decoder input).
  """
  observation: str
  image_shape: tuple
  latent_dim: int
  vocab_size: int
  hidden: int
  embed_dim: int
  cell: str = "gru"
  decoder_input: str = "previous"
  latent_feed: str = "initial"
  inference_groups: tuple[str, ...] = ("encoder",)
  # models.base: decoded by ancestral_sample, step by step, for pictures and decode.
  autoregressive: ClassVar[bool] = True

  @property
  def length(self) -> int:
    return int(self.image_shape[0])

  @property
  def step_dim(self) -> int:
    """Outputs per step: W*C pixel logits, or vocab_size token logits."""
    if self.observation == "tokens":
      return self.vocab_size
    return int(np.prod(self.image_shape[1:]))

  @property
  def recurrence(self) -> recurrent_nets.Recurrence:
    return recurrent_nets.Recurrence(self.cell, self.hidden)

  def _input_dim(self) -> int:
    return self.embed_dim if self.observation == "tokens" else self.step_dim

  def init(self, key: jax.Array) -> Params:
    keys = iter(jax.random.split(key, 7))
    rnn = self.recurrence
    encoder = {}
    if self.latent_dim:
      encoder = {"cell": rnn.init(next(keys), self._input_dim()),
                 "head": nets.GaussianHead(self.latent_dim).init(
                     next(keys), jnp.zeros(self.hidden))["params"]}
      if self.observation == "tokens":
        encoder["embed"] = recurrent_nets.embedding_init(next(keys), self.vocab_size, self.embed_dim)
    reads = (self._input_dim() if self.decoder_input == "previous" else 0) + (
        self.latent_dim if self.latent_feed == "every_step" else 0) or 1
    decoder = {"initial": recurrent_nets.dense_init(next(keys), self.latent_dim, self.hidden),
               "cell": rnn.init(next(keys), reads),
               "out": recurrent_nets.dense_init(next(keys), self.hidden, self.step_dim)}
    if self.observation == "tokens" and self.decoder_input == "previous":
      decoder["embed"] = recurrent_nets.embedding_init(next(keys), self.vocab_size, self.embed_dim)
    return {"encoder": encoder, "decoder": decoder}

  # The sequence of one example.
  def targets(self, x: Example) -> jax.Array:
    """The observed steps: pixels float [T, W*C] or token ids int [T]."""
    if self.observation == "tokens":
      return x["tokens"]
    return image_of(x).reshape(self.length, -1)

  def mask(self, x: Example) -> jax.Array:
    """1.0 at the scored steps: [T] (up to the first EOS for tokens, all for rows)."""
    if self.observation == "tokens":
      return tokens.valid_mask(x["tokens"])
    return jnp.ones(self.length)

  def num_steps(self, x: Example) -> jax.Array:
    """Scored steps of x: [] (the tokens a perplexity averages over, EOS included)."""
    return jnp.sum(self.mask(x))

  # Inference.
  def prior(self, params: Params = None, x: Example = None) -> distributions.DiagGaussian:
    return distributions.standard_normal(self.latent_dim)

  def log_prior(self, params: Params, x: Example, z: jax.Array) -> jax.Array:
    return self.prior().log_prob(z)

  def posterior(self, params: Params, x: Example) -> distributions.DiagGaussian:
    """q(z|x) from the encoder's hidden state after the last scored step."""
    if not self.latent_dim:
      return distributions.DiagGaussian(jnp.zeros((0,)), jnp.zeros((0,)))
    enc = params["encoder"]
    steps = self.targets(x)
    steps = jnp.take(enc["embed"], steps, axis=0) if self.observation == "tokens" else steps
    rnn = self.recurrence
    carry, _ = rnn.scan(enc["cell"], rnn.with_hidden(jnp.zeros(self.hidden)), steps, self.mask(x))
    mean, log_var = nets.GaussianHead(self.latent_dim).apply({"params": enc["head"]},
                                                             rnn.hidden(carry))
    return distributions.DiagGaussian(mean, log_var)

  def kl_per_dim(self, params: Params, x: Example, q: distributions.DiagGaussian) -> jax.Array:
    return q.kl_to_standard_normal_per_dim()

  # Generation.
  def _embed_input(self, params, previous: jax.Array, z: jax.Array) -> jax.Array:
    """The decoder's input at a step from the previous step's value ([...] ids or
    [..., W*C] pixels) and z: [..., reads]."""
    parts = []
    if self.decoder_input == "previous":
      parts.append(jnp.take(params["decoder"]["embed"], previous, axis=0) if self.observation == "tokens"
                   else previous)
    lead = previous.shape[:-1] if self.observation == "rows" else previous.shape
    if self.latent_feed == "every_step":
      parts.append(jnp.broadcast_to(z, lead + z.shape))
    # A decoder that reads nothing still steps: a constant input (Flax cells need one).
    return jnp.concatenate(parts, -1) if parts else jnp.ones(lead + (1,))

  def _initial_carry(self, params, z: jax.Array):
    h0 = jnp.tanh(recurrent_nets.dense(params["decoder"]["initial"], z))
    return self.recurrence.with_hidden(h0)

  def logits(self, params: Params, x: Example, z: jax.Array) -> jax.Array:
    """Teacher-forced per-step logits [T, step_dim] of p(x_t | x_<t, z)."""
    target = self.targets(x)
    if self.observation == "tokens":
      previous = jnp.concatenate([jnp.array([tokens.BOS], target.dtype), target[:-1]])
    else:
      previous = jnp.concatenate([jnp.zeros_like(target[:1]), target[:-1]])
    if isinstance(x, dict) and "keep" in x:  # word dropout; the first input is never dropped
      keep = x["keep"].at[0].set(1.0)
      previous = (jnp.where(keep > 0, previous, tokens.UNK) if self.observation == "tokens"
                  else previous * keep[:, None])
    _, outputs = self.recurrence.scan(params["decoder"]["cell"], self._initial_carry(params, z),
                                      self._embed_input(params, previous, z))
    return recurrent_nets.dense(params["decoder"]["out"], outputs)

  def step_log_probs(self, logits: jax.Array, target: jax.Array) -> jax.Array:
    """log p(x_t | ...) per step [T] from logits [T, step_dim] and the targets."""
    if self.observation == "tokens":
      return jnp.take_along_axis(jax.nn.log_softmax(logits), target[:, None], axis=-1)[:, 0]
    return jnp.sum(distributions.bernoulli_log_density(logits, target), axis=-1)

  def log_likelihood(self, params: Params, x: Example, z: jax.Array) -> jax.Array:
    """log p(x|z) in nats, summed over the scored steps: []."""
    log_probs = self.step_log_probs(self.logits(params, x, z), self.targets(x))
    return jnp.sum(self.mask(x) * log_probs)

  def mean_image(self, params: Params, x: Example, z: jax.Array) -> jax.Array:
    """Teacher-forced means: pixel probabilities [H, W, C] for rows (each row given
    x's rows above it), token probabilities [T, vocab_size] for tokens."""
    logits = self.logits(params, x, z)
    if self.observation == "tokens":
      return jax.nn.softmax(logits)
    return jax.nn.sigmoid(logits).reshape(self.image_shape)

  def ancestral_sample(self, params: Params, z: jax.Array, *, key: jax.Array,
               greedy: bool = False) -> dict[str, jax.Array]:
    """Ancestral sampling from p(x|z), each step's value fed back as the next input.

    Returns "sample" (ids int32 [T], or pixels float [T, W*C]), "mean" (the
    step's probabilities given the sampled prefix: [T, step_dim]), "log_prob"
    [T] (log p of each sampled step) and "mask" [T] (steps up to the first EOS).
    greedy takes the most probable value at each step instead of a draw.
    """
    rnn = self.recurrence
    if self.observation == "tokens":
      first = jnp.array(tokens.BOS, jnp.int32)
    else:
      first = jnp.zeros(self.step_dim)

    def body(state, step_key):
      carry, previous = state
      carry, h = rnn.step(params["decoder"]["cell"], carry, self._embed_input(params, previous, z))
      logits = recurrent_nets.dense(params["decoder"]["out"], h)
      if self.observation == "tokens":
        value = (jnp.argmax(logits) if greedy else jax.random.categorical(step_key, logits))
        value = value.astype(jnp.int32)
        log_prob, mean = jax.nn.log_softmax(logits)[value], jax.nn.softmax(logits)
      else:
        mean = jax.nn.sigmoid(logits)
        value = ((logits > 0) if greedy else jax.random.bernoulli(step_key, mean)).astype(jnp.float32)
        log_prob = jnp.sum(distributions.bernoulli_log_density(logits, value))
      return (carry, value), (value, mean, log_prob)

    _, (sample, mean, log_prob) = jax.lax.scan(
        body, (self._initial_carry(params, z), first), jax.random.split(key, self.length))
    mask = tokens.valid_mask(sample) if self.observation == "tokens" else jnp.ones(self.length)
    return {"sample": sample, "mean": mean, "log_prob": log_prob, "mask": mask}

  def as_example(self, sample: jax.Array) -> Example:
    """A generated "sample" as an example of this model's data."""
    if self.observation == "tokens":
      return {"tokens": sample}
    return sample.reshape(self.image_shape)

  # Diagnostics of posterior collapse.
  def next_step_accuracy(self, params: Params, x: Example, z: jax.Array) -> jax.Array:
    """Share of scored steps (tokens) or pixels (rows) whose most probable
    teacher-forced prediction given z is the observed one: []."""
    logits, target, mask = self.logits(params, x, z), self.targets(x), self.mask(x)
    if self.observation == "tokens":
      return jnp.sum(mask * (jnp.argmax(logits, -1) == target)) / jnp.sum(mask)
    return jnp.mean((logits > 0) == (target > 0.5))

  def dataset_metrics(self, params: Params, examples: Any) -> dict[str, float]:
    """Over a split: next_step_accuracy at the posterior mean, and at z ~ p(z)
    (_prior_z; one draw per example from the fixed key PRIOR_Z_KEY). A decoder
    that ignores z scores the same with both: Bowman et al.'s sign of collapse."""
    if not self.latent_dim:
      return {}
    n = jax.tree_util.tree_leaves(examples)[0].shape[0]
    sums = np.zeros(2)
    for start in range(0, n, 500):
      chunk = jax.tree_util.tree_map(lambda a: a[start:start + 500], examples)
      keys = jax.vmap(jax.random.fold_in, (None, 0))(
          jax.random.PRNGKey(PRIOR_Z_KEY), jnp.arange(start, min(n, start + 500)))
      sums += np.asarray(jax.device_get(_accuracies(self, params, chunk, keys)))  # host sync
    return {"next_step_accuracy": float(sums[0] / n),
            "next_step_accuracy_prior_z": float(sums[1] / n)}


@functools.partial(jax.jit, static_argnames="model")
def _accuracies(model: SequenceVAE, params: Params, chunk, keys) -> jax.Array:
  def one(x, key):
    at_mean = model.next_step_accuracy(params, x, model.posterior(params, x).mean)
    at_prior = model.next_step_accuracy(params, x, model.prior().sample(key=key))
    return jnp.stack([at_mean, at_prior])
  return jnp.sum(jax.vmap(one)(chunk, keys), axis=0)


def make_sequence_vae(*, image_shape, latent_dim: int, vocab_size: int = 0, hidden: int = 256,
                      embed_dim: int = 64, cell: str = "gru", decoder_input: str = "previous",
                      latent_feed: str = "initial") -> SequenceVAE:
  """A SequenceVAE over rows (image_shape (H, W, C)) or tokens (image_shape (T,),
  vocab_size > 0). Raises ValueError naming a bad choice."""
  image_shape = tuple(int(d) for d in image_shape)
  observation = "tokens" if len(image_shape) == 1 else "rows"
  if observation == "tokens" and vocab_size <= 0:
    raise ValueError("a token sequence model needs vocab_size > 0")
  if decoder_input not in DECODER_INPUTS:
    raise ValueError(f"unknown decoder_input {decoder_input!r}; valid: {list(DECODER_INPUTS)}")
  if latent_feed not in LATENT_FEEDS:
    raise ValueError(f"unknown latent_feed {latent_feed!r}; valid: {list(LATENT_FEEDS)}")
  recurrent_nets.Recurrence(cell, hidden)  # validates the cell
  return SequenceVAE(observation, image_shape, int(latent_dim), int(vocab_size), int(hidden),
                     int(embed_dim), cell, decoder_input, latent_feed)

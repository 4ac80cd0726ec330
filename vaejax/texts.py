"""Text written from a trained sequence model over a character corpus: prior
samples (greedy and stochastic), reconstructions, and Bowman et al.'s (2016)
homotopies, the greedy decodings of points on the line between two encoded
sequences. Models are `vaejax.models.recurrent.SequenceVAE` on tokens."""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from vaejax import tokens

HOMOTOPY_STEPS = 7


def decode_all(model, params, zs: jax.Array, *, key: jax.Array, greedy: bool) -> jax.Array:
  """Token ids [N, T] generated from each z of zs [N, latent_dim]."""
  keys = jax.random.split(key, zs.shape[0])
  return jax.vmap(lambda z, k: model.ancestral_sample(params, z, key=k, greedy=greedy)["sample"])(zs, keys)


def homotopy(model, params, x0, x1, *, num_steps: int = HOMOTOPY_STEPS) -> jax.Array:
  """Greedy decodings [num_steps, T] of z = (1 - a) mu(x0) + a mu(x1), a from 0 to 1,
  mu the posterior mean."""
  mu0, mu1 = model.posterior(params, x0).mean, model.posterior(params, x1).mean
  alphas = jnp.linspace(0.0, 1.0, num_steps)[:, None]
  return decode_all(model, params, (1 - alphas) * mu0 + alphas * mu1, key=jax.random.PRNGKey(0),
                    greedy=True)


def run_texts(model, params, test_examples, vocab, *, key: jax.Array, num: int = 10) -> str:
  """The report as text (UNK, which a draw can produce, shows as '_'): num prior
  draws (greedy, then three stochastic decodings each), num test sequences with their greedy reconstructions from the posterior
  mean, and three homotopies between test sequences."""
  words = lambda ids: [tokens.decode(row, vocab) for row in np.asarray(ids)]  # noqa: E731
  prior_key, sample_key, pair_key = jax.random.split(key, 3)
  lines = []
  if model.latent_dim:
    zs = jax.vmap(lambda k: model.prior().sample(key=k))(jax.random.split(prior_key, num))
  else:
    zs = jnp.zeros((num, 0))
  greedy = words(decode_all(model, params, zs, key=sample_key, greedy=True))
  stochastic = [words(decode_all(model, params, zs, key=jax.random.fold_in(sample_key, s),
                                 greedy=False)) for s in range(1, 4)]
  lines.append("# Prior samples z ~ p(z): greedy | three stochastic decodings" if model.latent_dim
               else "# Samples (no latent): greedy | three stochastic decodings")
  lines += [f"{g:<14} | " + " ".join(f"{s[i]:<14}" for s in stochastic)
            for i, g in enumerate(greedy)]
  if not model.latent_dim:
    return "\n".join(lines) + "\n"
  n = jax.tree_util.tree_leaves(test_examples)[0].shape[0]
  chosen = np.linspace(0, n - 1, num).round().astype(int)
  inputs = jax.tree_util.tree_map(lambda a: a[chosen], test_examples)
  means = jax.vmap(lambda x: model.posterior(params, x).mean)(inputs)
  recon = words(decode_all(model, params, means, key=sample_key, greedy=True))
  lines.append("\n# Test sequences -> greedy decoding from the posterior mean")
  lines += [f"{w:<14} -> {r}" for w, r in zip(words(inputs["tokens"]), recon)]
  lines.append(f"\n# Homotopies: greedy decodings on the line between two posterior means "
               f"({HOMOTOPY_STEPS} points)")
  pairs = np.asarray(jax.random.choice(pair_key, n, (3, 2), replace=False))
  for i, j in pairs:
    x0 = jax.tree_util.tree_map(lambda a: a[i], test_examples)
    x1 = jax.tree_util.tree_map(lambda a: a[j], test_examples)
    lines.append(" -> ".join(words(homotopy(model, params, x0, x1))))
  return "\n".join(lines) + "\n"


def write_run_texts(config, model, params, test_examples, workdir, *, key: jax.Array) -> dict:
  """samples.txt in workdir (run_texts, with the corpus's vocabulary); returns {}
  (no picture grids)."""
  text = run_texts(model, params, test_examples, tokens.vocabulary(config.dataset), key=key)
  with open(os.path.join(workdir, "samples.txt"), "w") as f:
    f.write(text)
  return {}

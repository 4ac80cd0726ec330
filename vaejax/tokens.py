"""Token conventions of the character corpora: special ids, vocabularies, masks.

A text example is {"tokens": int [T]}: the characters' ids, then EOS, then PAD
up to the corpus's fixed length T. The steps a model scores are those up to and
including the first EOS (`valid_mask`), so whatever follows it (padding, or
anything else) changes no loss and no gradient. BOS starts the decoder's input
and UNK replaces a dropped input token (word dropout, Bowman et al. 2016); the
data never hold either.
"""
from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
import numpy as np

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
# Characters of each corpus (vaejax.corpora), in id order after the specials.
ALPHABETS = {"names": "ABCDEFGHIJKLMNOPQRSTUVWXYZ"}


def vocabulary(corpus: str) -> tuple[str, ...]:
  """The corpus's tokens, indexed by id: SPECIALS, then its characters.
  Raises ValueError naming the corpora for an unknown one."""
  if corpus not in ALPHABETS:
    raise ValueError(f"unknown corpus {corpus!r}; valid: {sorted(ALPHABETS)}")
  return SPECIALS + tuple(ALPHABETS[corpus])


def valid_mask(tokens):
  """1.0 at the steps up to and including the first EOS, 0.0 after: [T] -> [T]
  (all ones when there is no EOS)."""
  eos_before = jnp.cumsum(tokens == EOS) - (tokens == EOS)  # EOS strictly before each step
  return (eos_before == 0).astype(jnp.float32)


def encode(words: Sequence[str], vocab: Sequence[str], length: int) -> np.ndarray:
  """Words -> uint8 ids [N, length]: characters, EOS, PAD. Raises ValueError for a
  word too long for `length` or a character outside the vocabulary."""
  index = {c: i for i, c in enumerate(vocab) if i >= len(SPECIALS)}
  out = np.full((len(words), length), PAD, np.uint8)
  for n, word in enumerate(words):
    if len(word) + 1 > length:
      raise ValueError(f"{word!r} needs {len(word) + 1} steps with its EOS; the length is {length}")
    unknown = sorted(set(word) - set(index))
    if unknown:
      raise ValueError(f"{word!r} has characters outside the vocabulary: {unknown}")
    out[n, :len(word)] = [index[c] for c in word]
    out[n, len(word)] = EOS
  return out


def decode(ids, vocab: Sequence[str]) -> str:
  """ids [T] -> the string up to the first EOS (PAD, BOS dropped; UNK shown as '_')."""
  chars = []
  for i in np.asarray(ids).tolist():
    if i == EOS:
      break
    if i == UNK:
      chars.append("_")
    elif i >= len(SPECIALS):
      chars.append(vocab[i])
  return "".join(chars)

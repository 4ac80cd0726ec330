"""Character corpora that ship inside packages from the registry, as token arrays.

`names`: the 88,799 surnames of the 1990 US census, the file `dist.all.last`
of the `names` package on PyPI (`pip install names`), one per line with its
frequency rank, A-Z only, 2 to 13 characters. Split by line index i (0 for the
most frequent name), deterministically: i mod 10 == 8 is validation, == 9 is
test, the rest (80%) train, so every split spans common and rare names alike;
each split is then put in a fixed random order (SHUFFLE_SEED), so that a prefix
(train_subset) is a random sample, not the most common names. Each name is one
example {"tokens": [T]} with T = 14 (13 characters and EOS; vaejax.tokens), and
the same name never appears in two splits. VAEJAX_NAMES_FILE, when set, names a
file of the same format to read instead of the package's.
"""
from __future__ import annotations

import importlib.resources
import os
from typing import Optional

import numpy as np

from vaejax import tokens
from vaejax.data import Dataset, DataError

CORPORA = tuple(tokens.ALPHABETS)
# Each corpus: (package, file in it, sequence length T including EOS).
_SOURCES = {"names": ("names", "dist.all.last", 14)}
_SPLIT_RESIDUES = {"validation": (8,), "test": (9,), "train": tuple(range(8))}
SHUFFLE_SEED = 0


def example_shape(corpus: str) -> tuple[int]:
  """(T,): the token sequence length of the corpus's examples, EOS included."""
  return (_SOURCES[corpus][2],)


def read_words(corpus: str, path: Optional[str] = None) -> list[str]:
  """The corpus's words in file order (by frequency rank), from `path` or the
  installed package. Raises DataError when neither is there."""
  package, filename, _ = _SOURCES[corpus]
  if path is None:
    try:
      resource = importlib.resources.files(package) / filename
      text = resource.read_text(encoding="ascii")
    except (ModuleNotFoundError, FileNotFoundError) as e:
      raise DataError(f"the {corpus} corpus ships in the {package!r} package, which is not "
                      f"installed ({e}): pip install {package}") from None
  else:
    with open(path, encoding="ascii") as f:
      text = f.read()
  words = [line.split()[0] for line in text.splitlines() if line.strip()]
  if not words:
    raise DataError(f"the {corpus} corpus file {path or filename} holds no words")
  return words


def load(corpus: str, split: str) -> Dataset:
  """One split of a corpus as a token Dataset: images holds the ids uint8 [N, T],
  vocabulary the tokens. split: train | validation (valid, val) | test.
  Raises DataError for an unknown split, a missing package or a malformed file."""
  base = {"valid": "validation", "val": "validation"}.get(split, split)
  if base not in _SPLIT_RESIDUES:
    raise DataError(f"corpus {corpus!r} has no split {split!r}; valid: "
                    f"{list(_SPLIT_RESIDUES)} (slices such as 'train[:1000]' are not supported)")
  words = read_words(corpus, os.environ.get(f"VAEJAX_{corpus.upper()}_FILE") or None)
  chosen = [w for i, w in enumerate(words) if i % 10 in _SPLIT_RESIDUES[base]]
  order = np.random.default_rng(SHUFFLE_SEED).permutation(len(chosen))
  chosen = [chosen[i] for i in order]
  vocab = tokens.vocabulary(corpus)
  try:
    ids = tokens.encode(chosen, vocab, _SOURCES[corpus][2])
  except ValueError as e:
    raise DataError(f"the {corpus} corpus: {e}") from None
  return Dataset(ids, None, max_value=1, vocabulary=vocab)

"""Recurrent cells scanned over time as pure functions of their params, for ONE
sequence (no batch axis; the batch is a vmap, as everywhere).

A Flax cell (nn.GRUCell, or nn.OptimizedLSTMCell) is applied step by step inside
`jax.lax.scan`, with its params passed explicitly, so the same code serves
teacher forcing (`scan`, a whole input sequence) and ancestral sampling
(`step`, one output fed back as the next input). `scan` takes a step mask: at a
masked step the carry is held, so the final carry is the one after the last
valid step and padding cannot reach it.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

CELLS = {"gru": nn.GRUCell, "lstm": nn.OptimizedLSTMCell}


@dataclasses.dataclass(frozen=True)
class Recurrence:
  """One recurrent cell of `features` units ("gru" or "lstm", Flax's cells).

  The carry is h [features] for a GRU and (c, h) for an LSTM; `hidden(carry)`
  is h, the cell's output.
  """
  cell: str
  features: int

  def __post_init__(self):
    if self.cell not in CELLS:
      raise ValueError(f"unknown recurrent cell {self.cell!r}; valid: {sorted(CELLS)}")

  @property
  def module(self) -> nn.Module:
    return CELLS[self.cell](features=self.features)

  def init(self, key: jax.Array, input_dim: int) -> Any:
    return self.module.init(key, self.with_hidden(jnp.zeros(self.features)),
                            jnp.zeros((input_dim,)))["params"]

  def with_hidden(self, h: jax.Array) -> Any:
    """The carry whose hidden state is h [features] (an LSTM's cell state zero)."""
    return h if self.cell == "gru" else (jnp.zeros_like(h), h)

  def hidden(self, carry) -> jax.Array:
    return carry if self.cell == "gru" else carry[1]

  def step(self, params, carry, x: jax.Array):
    """One step: (carry, x [input_dim]) -> (new carry, output h [features])."""
    return self.module.apply({"params": params}, carry, x)

  def scan(self, params, carry, xs: jax.Array, mask: Optional[jax.Array] = None):
    """Runs over xs [T, input_dim] -> (final carry, outputs [T, features]). Where
    mask [T] is 0 the carry is held (the output there is the cell's, unused)."""
    def body(carry, inputs):
      x, keep = inputs
      new_carry, out = self.step(params, carry, x)
      if mask is not None:
        new_carry = jax.tree_util.tree_map(lambda n, o: jnp.where(keep > 0, n, o),
                                           new_carry, carry)
      return new_carry, out
    keep = jnp.ones(xs.shape[0]) if mask is None else mask
    return jax.lax.scan(body, carry, (xs, keep))


def dense_init(key: jax.Array, in_features: int, out_features: int) -> Any:
  """Params of nn.Dense(out_features) on in_features inputs: a bias alone for none
  (Flax's fan-in initialiser divides by in_features, and orbax refuses to save
  zero-size arrays)."""
  if not in_features:
    return {"bias": jnp.zeros((out_features,))}
  return nn.Dense(out_features).init(key, jnp.zeros((in_features,)))["params"]


def dense(params, x: jax.Array) -> jax.Array:
  """x [..., in] @ kernel + bias -> [..., out] (nn.Dense's params; the bias alone,
  broadcast, for in = 0)."""
  if "kernel" not in params:
    return jnp.broadcast_to(params["bias"], x.shape[:-1] + params["bias"].shape)
  return x @ params["kernel"] + params["bias"]


def embedding_init(key: jax.Array, num_tokens: int, features: int) -> jax.Array:
  """A token embedding table [num_tokens, features] (nn.Embed's initialiser)."""
  return nn.initializers.variance_scaling(1.0, "fan_in", "normal", out_axis=0)(
      key, (num_tokens, features))

"""Data parallelism: one global batch split over every device, three ways.

  none      one device; the plain jitted chunk runner.
  pmap      state replicated per device; each device trains on its slice of the
            global batch; gradients and metrics averaged with `lax.pmean`.
  sharding  `jax.jit` over a 1-D device mesh: state replicated, the gathered
            batch constrained to be split along the mesh; XLA's SPMD partitioner
            inserts the gradient all-reduce. The path the JAX team recommends.

All three run the same step code and give the same numbers up to float
reduction order: the config's batch size is the global batch, and example i of
a step draws its noise from fold_in(step_key, i) with i its GLOBAL index, so the
noise does not depend on how many devices share the batch (a device's examples
are fold_in(key, device_index * local_batch + j)). The data set (MNIST-sized,
uint8) is replicated on every device: a batch is an arbitrary subset of it under
the epoch's global permutation, so each device gathers its own slice on device.
Across several processes (`jax.distributed`), every process loads the same
files and its devices gather only their slices of each global batch.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from vaejax import training

MODES = ("none", "pmap", "sharding")
AXIS = "batch"
REPLICA_AXIS = "replica"


class DistributedError(RuntimeError):
  """A multi-process run is misconfigured."""


@dataclasses.dataclass(frozen=True)
class Runner:
  """The compiled chunk runner of one parallel mode and how to move state in and out.

  chunk(state, data, perm, first_batch, num_steps) -> (state, metric sums), with
  state/data/perm as returned by put_state/put_data/put_data. get_state and
  get_metrics bring one host copy back (for checkpoints and logging).
  """
  mode: str
  num_devices: int
  chunk: Callable
  put_state: Callable[[Any], Any]
  put_data: Callable[[Any], Any]
  get_state: Callable[[Any], Any]
  get_metrics: Callable[[Any], Any]


def initialize_distributed(coordinator_address: Optional[str] = None,
                           num_processes: Optional[int] = None,
                           process_id: Optional[int] = None) -> None:
  """Joins a multi-process run; a no-op for one process.

  Arguments default to $VAEJAX_COORDINATOR_ADDRESS, $VAEJAX_NUM_PROCESSES and
  $VAEJAX_PROCESS_ID. On CPU, collectives between processes go through gloo.
  """
  coordinator_address = coordinator_address or os.environ.get("VAEJAX_COORDINATOR_ADDRESS")
  num_processes = num_processes or int(os.environ.get("VAEJAX_NUM_PROCESSES", "1"))
  if process_id is None and "VAEJAX_PROCESS_ID" in os.environ:
    process_id = int(os.environ["VAEJAX_PROCESS_ID"])
  if num_processes <= 1:
    return
  if not coordinator_address or process_id is None:
    raise DistributedError("a multi-process run needs a coordinator address and a process id "
                     "(--coordinator_address/--process_id or VAEJAX_COORDINATOR_ADDRESS/"
                     "VAEJAX_PROCESS_ID)")
  if not 0 <= process_id < num_processes:
    raise DistributedError(f"process id {process_id} is outside [0, {num_processes})")
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address, num_processes=num_processes,
                             process_id=process_id, initialization_timeout=120)


def device_count(mode: str, requested: int = 0) -> int:
  """Devices a mode trains on: 1 for 'none', else `requested` or all of them."""
  if mode == "none":
    return 1
  available = jax.device_count()
  if requested > available:
    raise ValueError(f"config.num_devices={requested} but only {available} devices exist "
                     f"({jax.devices()[0].platform})")
  if requested and jax.process_count() > 1 and requested != available:
    raise ValueError("a multi-process run trains on every device; leave config.num_devices=0")
  return requested or available


@dataclasses.dataclass(frozen=True)
class Replicas:
  """R models trained together (`vaejax.replicas`): build(hyperparams_r) ->
  (loss_fn, optimizer) of one replica, hyperparams {name: [R]}."""
  num: int
  hyperparams: dict
  build: Callable[[dict], tuple[Callable, Any]]


def make_runner(mode: str, *, loss_fn=None, optimizer=None, preprocess, batch_size: int,
                max_consecutive_skips: Optional[int] = None, num_devices: int = 0,
                replicas: Optional[Replicas] = None, update_state=None) -> Runner:
  """Builds the chunk runner of `mode` for a global batch of `batch_size`.

  With `replicas`, the state, the permutation and the metrics carry a leading
  replica axis (training.replicate_train_step); pmap splits each replica's
  batch over the devices as for one model, sharding splits the REPLICAS over
  the devices (each device trains R / n whole models; R % n == 0).
  update_state: the model's non-gradient state update (training.make_train_step).
  """
  if mode not in MODES:
    raise ValueError(f"unknown parallel mode {mode!r}; valid: {list(MODES)}")
  n = device_count(mode, num_devices)
  if replicas is not None and mode == "sharding":
    if replicas.num % n:
      raise ValueError(f"{replicas.num} replicas do not divide over {n} devices")
  elif batch_size % n:
    raise ValueError(f"batch size {batch_size} does not divide over {n} devices")

  def make_step(axis_name=None):
    if replicas is None:
      return training.make_train_step(loss_fn, optimizer, preprocess, axis_name=axis_name,
                                      update_state=update_state)
    one = lambda hp: training.make_train_step(*replicas.build(hp), preprocess,  # noqa: E731
                                              axis_name=axis_name, update_state=update_state)
    hyperparams = {k: jnp.asarray(v) for k, v in replicas.hyperparams.items()}
    return training.replicate_train_step(one, hyperparams,
                                         max_consecutive_skips=max_consecutive_skips)

  replicated = replicas is not None
  if mode == "none":
    chunk = training.make_train_chunk(make_step(), batch_size, replicated=replicated,
                                      max_consecutive_skips=max_consecutive_skips)
    return Runner(mode, 1, jax.jit(chunk, donate_argnums=0), _copy_tree,
                  lambda tree: jax.tree_util.tree_map(jnp.asarray, tree), jax.device_get,
                  jax.device_get)
  if mode == "pmap":
    return _pmap_runner(make_step(AXIS), batch_size, max_consecutive_skips, n, replicated)
  if replicated:
    return _replica_sharding_runner(make_step(), batch_size, max_consecutive_skips, n)
  return _sharding_runner(make_step(), batch_size, max_consecutive_skips, n)


def _copy_tree(tree):
  # Distinct buffers per leaf: the state is donated, and one buffer cannot be donated twice.
  return jax.tree_util.tree_map(lambda x: jnp.array(x, copy=True), tree)


def _pmap_runner(step, batch_size, max_skips, n, replicated) -> Runner:
  if n != jax.device_count():
    devices = jax.local_devices()[:n]
  else:
    devices = None  # all of them, across processes
  local_devices = devices or jax.local_devices()
  chunk = training.make_train_chunk(
      step, batch_size, local_batch_size=batch_size // n, replicated=replicated,
      device_index=lambda: jax.lax.axis_index(AXIS), max_consecutive_skips=max_skips)
  pchunk = jax.pmap(chunk, axis_name=AXIS, in_axes=(0, 0, 0, None, None),
                    donate_argnums=0, devices=devices)
  place = jax.pmap(lambda x: x, axis_name=AXIS, devices=devices)

  def replicate(tree):
    host = jax.device_get(tree)
    return place(jax.tree_util.tree_map(
        lambda x: np.broadcast_to(np.asarray(x), (len(local_devices),) + np.shape(x)), host))

  def first(tree):  # this process's first device copy (all copies are equal)
    return jax.tree_util.tree_map(lambda x: np.asarray(x.addressable_shards[0].data)[0], tree)

  return Runner("pmap", n, pchunk, replicate, replicate, first, first)


def _sharding_runner(step, batch_size, max_skips, n) -> Runner:
  devices = np.asarray(jax.devices()[:n])
  mesh = Mesh(devices, (AXIS,), axis_types=(jax.sharding.AxisType.Auto,))
  replicated = NamedSharding(mesh, PartitionSpec())
  split = NamedSharding(mesh, PartitionSpec(AXIS))
  chunk = training.make_train_chunk(
      step, batch_size, max_consecutive_skips=max_skips,
      constrain_batch=lambda b: jax.lax.with_sharding_constraint(b, split))
  jchunk = jax.jit(chunk, in_shardings=(replicated, replicated, replicated, None, None),
                   out_shardings=(replicated, replicated), donate_argnums=0)

  put = _put_with(replicated)

  def get(tree):
    return jax.tree_util.tree_map(lambda x: np.asarray(x.addressable_shards[0].data), tree)

  return Runner("sharding", n, jchunk, put, put, get, get)


def _put_with(sharding):
  def put(tree):
    host = jax.device_get(tree)
    # From host values every process holds alike, so this also works across processes.
    return jax.tree_util.tree_map(lambda x: jax.make_array_from_callback(
        np.shape(x), sharding, lambda idx, x=np.asarray(x): x[idx]), host)
  return put


def _replica_sharding_runner(step, batch_size, max_skips, n) -> Runner:
  """Replicas split over a 1-D mesh: the state's, permutation's and gathered
  batches' leading replica axis is sharded, the data set replicated. No
  collective: each device trains its own replicas."""
  mesh = Mesh(np.asarray(jax.devices()[:n]), (REPLICA_AXIS,),
              axis_types=(jax.sharding.AxisType.Auto,))
  whole = NamedSharding(mesh, PartitionSpec())
  split = NamedSharding(mesh, PartitionSpec(REPLICA_AXIS))
  chunk = training.make_train_chunk(
      step, batch_size, max_consecutive_skips=max_skips, replicated=True,
      constrain_batch=lambda b: jax.lax.with_sharding_constraint(b, split))
  # The permutations ([R, N] int32, a few MB) go whole to every device, like the data.
  jchunk = jax.jit(chunk, in_shardings=(split, whole, whole, None, None),
                   out_shardings=(split, split), donate_argnums=0)

  def get(tree):  # the whole replica axis, gathered from every shard
    if jax.process_count() > 1:
      return jax.tree_util.tree_map(
          lambda x: np.asarray(multihost_utils.process_allgather(x, tiled=True)), tree)
    return jax.device_get(tree)

  return Runner("sharding", n, jchunk, _put_with(split), _put_with(whole), get, get)

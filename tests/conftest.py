import atexit
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]

# The tests run smoke-sized models, so much of their time is XLA compiling. For the
# whole session (this process, the xdist workers and every subprocess, which
# inherit the environment) skip LLVM's costly optimisation passes, and emit fusions
# through XLA's older emitters instead of its MLIR fusion emitters, which compile
# slower: compile-bound tests run up to twice as fast (the estimator comparison: 78 s
# -> 36 s with the first two flags; the SNR sweep's smoke run 45 s -> 26 s with the
# third). Float rounding differs from the optimised build (the smoke run's
# params_checksum does, as between two machines), so tests compare runs made within
# the session, never recorded checksums. VAEJAX_TESTS_OPTIMIZED_XLA=1 keeps XLA's
# defaults.
_FAST_COMPILE_FLAGS = ("--xla_backend_optimization_level=0",
                       "--xla_llvm_disable_expensive_passes=true",
                       "--xla_cpu_use_fusion_emitters=false")


def _known_to_xla(flags: list[str]) -> list[str]:
  """The flags this jaxlib's XLA accepts: it aborts on an unknown XLA_FLAGS entry,
  and flags come and go between releases. One probe process (two seconds) when all
  are known; a rejected flag is named on stderr and left out."""
  def accepted(candidate):
    env = dict(os.environ, XLA_FLAGS=" ".join(candidate), JAX_PLATFORMS="cpu")
    try:
      return subprocess.run([sys.executable, "-c", "import jax; jax.devices()"], env=env,
                            capture_output=True, timeout=120).returncode == 0
    except subprocess.TimeoutExpired:
      return False
  if not flags or accepted(flags):
    return flags
  known = [f for f in flags if accepted([f])]
  print(f"conftest: XLA here refuses {sorted(set(flags) - set(known))}; running without them",
        file=sys.stderr)
  return known


# The flags reach the workers and subprocesses in XLA_FLAGS; the marker variable
# tells the workers' own conftest that the probe has run.
if (os.environ.get("VAEJAX_TESTS_OPTIMIZED_XLA") != "1"
    and "VAEJAX_TESTS_FAST_XLA_FLAGS" not in os.environ):
  _flags = os.environ.get("XLA_FLAGS", "")
  _fast = _known_to_xla([f for f in _FAST_COMPILE_FLAGS if f.split("=")[0] not in _flags])
  os.environ["XLA_FLAGS"] = " ".join([_flags] + _fast).strip()
  os.environ["VAEJAX_TESTS_FAST_XLA_FLAGS"] = " ".join(_fast)


# Many tests compile the same programs again: the same smoke run trained in several
# subprocesses, the same step built by several tests. A persistent compilation cache
# for the session (shared by the xdist workers and subprocesses through the
# environment, removed by the process that made it) loads those instead; a cached
# executable is the one compiled, so results do not change. It keeps every compile,
# the ~20-200 ms ones of eager ops too (an init's initialisers, say), which separate
# processes repeat: a subprocess running the same tiny model as the one before it took
# 7.4 s instead of 9.3 s. A cache the user set is kept.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="vaejax-tests-xla-cache-")
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
  atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)


@pytest.fixture(scope="session")
def data_dir() -> str:
  """The canonical data files: $VAEJAX_DATA_DIR, else ../shared/data beside the repo.

  Missing data skips the test, except under VAEJAX_REQUIRE_DATA=1 (set by .ci/run)
  where it fails, so CI never passes by skipping.
  """
  path = os.environ.get("VAEJAX_DATA_DIR") or str(REPO.parent / "shared" / "data")
  if not os.path.isdir(os.path.join(path, "binarized_mnist")):
    if os.environ.get("VAEJAX_REQUIRE_DATA") == "1":
      pytest.fail(f"no data at {path}; set VAEJAX_DATA_DIR")
    pytest.skip(f"no data at {path}; set VAEJAX_DATA_DIR to run")
  return path


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, data_dir):
  """A finished vae_smoke run (in-process), checkpointed and logged every 8 of its
  32 steps; tests must not modify it (copy it first)."""
  from vaejax import config as config_lib, experiment
  config = config_lib.load_config_file(str(REPO / "experiments" / "configs" / "vae_smoke.py"))
  config.data_dir = data_dir
  config.checkpoint_every = 8
  config.keep_checkpoints = 5
  workdir = tmp_path_factory.mktemp("trained_run") / "run"
  experiment.run(config, str(workdir), quiet=True)
  return workdir

import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


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

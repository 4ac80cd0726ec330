"""TensorBoard event files for a run, written with tensorboardX (no TensorFlow).

A run writes its events beside metrics.jsonl (config.tensorboard, on by
default): the train scalars at every logging point, the test (and validation)
scalars, the sample and reconstruction grids at the end, and the config as
hparams and as text. `tensorboard --logdir runs/` shows every run under runs/.

A resumed run opens a new event file with purge_step = the restored step + 1:
TensorBoard then drops the older file's events past that step, exactly as
metrics.jsonl is truncated, so the curves never double back.
"""
from __future__ import annotations

import json
import math
from typing import Mapping, Optional

import numpy as np


class TensorBoardWriter:
  """Scalars, images and hparams into `logdir` (created if missing)."""

  def __init__(self, logdir: str, *, purge_step: Optional[int] = None):
    from tensorboardX import SummaryWriter  # a dependency; imported on use like matplotlib
    self._writer = SummaryWriter(logdir, purge_step=purge_step, flush_secs=30)

  def scalars(self, step: int, values: Mapping[str, Optional[float]]) -> None:
    """One point per tag at `step`; None and non-finite values are left out."""
    for tag, value in values.items():
      if value is not None and math.isfinite(float(value)):
        self._writer.add_scalar(tag, float(value), global_step=step)
    self._writer.flush()

  def images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
    """uint8 (or float in [0, 1]) images [H, W, C] with C = 1 or 3, one per tag."""
    for tag, image in images.items():
      image = np.asarray(image)
      if image.shape[-1] == 1:  # TensorBoard's image plugin wants 3 channels
        image = np.repeat(image, 3, axis=-1)
      self._writer.add_image(tag, image, global_step=step, dataformats="HWC")
    self._writer.flush()

  def hparams(self, config: Mapping, metrics: Mapping[str, float]) -> None:
    """The config as hparams (HParams tab, linked to `metrics`, tags already
    written as scalars) and as a JSON text summary."""
    from tensorboardX.summary import hparams
    flat = {k: (v if isinstance(v, (bool, int, float, str)) else json.dumps(v))
            for k, v in config.items()}
    metrics = {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(v)}
    for summary in hparams(flat, metrics):
      self._writer.file_writer.add_summary(summary)
    self._writer.add_text("config", "```\n" + json.dumps(dict(config), indent=2) + "\n```")
    self._writer.flush()

  def close(self) -> None:
    self._writer.close()


class NullWriter:
  """Stands in when TensorBoard output is off (or on a non-primary process)."""

  def scalars(self, step, values) -> None:
    pass

  def images(self, step, images) -> None:
    pass

  def hparams(self, config, metrics) -> None:
    pass

  def close(self) -> None:
    pass

"""Matplotlib figures for papers: NumPy arrays in, one PNG file out.

No JAX here (this module sits below the models); matplotlib (the "dev" extra) is
imported when a figure is first drawn. Images are floats in [0, 1], channels last
(ch = 1 or 3); NaN marks a pixel that is not shown (drawn in _MISSING).
"""
from __future__ import annotations

import numpy as np

from vaejax.viz import pyplot, image_grid

CELL = 0.5  # inches per image tile, so digits stay legible whatever the grid size
# Not grey: binarized and mean MNIST pixels are grey levels, so a hole must not look like one.
_MISSING = np.array([0.35, 0.55, 0.85])


def _array(x, ndim: int, who: str, what: str, image: bool = True) -> np.ndarray:
  x = np.asarray(x, np.float32)
  if x.ndim != ndim:
    raise ValueError(f"{who}: {what} must be {ndim}-D, got shape {x.shape}")
  if image and x.shape[-1] not in (1, 3):
    raise ValueError(f"{who}: {what} needs 1 or 3 channels last, got shape {x.shape}")
  return x


def _fields(panel: dict, keys: tuple[str, ...], who: str, i: int) -> list:
  missing = [k for k in keys if k not in panel]
  if missing:
    raise ValueError(f"{who}: panel {i} lacks {', '.join(missing)}")
  return [panel[k] for k in keys]


def _tiles(images: np.ndarray, cols: int, pad: int = 1) -> np.ndarray:
  """[N, H, W, ch], NaN allowed -> uint8 grid [rows*(H+pad)+pad, cols*(W+pad)+pad, 1|3]."""
  missing = np.isnan(images).any(-1, keepdims=True)
  if not missing.any():
    return image_grid(images, cols=cols, pad=pad)
  rgb = np.broadcast_to(np.nan_to_num(images), images.shape[:-1] + (3,))
  grid = image_grid(rgb, cols=cols, pad=pad)
  # Padding is white (1) in both grids, so zeros in this one are exactly the holes.
  holes = image_grid((~missing).astype(np.float32), cols=cols, pad=pad)[..., 0] == 0
  grid[holes] = np.round(_MISSING * 255).astype(np.uint8)
  return grid


def _show(ax, grid: np.ndarray, **kwargs) -> None:
  if grid.shape[-1] == 1:
    ax.imshow(grid[..., 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest", **kwargs)
  else:
    ax.imshow(grid, interpolation="nearest", **kwargs)


def _centres(n: int, size: int, pad: int = 1) -> np.ndarray:
  return pad + np.arange(n) * (size + pad) + (size - 1) / 2


def _labelled(ax, images: np.ndarray, row_labels, col_labels=None) -> None:
  """Draws [R, C, H, W, ch] as one grid on ax, labels as ticks left of rows / under columns."""
  r, c, h, w, ch = images.shape
  _show(ax, _tiles(images.reshape(r * c, h, w, ch), cols=c))
  ax.set_yticks(_centres(r, h), list(row_labels))
  ax.set_xticks(_centres(c, w) if col_labels is not None else [],
                list(col_labels) if col_labels is not None else [])
  ax.tick_params(length=0)
  ax.spines[:].set_visible(False)


def _save(plt, fig, path: str) -> None:
  fig.savefig(path, dpi=100)
  plt.close(fig)


def labelled_grid(path: str, images, *, row_labels, col_labels=None, title=None) -> None:
  """images [R, C, H, W, ch] in [0, 1] -> one R x C grid; row_labels [R], col_labels [C]."""
  who = "labelled_grid"
  images = _array(images, 5, who, "images [R, C, H, W, ch]")
  r, c = images.shape[:2]
  if len(row_labels) != r:
    raise ValueError(f"{who}: {len(row_labels)} row_labels for {r} rows")
  if col_labels is not None and len(col_labels) != c:
    raise ValueError(f"{who}: {len(col_labels)} col_labels for {c} columns")
  plt = pyplot()
  fig, ax = plt.subplots(figsize=(c * CELL + 1.5, r * CELL + 0.5 + 0.3 * (title is not None)
                                  + 0.3 * (col_labels is not None)), layout="constrained")
  _labelled(ax, images, row_labels, col_labels)
  if title is not None:
    ax.set_title(title)
  _save(plt, fig, path)


def quadrant_completions(path: str, rows, *, titles) -> None:
  """rows: list of R arrays [N, H, W, ch] (NaN = not observed), stacked with titles [R] at left."""
  who = "quadrant_completions"
  rows = [_array(x, 4, who, f"rows[{i}] [N, H, W, ch]") for i, x in enumerate(rows)]
  if not rows:
    raise ValueError(f"{who}: no rows")
  if len(titles) != len(rows):
    raise ValueError(f"{who}: {len(titles)} titles for {len(rows)} rows")
  shapes = {x.shape[:3] for x in rows}
  if len(shapes) != 1:
    raise ValueError(f"{who}: rows differ in [N, H, W]: {sorted(shapes)}")
  # Mixed channel counts (a 1-channel input beside RGB samples) meet as RGB.
  ch = max(x.shape[-1] for x in rows)
  images = np.stack([np.broadcast_to(x, x.shape[:3] + (ch,)) for x in rows])
  labelled_grid(path, images, row_labels=titles)


def traversal_comparison(path: str, panels: list[dict]) -> None:
  """Traversal grids side by side, each over a bar chart of its KL per latent dimension.

  Each panel: title str; images [D, S, H, W, ch] (D traversed dims x S steps);
  values [S] traversed; dims [D] latent index of each row; kl_per_dim [L] in nats.
  """
  who, keys = "traversal_comparison", ("title", "images", "values", "dims", "kl_per_dim")
  if not panels:
    raise ValueError(f"{who}: no panels")
  checked = []
  for i, panel in enumerate(panels):
    title, images, values, dims, kl = _fields(panel, keys, who, i)
    images = _array(images, 5, who, f"panel {i} images [D, S, H, W, ch]")
    values, kl = np.ravel(values), _array(kl, 1, who, f"panel {i} kl_per_dim [L]", False)
    dims = np.asarray(dims, int).ravel()
    if len(values) != images.shape[1] or len(dims) != images.shape[0]:
      raise ValueError(f"{who}: panel {i} has {len(dims)} dims and {len(values)} values for images "
                       f"of shape {images.shape} ([D, S, ...])")
    if dims.size and (dims.min() < 0 or dims.max() >= len(kl)):
      raise ValueError(f"{who}: panel {i} dims {dims.tolist()} outside 0..{len(kl) - 1}")
    checked.append((title, images, values, dims, kl))
  d_max = max(p[1].shape[0] for p in checked)
  width = sum(max(p[1].shape[1] * CELL, 2.5) + 1.5 for p in checked)
  plt = pyplot()
  fig, axes = plt.subplots(2, len(checked), squeeze=False, layout="constrained",
                           figsize=(width, d_max * CELL + 3.0),
                           gridspec_kw={"height_ratios": [max(d_max * CELL, 1.0), 1.5]})
  for p, (title, images, values, dims, kl) in enumerate(checked):
    rows = [f"z[{d}] (KL {kl[d]:.2f})" for d in dims]
    _labelled(axes[0, p], images, rows, [f"{v:.3g}" for v in values])
    axes[0, p].set_title(title)
    colours = np.where(np.isin(np.arange(len(kl)), dims), "C3", "0.6")
    bars = axes[1, p]
    bars.bar(np.arange(len(kl)), kl, color=colours)
    # One KL scale for all panels: the comparison is the point of the figure.
    if p:
      bars.sharey(axes[1, 0])
    bars.set(xlabel="latent dimension (traversed in red)", ylabel="KL (nats)" if p == 0 else None,
             title=f"KL per dimension, total {kl.sum():.1f} nats")
  _save(plt, fig, path)


def latent_space_comparison(path: str, panels: list[dict]) -> None:
  """One column per model: 2-D latent scatter, decoded grid of z, decoded prior samples.

  Each panel: title str; means [N, 2]; labels [N] digits 0-9; manifold [n, n, H, W, ch]
  with manifold[i, j] decoded at z = (x_j, y_i), x rising left to right and y falling
  top to bottom (as displayed); extent (zmin, zmax, zmin, zmax) of those grid points;
  samples [M, H, W, ch].
  """
  who, keys = "latent_space_comparison", ("title", "means", "labels", "manifold", "extent",
                                          "samples")
  if not panels:
    raise ValueError(f"{who}: no panels")
  checked = []
  for i, panel in enumerate(panels):
    title, means, labels, manifold, extent, samples = _fields(panel, keys, who, i)
    means, labels = _array(means, 2, who, f"panel {i} means [N, 2]", False), np.ravel(labels)
    if means.shape[1] != 2 or len(labels) != len(means):
      raise ValueError(f"{who}: panel {i} needs means [N, 2] and labels [N], got "
                       f"{means.shape} and {labels.shape}")
    manifold = _array(manifold, 5, who, f"panel {i} manifold [n, n, H, W, ch]")
    extent = np.asarray(extent, np.float64).ravel()
    if extent.shape != (4,):
      raise ValueError(f"{who}: panel {i} extent must be (zmin, zmax, zmin, zmax), got {extent}")
    samples = _array(samples, 4, who, f"panel {i} samples [M, H, W, ch]")
    checked.append((title, means, labels, manifold, extent, samples))
  plt = pyplot()
  from matplotlib.patches import Rectangle
  fig, axes = plt.subplots(3, len(checked), squeeze=False, layout="constrained",
                           figsize=(3.6 * len(checked) + 0.8, 10.0))
  for p, (title, means, labels, manifold, extent, samples) in enumerate(checked):
    ax = axes[0, p]
    points = ax.scatter(means[:, 0], means[:, 1], c=labels, cmap="tab10", s=3, vmin=-0.5,
                        vmax=9.5)
    x0, x1, y0, y1 = extent
    ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ls="--", lw=1, color="k"))
    ax.set(title=f"{title}\nlatent codes (dashed: decoded grid)", xlabel="z[0]", ylabel="z[1]")
    _manifold(axes[1, p], manifold, extent)
    m = len(samples)
    _show(axes[2, p], _tiles(samples, cols=int(np.ceil(np.sqrt(m)))))
    axes[2, p].set_title("decoded prior samples, z ~ N(0, I)")
    axes[2, p].axis("off")
  fig.colorbar(points, ax=axes[0, :].tolist(), ticks=range(10), label="digit")
  _save(plt, fig, path)


def _manifold(ax, manifold: np.ndarray, extent: np.ndarray) -> None:
  """Draws [ny, nx, H, W, ch] as one image whose tile centres sit at their z values."""
  ny, nx, h, w, ch = manifold.shape
  x0, x1, y0, y1 = extent
  # extent gives the grid points, i.e. tile centres; the image edges lie half a step out.
  hx = (x1 - x0) / (nx - 1) / 2 if nx > 1 else 0.5
  hy = (y1 - y0) / (ny - 1) / 2 if ny > 1 else 0.5
  _show(ax, _tiles(manifold.reshape(ny * nx, h, w, ch), cols=nx, pad=0),
        extent=(x0 - hx, x1 + hx, y0 - hy, y1 + hy))
  ax.set(title="decoder over the grid", xlabel="z[0]", ylabel="z[1]")


def code_usage(path: str, counts: dict) -> None:
  """Bar charts of codebook use, one panel per run: {title: counts [K]} of how often
  each code was chosen, sorted from most to least used (log scale)."""
  plt = pyplot()
  fig, axes = plt.subplots(1, len(counts), figsize=(4.5 * len(counts), 3.2), squeeze=False)
  for ax, (title, c) in zip(axes[0], counts.items()):
    c = np.sort(_array(c, 1, "code_usage", title, image=False))[::-1]
    used = c > 0
    ax.bar(np.arange(len(c))[used], c[used], width=1.0)  # unused codes: no bar
    ax.set_xlim(-0.5, len(c) - 0.5)
    ax.set_yscale("log")
    ax.set_title(f"{title}: {int(np.sum(c > 0))}/{len(c)} codes used", fontsize=9)
    ax.set_xlabel("code, most used first")
    ax.set_ylabel("times chosen over the test set")
  fig.tight_layout()
  _save(plt, fig, path)


def codes_over_priors(path: str, rows: list[list[dict]]) -> None:
  """Makhzani et al.'s Figure 2: test codes coloured by digit over the prior, one row
  per prior, one column per model.

  Each panel: title str; codes [N, 2]; labels [N] digits 0-9; and the prior as
  either density [n, n] (p(z) on a grid over extent, row 0 at the bottom) or
  prior_samples [M, 2] (a prior with no density); extent (zmin, zmax, zmin, zmax).
  """
  who = "codes_over_priors"
  if not rows or not all(rows):
    raise ValueError(f"{who}: no panels")
  plt = pyplot()
  cols = max(len(r) for r in rows)
  fig, axes = plt.subplots(len(rows), cols, squeeze=False, layout="constrained",
                           figsize=(3.4 * cols + 0.8, 3.3 * len(rows)))
  points = None
  for i, row in enumerate(rows):
    for j, panel in enumerate(row):
      title, codes, labels, extent = _fields(panel, ("title", "codes", "labels", "extent"), who, j)
      codes, labels = _array(codes, 2, who, f"panel {i},{j} codes [N, 2]", False), np.ravel(labels)
      if codes.shape[1] != 2 or len(labels) != len(codes):
        raise ValueError(f"{who}: panel {i},{j} needs codes [N, 2] and labels [N], got "
                         f"{codes.shape} and {labels.shape}")
      ax = axes[i, j]
      if panel.get("density") is not None:
        ax.imshow(np.asarray(panel["density"]), origin="lower", extent=tuple(extent),
                  cmap="Greys", alpha=0.6, aspect="auto")
      points = ax.scatter(codes[:, 0], codes[:, 1], c=labels, cmap="tab10", s=2, vmin=-0.5,
                          vmax=9.5)
      if panel.get("prior_samples") is not None:  # on top, faint: the codes would hide them
        prior = np.asarray(panel["prior_samples"])
        ax.scatter(prior[:, 0], prior[:, 1], s=0.3, c="k", alpha=0.3)
      if panel.get("density") is not None:  # contours on top: the codes hide the shading
        density = np.asarray(panel["density"])
        ax.contour(density, levels=np.max(density) * np.array([0.05, 0.5]), colors="k",
                   linewidths=0.6, origin="lower", extent=tuple(extent))
      ax.set(title=title, xlim=extent[:2], ylim=extent[2:], xlabel="z[0]", ylabel="z[1]")
    for j in range(len(row), cols):
      axes[i, j].axis("off")
  fig.colorbar(points, ax=axes.ravel().tolist(), ticks=range(10), label="digit")
  _save(plt, fig, path)

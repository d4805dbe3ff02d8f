"""The evaluation figures (SPEC §4), written as PNGs with matplotlib's Agg backend.

* `counterfactuals_<variable>.png`: rows are test examples; columns the factual image, then
  per method its counterfactual x* and the difference x* - x in 0-255 units (diverging
  colour map, range symmetric about 0 and shared by every panel, one colour bar), with the
  localisation target T (dilated oracle masks of the intervened structure) outlined.
* `sweep.png`: per variable, oracle-measured area of x* against the intervention target,
  one colour per method, with the identity line (a perfect counterfactual lies on it).
* `localisation.png`: per variable and method, the share of |x* - x| outside T (%) and the
  magnitude of the mean signed shift outside T (0-255 units; `outside_shift_abs`).
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # Files only; no display. pylint: disable=wrong-import-position
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from segcft_jax.cft import methods as methods_lib  # noqa: E402
from segcft_jax.evaluation.metrics import PIXEL_SCALE  # noqa: E402


def _colour(key: str) -> str | None:
  return methods_lib.BY_KEY[key].colour if key in methods_lib.BY_KEY else None


def symmetric_limit(differences) -> float:
  """The shared colour limit v of difference maps shown on [-v, v]: max |d|, at least 1."""
  return max(1.0, max(float(np.abs(d).max()) for d in differences))


def _gray(ax, img: np.ndarray) -> None:
  ax.imshow((np.asarray(img) + 1.0) * PIXEL_SCALE, cmap="gray", vmin=0, vmax=255,
            interpolation="nearest")
  ax.set_xticks([])
  ax.set_yticks([])


def counterfactual_grid(path: str, variable: str, examples: Mapping[str, object]) -> None:
  """Factual | (x*, x* - x) per method, for the examples stored by the suite.

  Args:
    path: output PNG.
    variable: the intervened variable.
    examples: method -> `suite.Examples` (same examples and intervention for every method).
  """
  methods = [m for m in examples if examples[m].x]
  first = examples[methods[0]]
  rows, cols = len(first.x), 1 + 2 * len(methods)
  diffs = {m: [(c - f) * PIXEL_SCALE for c, f in zip(examples[m].x_cf, examples[m].x)]
           for m in methods}
  vmax = symmetric_limit([d for ds in diffs.values() for d in ds])
  fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols + 0.8, 1.7 * rows + 0.6),
                           squeeze=False)
  image = None
  for r in range(rows):
    _gray(axes[r, 0], first.x[r])
    axes[r, 0].set_ylabel(f"a={first.factual[r]:.0f} -> a*={first.target[r]:.0f}", fontsize=7)
    for i, m in enumerate(methods):
      ex = examples[m]
      _gray(axes[r, 1 + 2 * i], ex.x_cf[r])
      axes[r, 1 + 2 * i].set_xlabel(f"oracle {ex.measured[r]:.0f}", fontsize=7)
      ax = axes[r, 2 + 2 * i]
      image = ax.imshow(diffs[m][r], cmap="RdBu_r", vmin=-vmax, vmax=vmax,
                        interpolation="nearest")
      ax.contour(np.asarray(ex.target_mask[r], float), levels=[0.5], colors="k",
                 linewidths=0.6)
      ax.set_xticks([])
      ax.set_yticks([])
  axes[0, 0].set_title("factual x", fontsize=8)
  for i, m in enumerate(methods):
    axes[0, 1 + 2 * i].set_title(f"{methods_lib.display_name(m)} x*", fontsize=8)
    axes[0, 2 + 2 * i].set_title(f"{methods_lib.display_name(m)} x* - x", fontsize=8)
  fig.suptitle(f"do({variable}: {first.kind}); outline = localisation target T", fontsize=9)
  fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, label="x* - x (0-255 units)")
  fig.savefig(path, dpi=110)
  plt.close(fig)


def sweep(path: str, points: Mapping[str, Mapping[str, Sequence[np.ndarray]]],
          variables: Sequence[str]) -> None:
  """Target vs oracle-measured area of x*, per variable (panels) and method (colours).

  Args:
    path: output PNG.
    points: method -> variable -> list of `[n, 3]` arrays (target, measured, kind index).
    variables: panel order.
  """
  shown = [v for v in variables if any(points[m].get(v) for m in points)]
  cols = min(3, len(shown))
  rows = -(-len(shown) // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 3.1 * rows), squeeze=False)
  for ax, v in zip(axes.ravel(), shown):
    lo, hi = np.inf, -np.inf
    for m in points:
      if not points[m].get(v):
        continue
      p = np.concatenate(points[m][v])
      ax.scatter(p[:, 0], p[:, 1], s=6, alpha=0.5, color=_colour(m),
                 label=methods_lib.display_name(m))
      lo, hi = min(lo, p[:, :2].min()), max(hi, p[:, :2].max())
    ax.plot([lo, hi], [lo, hi], "k--", linewidth=0.8, label="identity")
    ax.set_title(v, fontsize=9)
    ax.set_xlabel("target a* (px)", fontsize=8)
    ax.set_ylabel("oracle area of x* (px)", fontsize=8)
    ax.tick_params(labelsize=7)
  for ax in axes.ravel()[len(shown):]:
    ax.axis("off")
  axes.ravel()[0].legend(fontsize=7)
  fig.suptitle("Intervention sweep: measured vs target (permutation and relative changes)",
               fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def localisation_bars(path: str, methods: Mapping[str, Mapping[str, Mapping[str, float]]],
                      variables: Sequence[str]) -> None:
  """Grouped bars of outside share (%) and outside shift (0-255) per variable and method.

  Args:
    path: output PNG.
    methods: method -> its metrics.json `localisation` block.
    variables: bar-group order.
  """
  shown = [v for v in variables if any(v in loc for loc in methods.values())]
  names = list(methods)
  width = 0.8 / max(1, len(names))
  fig, axes = plt.subplots(1, 2, figsize=(max(6.0, 1.2 * len(shown) + 2.0) * 2 / 1.4, 3.6))
  keys = (("outside_share", 100.0, "share of |x* - x| outside T (%)"),
          ("outside_shift_abs", 1.0, "|mean shift outside T| (0-255)"))
  for ax, (key, scale, label) in zip(axes, keys):
    for i, m in enumerate(names):
      vals = [scale * (methods[m].get(v, {}).get(key) or 0.0) for v in shown]
      ax.bar(np.arange(len(shown)) + (i - (len(names) - 1) / 2) * width, vals, width,
             color=_colour(m), label=methods_lib.display_name(m))
    ax.set_xticks(np.arange(len(shown)))
    ax.set_xticklabels(shown, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel(label, fontsize=8)
    ax.axhline(0.0, color="k", linewidth=0.6)
  axes[0].legend(fontsize=7)
  fig.suptitle("Localisation (lower share is better; shift shows global brightness changes)",
               fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def difference_map(path: str, difference: np.ndarray, title: str) -> None:
  """One difference map x* - x (0-255 units): diverging colour map, symmetric range, bar."""
  vmax = symmetric_limit([difference])
  fig, ax = plt.subplots(figsize=(4.2, 3.6))
  image = ax.imshow(difference, cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest")
  ax.set_xticks([])
  ax.set_yticks([])
  ax.set_title(title, fontsize=8)
  fig.colorbar(image, ax=ax, label="x* - x (0-255 units)")
  fig.savefig(path, dpi=110)
  plt.close(fig)


def write_all(directory: str, suite, metrics: Mapping) -> list[str]:
  """Writes every figure of a finished `suite.Suite`; returns the file names written."""
  os.makedirs(directory, exist_ok=True)
  written = []
  for v in suite.t.variables:
    examples = {m: suite.examples[m][v] for m in suite.examples if v in suite.examples[m]}
    if examples and any(e.x for e in examples.values()):
      name = f"counterfactuals_{v}.png"
      counterfactual_grid(os.path.join(directory, name), v, examples)
      written.append(name)
  if any(len(p) for per in suite.sweep.values() for p in per.values()):
    sweep(os.path.join(directory, "sweep.png"), suite.sweep, suite.t.variables)
    written.append("sweep.png")
  loc = {m: metrics["methods"][m].get("localisation", {}) for m in metrics["methods"]}
  if any(loc.values()):
    localisation_bars(os.path.join(directory, "localisation.png"), loc, suite.t.variables)
    written.append("localisation.png")
  return written

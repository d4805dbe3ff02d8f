"""True counterfactuals of the synthetic datasets, rendered on the host (SPEC §2, §4).

The phantom renderers re-render an example from its stored render parameters and noise seed
with only the intervened structure resized to the target pixel count
(`phantom_chest.render_counterfactual`, `phantom_vessel.render_counterfactual`). They depend
only on the example and the target, not on the method, so the suite renders each once and
compares every method's x* against the same x*_true.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping, Sequence

import numpy as np

# dataset name -> module with render_counterfactual(example, {variable: target}).
_RENDERERS = {"synth_chest": "segcft_jax.data.phantom_chest",
              "synth_vessel": "segcft_jax.data.phantom_vessel"}

Renderer = Callable[[Mapping[str, Any], Mapping[str, float]], dict]


def renderer(dataset: str) -> Renderer | None:
  """The dataset's true-counterfactual renderer, or None (real data has none)."""
  name = _RENDERERS.get(dataset)
  return None if name is None else importlib.import_module(name).render_counterfactual


def render_batch(render: Renderer, records: Sequence[Mapping[str, Any]], variable: str,
                 targets: np.ndarray, mask: np.ndarray, size: int
                 ) -> tuple[np.ndarray, np.ndarray]:
  """Renders x*_true for the masked examples of a batch.

  Args:
    render: from `renderer`.
    records: the raw dataset records of the batch's real examples (index b = example b).
    variable: intervened variable.
    targets: `[B]` target values (data units).
    mask: `[B]` which examples are intervened.
    size: image side.

  Returns:
    `(images [B, S, S, 1] in [-1, 1], rendered [B] bool)`; an example whose target the
    phantom cannot reach (the renderer raises ValueError) is not rendered and not counted.
  """
  batch = len(mask)
  images = np.zeros((batch, size, size, 1), np.float32)
  rendered = np.zeros((batch,), bool)
  for b in np.flatnonzero(mask):
    try:
      example = render(records[b], {variable: float(targets[b])})
    except ValueError:
      continue
    images[b] = (np.asarray(example["image"], np.float32) - 127.5) / 127.5
    rendered[b] = True
  return images, rendered

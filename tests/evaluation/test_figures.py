"""The figures are written and show what their panels claim."""

import numpy as np
from PIL import Image

from segcft_jax.evaluation import figures, suite


def _examples(shift):
  ex = suite.Examples("+30%")
  for _ in range(2):
    x = np.zeros((16, 16), np.float32)
    ex.x.append(x)
    ex.x_cf.append(x + shift)
    ex.target_mask.append(np.pad(np.ones((4, 4), bool), 6))
    ex.factual.append(10.0)
    ex.target.append(13.0)
    ex.measured.append(12.0)
  return ex


def test_counterfactual_grid_sweep_and_bars_are_pngs(tmp_path):
  grid = str(tmp_path / "grid.png")
  figures.counterfactual_grid(grid, "heart_area",
                              {"no_cft": _examples(0.1), "seg_cft": _examples(-0.05)})
  w, h = Image.open(grid).size
  assert w > 2 * h  # 5 columns (factual + 2 per method), 2 rows
  points = {"no_cft": {"v": [np.array([[10.0, 11.0, 0.0], [20.0, 18.0, 1.0]])]},
            "seg_cft": {"v": [np.array([[10.0, 10.0, 0.0]])]}}
  figures.sweep(str(tmp_path / "sweep.png"), points, ["v"])
  figures.localisation_bars(str(tmp_path / "loc.png"),
                            {"no_cft": {"v": {"outside_share": 0.8, "outside_shift_abs": 2.0}},
                             "seg_cft": {"v": {"outside_share": 0.1, "outside_shift_abs": 0.1}}},
                            ["v"])
  diff = np.zeros((16, 16), np.float32)
  diff[4:8, 4:8] = 10.0
  figures.difference_map(str(tmp_path / "diff.png"), diff, "do(v)")
  for name in ("sweep.png", "loc.png", "diff.png"):
    assert Image.open(tmp_path / name).size[0] > 100


def test_difference_range_is_symmetric_and_shared():
  """Colour limits are +-max |x* - x| over every panel (so methods compare), at least 1."""
  assert figures.symmetric_limit([np.array([-3.0, 2.0]), np.array([7.5])]) == 7.5
  assert figures.symmetric_limit([np.zeros(3)]) == 1.0

"""Group-level train / validation / test splits of real datasets (patients, subjects)."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

SPLITS = ("train", "validation", "test")


def check_fractions(fractions: Sequence[float]) -> None:
  """Raises ValueError unless `fractions` are three numbers >= 0 adding up to 1."""
  if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
    raise ValueError(f"config.data.split_fractions={tuple(fractions)}: three fractions "
                     f"(train, validation, test) >= 0 adding up to 1.")


def split_groups(counts: Mapping[str, int], fractions: Sequence[float], seed: int,
                 max_images: int = 0) -> dict[str, str]:
  """group id -> split: a seeded permutation of the sorted ids, cut by `fractions`.

  No group is in two splits, so images of one patient never leak across them. Every split
  gets >= 1 group when there are >= 3; `max_images` > 0 keeps the first groups of the
  permutation until that many images (`counts`: images per group) are covered.
  """
  check_fractions(fractions)
  ids = sorted(counts)
  order = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]
  if max_images > 0:
    covered = np.cumsum([counts[p] for p in order])
    order = order[:int(np.searchsorted(covered, max_images)) + 1]
  n = len(order)
  n_val, n_test = (max(1 if n >= 3 else 0, round(n * f)) for f in fractions[1:])
  if n - n_val - n_test < 1:
    raise ValueError(f"Only {n} groups (patients) remain after filtering; too few for three "
                     f"splits.")
  cuts = {"validation": n - n_val - n_test, "test": n - n_test}
  return {p: ("train" if i < cuts["validation"] else "validation" if i < cuts["test"]
              else "test") for i, p in enumerate(order)}

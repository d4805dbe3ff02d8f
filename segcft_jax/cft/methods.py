"""The methods compared in every table (SPEC §1, §4) and where their HVAEs live.

    no_cft      -> hvae/          (the pretrained DSCM)
    reg_cft     -> cft_reg/       (Reg-CFT: regressor predictor)
    seg_cft     -> cft_seg/       (Seg-CFT: segmentor soft areas)
    pos_seg_cft -> cft_pos_seg/   (Pos-Seg-CFT: regional soft areas)
"""

from __future__ import annotations

from typing import Any

import ml_collections

from segcft_jax.cft.predictors import measured_structure
from segcft_jax.stages import records, setup

__all__ = ["METHODS", "trained_methods", "load_method", "measured_structure"]

METHODS = {"no_cft": "hvae", "reg_cft": "cft_reg", "seg_cft": "cft_seg",
           "pos_seg_cft": "cft_pos_seg"}


def load_method(config: ml_collections.ConfigDict, workdir: str, method: str,
                data: setup.StageData) -> Any:
  """EMA HVAE parameters of `method` (a key of `METHODS`) in `workdir`.

  Raises:
    ValueError: unknown method.
    FileNotFoundError: its stage has not completed.
  """
  from segcft_jax.stages import cft, hvae  # pylint: disable=g-import-not-at-top
  if method not in METHODS:
    raise ValueError(f"Unknown method {method!r}; choose one of {', '.join(METHODS)}.")
  stage = METHODS[method]
  if stage == "hvae":
    return setup.load_ema_params(config, workdir, "hvae", hvae.hvae_task(config), data)
  task = cft.task_for_restore(config, stage, data)
  return setup.load_ema_params(config, workdir, stage, task, data)["hvae"]


def trained_methods(config: ml_collections.ConfigDict, workdir: str,
                    data: setup.StageData) -> dict[str, Any]:
  """`{method: EMA HVAE params}` of every method whose stage completed in `workdir`."""
  return {m: load_method(config, workdir, m, data) for m, stage in METHODS.items()
          if records.is_done(workdir, stage) and (stage == "hvae" or stage in config)}

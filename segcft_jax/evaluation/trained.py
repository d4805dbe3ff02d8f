"""Everything the evaluation needs from a trained workdir, loaded once (SPEC §3, §4).

The PGM and the frozen networks — the evaluation-only **oracle** segmentor, the training
**segmentor** (Seg-CFT's predictor) and the **regressor** (Reg-CFT's predictor) — are shared by
all methods; each method contributes only its HVAE parameters (`cft.methods`). Every array is
placed on one device: the evaluation is a CPU-sized subset that each process runs alike, and
parameters restored replicated over a mesh would otherwise make every jitted call run once
per device.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax
import ml_collections

from segcft_jax.cft import methods as methods_lib
from segcft_jax.data import datasets
from segcft_jax.models.unet import UNet
from segcft_jax.scm.counterfactual import DSCM
from segcft_jax.scm.graph import Graph
from segcft_jax.stages import cft as cft_stage
from segcft_jax.stages import pgm as pgm_stage
from segcft_jax.stages import records, regressor, segmentor, setup

# The predictor each fine-tuned method was trained against (its `mape_by_predictor`).
TRAINING_PREDICTOR = {"reg_cft": "regressor", "seg_cft": "segmentor_soft",
                      "pos_seg_cft": "segmentor_soft"}


@dataclasses.dataclass
class Trained:
  """The loaded workdir.

  Attributes:
    config: the experiment config.
    graph: the causal graph.
    models: the DSCM modules (PGM + HVAE architecture, shared by every method).
    variables: the intervenable variables, in config order (what is evaluated).
    structures: area variable -> (segmentation class, region label or None) measuring it;
      variables no segmentor can measure (e.g. Morpho-MNIST thickness) are absent.
    methods: method key -> EMA HVAE params, in `cft.methods.METHODS` order.
    frozen: {"pgm", "oracle", "segmentor" (optional), "regressor" (optional)} params.
    oracle, segmentor: U-Net modules (segmentor None when that stage is absent).
    regressor: `RegressorModel` or None.
    uses_regions: whether measurements read the example's region map.
  """
  config: ml_collections.ConfigDict
  graph: Graph
  models: DSCM
  variables: tuple[str, ...]
  structures: dict[str, tuple[int, int | None]]
  methods: dict[str, Any]
  frozen: dict[str, Any]
  oracle: UNet
  segmentor: UNet | None
  regressor: regressor.RegressorModel | None
  uses_regions: bool

  @property
  def input_keys(self) -> tuple[str, ...]:
    """Decoded fields of an evaluation batch."""
    return ("image", "mask", *(("regions",) if self.uses_regions else ()), *self.graph.order)


def model_keys(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """Fields to read for restoring any stage's state (image, maps and every graph variable)."""
  spec = datasets.spec(config.data.name)
  maps = ("mask", "regions") if spec.region_names else ("mask",)
  return ("image", *maps, *Graph.from_config(config.scm).order)


def locate(config: ml_collections.ConfigDict, variables: Sequence[str]
           ) -> dict[str, tuple[int, int | None]]:
  """Segmentation class (and region) of every variable a segmentor can measure."""
  out = {}
  for v in variables:
    try:
      out[v] = methods_lib.measured_structure(config, v)
    except ValueError:
      continue  # Not an area: measured by the regressor only.
  return out


def stage_data(config: ml_collections.ConfigDict, workdir: str) -> setup.StageData:
  """The prepared data every restore reads its example shapes from."""
  return setup.prepare(config, workdir, "hvae", model_keys(config))


def load_trained(config: ml_collections.ConfigDict, workdir: str,
                 methods: Sequence[str] | None = None, predictors: bool = True) -> Trained:
  """Loads the DSCM, the frozen networks and the HVAE of every trained method.

  Args:
    config: the experiment config.
    workdir: the trained workdir.
    methods: method keys to load (None: every method whose stage completed).
    predictors: also load the segmentor and regressor (when their stages completed).

  Raises:
    FileNotFoundError: the hvae, pgm or oracle stage (or a requested method) is missing.
  """
  for stage in ("pgm", "hvae", "oracle"):
    if not records.is_done(workdir, stage):
      raise FileNotFoundError(f"Evaluation needs the {stage!r} stage, which has not completed "
                              f"in {workdir}; run it first (--stages={stage}).")
  data = stage_data(config, workdir)
  if methods is None:
    loaded = methods_lib.trained_methods(config, workdir, data)
  else:
    loaded = {m: methods_lib.load_method(config, workdir, m, data) for m in methods}
  frozen = {"pgm": setup.load_ema_params(config, workdir, "pgm", pgm_stage.pgm_task(config),
                                         data)}
  oracle, frozen["oracle"] = segmentor.load_frozen(config, workdir, "oracle", data)
  seg = reg = None
  if predictors and records.is_done(workdir, "segmentor"):
    seg, frozen["segmentor"] = segmentor.load_frozen(config, workdir, "segmentor", data)
  if predictors and records.is_done(workdir, "regressor"):
    reg, frozen["regressor"] = regressor.load_frozen(config, workdir, data)
  variables = tuple(config.scm.intervenable)
  structures = locate(config, variables)
  device = jax.devices()[0]
  return Trained(config=config, graph=Graph.from_config(config.scm),
                 models=cft_stage.make_dscm(config),
                 variables=variables, structures=structures,
                 methods=jax.device_put(loaded, device), frozen=jax.device_put(frozen, device),
                 oracle=oracle, segmentor=seg, regressor=reg,
                 uses_regions=any(r is not None for _, r in structures.values()))

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

from segcft_jax import builders
from segcft_jax import workdir as workdir_lib
from segcft_jax.cft import methods as methods_lib
from segcft_jax.cft.predictors import measured_structure
from segcft_jax.data import datasets
from segcft_jax.evaluation import morphometry
from segcft_jax.models.regressor import RegressorModel
from segcft_jax.models.unet import UNet
from segcft_jax.scm.counterfactual import DSCM
from segcft_jax.scm.graph import Graph

# The predictor each fine-tuned method was trained against (its `mape_by_predictor`).
TRAINING_PREDICTOR = {m.key: m.evaluated_by for m in methods_lib.METHODS if m.predictor}


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
    methods: method key -> EMA HVAE params, keys in sorted order (the order of
      metrics.json's `methods` and of the evaluation's passes).
    frozen: {"pgm", "oracle", "segmentor" (optional), "regressor" (optional)} params.
    oracle, segmentor: U-Net modules (segmentor None when that stage is absent).
    regressor: `RegressorModel` or None.
    uses_regions: whether measurements read the example's region map.
    morphometric: variables the non-learned morphometric oracle measures
      (`config.evaluate.morphometric`).
    localised: variable -> (class, region) whose oracle mask localises its interventions:
      `structures`, and the morphometric variables' `morphometry.STRUCTURE`.
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
  regressor: RegressorModel | None
  uses_regions: bool
  morphometric: tuple[str, ...]
  localised: dict[str, tuple[int, int | None]]

  @property
  def input_keys(self) -> tuple[str, ...]:
    """Decoded fields of an evaluation batch."""
    return ("image", "mask", *(("regions",) if self.uses_regions else ()), *self.graph.order)


def locate(config: ml_collections.ConfigDict, variables: Sequence[str]
           ) -> dict[str, tuple[int, int | None]]:
  """Segmentation class (and region) of every variable a segmentor can measure."""
  out = {}
  for v in variables:
    try:
      out[v] = measured_structure(config, v)
    except ValueError:
      continue  # Not an area: measured by the regressor only.
  return out


def trained_methods(config: ml_collections.ConfigDict, workdir: str) -> list[str]:
  """Keys of the methods whose stage completed in `workdir` (and applies to `config`)."""
  return [m.key for m in methods_lib.METHODS if workdir_lib.is_done(workdir, m.stage)
          and (m.stage == "hvae" or m.stage in config)]


def load_method(config: ml_collections.ConfigDict, workdir: str, method: str,
                device: jax.Device | None = None) -> Any:
  """EMA HVAE parameters of `method` (a `cft.methods` key) in `workdir`.

  Raises:
    ValueError: unknown method.
    FileNotFoundError: its stage has not completed.
  """
  if method not in methods_lib.BY_KEY:
    raise ValueError(f"Unknown method {method!r}; choose one of {', '.join(methods_lib.BY_KEY)}.")
  return builders.load_hvae(config, workdir, methods_lib.BY_KEY[method].stage, _on(device))


def _on(device: jax.Device | None) -> jax.sharding.Sharding:
  return jax.sharding.SingleDeviceSharding(device or jax.local_devices()[0])


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
    workdir_lib.require_done(workdir, stage, "Evaluation")
  on = _on(None)
  keys = trained_methods(config, workdir) if methods is None else list(methods)
  loaded = {m: load_method(config, workdir, m) for m in sorted(keys)}
  frozen = {"pgm": builders.load_pgm(config, workdir, on)}
  oracle, frozen["oracle"] = builders.load_unet(config, workdir, "oracle", on)
  seg = reg = None
  if predictors and workdir_lib.is_done(workdir, "segmentor"):
    seg, frozen["segmentor"] = builders.load_unet(config, workdir, "segmentor", on)
  if predictors and workdir_lib.is_done(workdir, "regressor"):
    reg, frozen["regressor"] = builders.load_regressor(config, workdir, on)
  variables = tuple(config.scm.intervenable)
  structures = locate(config, variables)
  # A workdir's saved config from before the field existed lacks it (the inference API).
  morphometric = tuple(config.evaluate.get("morphometric", ()))
  localised = dict(structures)
  if morphometric:
    classes = datasets.spec(config.data).class_names
    if morphometry.STRUCTURE not in classes:
      raise ValueError(f"config.evaluate.morphometric needs a {morphometry.STRUCTURE!r} "
                       f"segmentation class; dataset {config.data.name!r} has {classes}.")
    localised.update({v: (classes.index(morphometry.STRUCTURE), None) for v in morphometric})
  return Trained(config=config, graph=Graph.from_config(config.scm),
                 models=builders.make_dscm(config), variables=variables, structures=structures,
                 methods=loaded, frozen=frozen, oracle=oracle, segmentor=seg, regressor=reg,
                 uses_regions=any(r is not None for _, r in structures.values()),
                 morphometric=morphometric, localised=localised)

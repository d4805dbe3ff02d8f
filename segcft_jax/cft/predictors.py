"""The frozen predictors of counterfactual fine-tuning, behind one interface (SPEC §1).

`Predictor.measure(params, x, batch) -> {measurement: [B]}` in data units:

* **Reg-CFT** (`kind="regressor"`): the anticausal CNN regressor, de-standardised
  (`models.regressor.predict`).
* **Seg-CFT** (`kind="segmentor"`): the frozen U-Net segmentor; each *structure* is measured
  by its soft area `sum_pixels softmax(segmentor(x*))_k` (`measurements.soft_area`). In the
  positional vessel setting the structure's target is the sum of its regional variables.
* **Pos-Seg-CFT** (`kind="positional"`): the same segmentor, one soft area per (structure,
  region) with the example's region map (`measurements.regional_soft_area`).

The predictor's parameters are never part of the optimised pytree: the CFT step receives
them as its `frozen` argument. The evaluation-only oracle segmentor is never a predictor.

Variables are named `<structure>_area[_<region>]`; the structure is the segmentation class
named `<structure>` or `<structure>_...` (e.g. `calcified_area` -> `calcified_plaque`), the
region one of the dataset's region names (labels 1..R of its `regions` map).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import jax
import ml_collections

from segcft_jax.cft import measurements
from segcft_jax.data import datasets

KINDS = ("regressor", "segmentor", "positional")
Measure = Callable[[Any, jax.Array, Mapping[str, jax.Array]], dict[str, jax.Array]]


@dataclasses.dataclass(frozen=True)
class Measurement:
  """One measured quantity and the SCM variables whose (summed) value is its target.

  Attributes:
    name: key of the measured value.
    targets: SCM variables; the target is the sum of their counterfactual values.
    cls: segmentation class index (segmentor predictors), else -1.
    region: region label 1..R (positional predictor), else None.
  """
  name: str
  targets: tuple[str, ...]
  cls: int = -1
  region: int | None = None


@dataclasses.dataclass(frozen=True)
class Predictor:
  """A frozen predictor: what it measures and how.

  Attributes:
    kind: one of `KINDS`.
    measurements: the measured quantities.
    apply: `(params, x [B, H, W, 1], batch) -> {name: [B]}` in data units.
    nll: `(params, x, targets) -> {name: [B]}`, the predictor's `-log q(target | x)`
      (regressor only: the `nll` distance, the reference's auxiliary loss), or None.
  """
  kind: str
  measurements: tuple[Measurement, ...]
  apply: Measure
  nll: Callable[[Any, jax.Array, Mapping[str, jax.Array]], dict[str, jax.Array]] | None = None

  @property
  def names(self) -> tuple[str, ...]:
    return tuple(m.name for m in self.measurements)

  def measure(self, params: Any, x: jax.Array, batch: Mapping[str, jax.Array]
              ) -> dict[str, jax.Array]:
    """Measured values of every measurement on images `x`."""
    return self.apply(params, x, batch)

  def targets(self, values: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """Targets of every measurement from (counterfactual) variable values in data units."""
    return {m.name: sum(values[v] for v in m.targets) for m in self.measurements}


def measured_variables(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The variables fine-tuning measures: `config.cft_variables`, else the intervenable ones."""
  if "cft_variables" in config:
    return tuple(config.cft_variables)
  return tuple(config.scm.intervenable)


def measurement_names(config: ml_collections.ConfigDict, kind: str,
                      regressor_for: Sequence[str] = ()) -> tuple[str, ...]:
  """The names of what predictor kind `kind` measures under `config` (nothing is loaded);
  `regressor_for`: variables a segmentor predictor leaves to the regressor (a hybrid)."""
  variables = measured_variables(config)
  if kind == "regressor":
    return variables
  own, rest = _split(variables, regressor_for)
  return tuple(m.name for m in segmentor_measurements(config, own, kind == "positional")) + rest


def _split(variables: Sequence[str], regressor_for: Sequence[str]
           ) -> tuple[tuple[str, ...], tuple[str, ...]]:
  """`(variables the segmentor measures, those left to the regressor)`, in config order."""
  return (tuple(v for v in variables if v not in regressor_for),
          tuple(v for v in variables if v in regressor_for))


def measured_structure(config: ml_collections.ConfigDict, variable: str
                       ) -> tuple[int, int | None]:
  """`(class index, region label or None)` that measures area variable `variable`.

  Raises:
    ValueError: the name does not follow `<structure>_area[_<region>]` or names no class.
  """
  spec = datasets.spec(config.data)
  if "_area" not in variable:
    raise ValueError(f"Variable {variable!r} is not an area (<structure>_area[_<region>]); "
                     f"a segmentor cannot measure it. Use cft_reg for it.")
  structure, _, suffix = variable.partition("_area")
  region = None
  if suffix:
    name = suffix.lstrip("_")
    if name not in spec.region_names:
      raise ValueError(f"Variable {variable!r} names region {name!r}; dataset "
                       f"{config.data.name!r} has regions {spec.region_names or 'none'}.")
    region = spec.region_names.index(name) + 1
  matches = [i for i, c in enumerate(spec.class_names)
             if c == structure or c.startswith(structure + "_")]
  if len(matches) != 1:
    raise ValueError(f"Variable {variable!r}: structure {structure!r} matches "
                     f"{len(matches)} of the segmentation classes {spec.class_names}.")
  return matches[0], region


def segmentor_measurements(config: ml_collections.ConfigDict, variables: Sequence[str],
                           positional: bool) -> tuple[Measurement, ...]:
  """Soft-area measurements of `variables`: one per variable (positional), or one per
  structure whose target sums that structure's variables (global Seg-CFT)."""
  located = {v: measured_structure(config, v) for v in variables}
  if positional:
    missing = [v for v, (_, r) in located.items() if r is None]
    if missing:
      raise ValueError(f"Pos-Seg-CFT measures regional areas; {missing} have no region. "
                       f"Use a positional config variant (e.g. configs/synth_vessel.py:"
                       f"positional).")
    return tuple(Measurement(v, (v,), c, r) for v, (c, r) in located.items())
  by_class: dict[int, list[str]] = {}
  for v, (c, _) in located.items():
    by_class.setdefault(c, []).append(v)
  out = []
  for c, names in by_class.items():
    name = names[0] if len(names) == 1 else names[0].partition("_area")[0] + "_area"
    out.append(Measurement(name, tuple(names), c, None))
  return tuple(out)


def segmentor_predictor(unet: Any, measured: Sequence[Measurement], kind: str) -> Predictor:
  """Seg-CFT / Pos-Seg-CFT predictor from a U-Net module (parameters passed to `measure`)."""

  def apply(params, x, batch):
    probs = jax.nn.softmax(unet.apply({"params": params}, x), axis=-1)  # [B, H, W, K]
    out = {}
    for m in measured:
      if m.region is None:
        out[m.name] = measurements.soft_area(probs, m.cls)
      else:
        out[m.name] = measurements.regional_soft_area(probs, m.cls, batch["regions"] == m.region)
    return out

  return Predictor(kind=kind, measurements=tuple(measured), apply=apply)


def regressor_predictor(predict: Callable[[Any, jax.Array], Mapping[str, jax.Array]],
                        variables: Sequence[str], nll=None) -> Predictor:
  """Reg-CFT predictor from `predict(params, x) -> {variable: [B]}` in data units
  (`models.regressor.RegressorModel.predict`) and, optionally,
  `nll(params, x, targets) -> {variable: [B]}` (`RegressorModel.nll`)."""

  def apply(params, x, batch):
    del batch
    pred = predict(params, x)
    return {v: pred[v] for v in variables}

  return Predictor(kind="regressor", measurements=tuple(Measurement(v, (v,)) for v in variables),
                   apply=apply, nll=nll)


def hybrid_predictor(segmentor: Predictor, regressor: Predictor) -> Predictor:
  """A segmentor predictor whose non-area variables the regressor measures.

  Its parameters are `{"segmentor": U-Net params, "regressor": regressor params}`; the kind
  stays the segmentor's (the method's), the measurements are both predictors' in order.
  """

  def apply(params, x, batch):
    return {**segmentor.apply(params["segmentor"], x, batch),
            **regressor.apply(params["regressor"], x, batch)}

  return Predictor(kind=segmentor.kind, measurements=segmentor.measurements +
                   regressor.measurements, apply=apply)


def make_predictor(config: ml_collections.ConfigDict, kind: str, network: Any,
                   regressor: Any = None, regressor_for: Sequence[str] = ()) -> Predictor:
  """The predictor of kind `kind` from its frozen network: a `models.regressor.RegressorModel`
  (regressor) or the segmentor's U-Net module (segmentor, positional).

  Args:
    regressor_for: variables a segmentor predictor leaves to `regressor` (a
      `RegressorModel`): Morpho-MNIST's thickness and intensity, which no soft area measures.
  """
  variables = measured_variables(config)
  if kind == "regressor":
    return regressor_predictor(network.predict, variables, network.nll)
  if kind not in KINDS:
    raise ValueError(f"Unknown predictor kind {kind!r}; choose one of {KINDS}.")
  own, rest = _split(variables, regressor_for)
  seg = segmentor_predictor(network, segmentor_measurements(config, own, kind == "positional"),
                            kind)
  if not rest:
    return seg
  if regressor is None:
    raise ValueError(f"A {kind} predictor that leaves {rest} to the regressor needs it.")
  return hybrid_predictor(seg, regressor_predictor(regressor.predict, rest))

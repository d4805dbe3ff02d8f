"""Counterfactuals of one's own images with a trained workdir (SPEC §1: abduct, intervene,
predict).

    model = CounterfactualModel.load("runs/synth_chest", "seg")
    result = model("img.png", {"left_lung_area": "-15%", "heart_area": 250},
                   parents={"age": 54, "sex": "M"})

or in one call `counterfactual_of_image(workdir, method, image, interventions, parents)`.
Inputs are validated by `inference.requests` against the config alone, before any model is
loaded (except a relative target that leaves its support: known once the oracle has measured
the factual value). The workdir's weights are checked before any is loaded
(`inference.stored`). The result is x* = `scm.counterfactual.counterfactual(x, pa, do,
PRNGKey(seed))`, the parents before/after (the PGM propagates the intervention to
descendants) and the oracle's areas of x and x*.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import numpy as np

from segcft_jax import workdir as workdir_lib
from segcft_jax.cft import methods as methods_lib
from segcft_jax.evaluation import measure
from segcft_jax.evaluation import trained as trained_lib
from segcft_jax.evaluation.interventions import in_support
from segcft_jax.inference import stored
from segcft_jax.inference.requests import Request, check_request, far_target_warning
from segcft_jax.inference.stored import load_config
from segcft_jax.scm import counterfactual as cf_lib
from segcft_jax.train import weights


@dataclasses.dataclass
class Result:
  """A counterfactual of one image (areas in pixels, image differences in 0-255 units)."""
  method: str
  image: np.ndarray            # uint8 [S, S], factual
  counterfactual: np.ndarray   # uint8 [S, S]
  difference: np.ndarray       # float32 [S, S], x* - x in 0-255 units
  interventions: dict[str, dict]
  parents_before: dict[str, float]
  parents_after: dict[str, float]
  parents_source: dict[str, str]
  measured_before: dict[str, float]
  measured_after: dict[str, float]
  seed: int
  warnings: list[str] = dataclasses.field(default_factory=list)  # inputs far from training
  geometry: Any = None  # the input's size and type (`data.images.Geometry`), for mapping back

  def to_json(self) -> dict:
    """The JSON record; floats rounded to 6 significant digits."""
    def rounded(obj):
      if isinstance(obj, dict):
        return {k: rounded(v) for k, v in obj.items()}
      return float(f"{obj:.6g}") if isinstance(obj, float) else obj
    return rounded({k: getattr(self, k) for k in (
        "method", "interventions", "parents_before", "parents_after", "parents_source",
        "measured_before", "measured_after", "seed", "warnings")})


class CounterfactualModel:
  """A trained method of a workdir, ready to produce counterfactuals of single images."""

  def __init__(self, trained, method: str):
    self.trained, self.method, self.config = trained, method, trained.config
    self._measure = jax.jit(lambda frozen, x, r: measure.measure(trained, frozen, x, r)["oracle"])
    self._cf = jax.jit(lambda hvae, frozen, x, pa, do, rng: cf_lib.counterfactual(
        trained.models, {"pgm": frozen["pgm"], "hvae": hvae}, x, pa, do, rng))

  @classmethod
  def load(cls, workdir: str, method: str, config=None) -> "CounterfactualModel":
    """Loads method `method` ("seg", "seg_cft", ...) of `workdir` and the oracle.

    Raises:
      FileNotFoundError / ValueError: a needed stage is missing, or its weights do not fit
        the config or are damaged (one line naming the stage and what repairs it).
    """
    key = methods_lib.method_key(method)
    config = config or load_config(workdir, key)
    stored.check_weights(config, workdir, key)
    try:
      trained = trained_lib.load_trained(config, workdir, methods=[key], predictors=False)
    except weights.WeightsError as e:  # Damaged after the check: still one line.
      stage = stored.stage_of(e, workdir, key)
      if stage is None:
        raise ValueError(" ".join(str(e).split())) from e
      raise ValueError(stored.damaged(config, workdir, stage, weights.directory(
          workdir_lib.stage_dir(workdir, stage)), e.__cause__ or e)) from e
    return cls(trained, key)

  def __call__(self, image: Any, interventions: Mapping[str, Any],
               parents: Mapping[str, Any] | None = None, regions: Any = None,
               seed: int = 0) -> Result:
    return self.run(check_request(self.config, image, interventions, parents, regions), seed)

  def run(self, request: Request, seed: int = 0) -> Result:
    """The counterfactual of a validated request (see the module docstring)."""
    t = self.trained
    x = ((request.image.astype(np.float32) - 127.5) / 127.5)[None, ..., None]  # [1, S, S, 1]
    regions = None if request.regions is None else request.regions[None].astype(np.int32)
    measured = {k: float(v[0]) for k, v in jax.device_get(
        self._measure(t.frozen, x, regions)).items()}
    before = dict(request.given)
    source = {n: "given" for n in before}
    for n in t.graph.order:
      if n not in before:
        before[n], source[n] = measured[n], "oracle"
        if not in_support(t.graph[n], np.array([measured[n]]))[0]:
          raise ValueError(f"The oracle measures {n} = {measured[n]:g} on this image, outside "
                           f"the support of {n}: the image is far from the training images "
                           f"(or the structure is absent); give {n} with --parents "
                           f"(parents={{...}} in Python).")
    t.graph.check_values({n: np.array([v]) for n, v in before.items()})
    targets, notes = {}, list(request.warnings)
    pixels = x.shape[1] * x.shape[2]
    for n, (num, rel, text) in request.interventions.items():
      targets[n] = before[n] * (1.0 + num / 100.0) if rel else num
      if rel and not in_support(t.graph[n], np.array([targets[n]]))[0]:
        raise ValueError(f"{n}={text} of the factual {before[n]:g} gives {targets[n]:g}, "
                         f"outside the support of {n}.")
      if rel:
        notes.append(far_target_warning(t.graph[n], f"{text} (= {targets[n]:g})", targets[n],
                                        pixels if n in t.structures else None))
    do = cf_lib.checked_interventions(t.graph, targets, 1, allowed=t.variables)
    parents_n = t.graph.normalize({n: np.array([v], np.float32) for n, v in before.items()})
    x_cf, parents_cf = jax.device_get(self._cf(t.methods[self.method], t.frozen, x, parents_n,
                                               do, jax.random.PRNGKey(seed)))
    # Unchanged parents are bit-identical in model units: report their given value rather
    # than a normalise/denormalise round trip.
    raw_after = jax.device_get(t.graph.denormalize(parents_cf))
    after = {n: before[n] if np.array_equal(parents_cf[n], parents_n[n]) else float(raw_after[n][0])
             for n in t.graph.order}
    before = {n: before[n] for n in t.graph.order}
    cf_u8 = np.clip(np.rint(x_cf[0, ..., 0] * 127.5 + 127.5), 0, 255).astype(np.uint8)
    measured_after = {k: float(v[0]) for k, v in jax.device_get(
        self._measure(t.frozen, x_cf, regions)).items()}
    return Result(
        method=self.method, image=request.image, counterfactual=cf_u8,
        difference=((x_cf[0, ..., 0] - x[0, ..., 0]) * 127.5).astype(np.float32),
        interventions={n: {"value": text, "target": targets[n]}
                       for n, (_, _, text) in request.interventions.items()},
        parents_before=before, parents_after=after, parents_source=source,
        measured_before=measured, measured_after=measured_after, seed=int(seed),
        warnings=[w for w in notes if w], geometry=request.geometry)


def counterfactual_of_image(workdir: str, method: str, image: Any,
                            interventions: Mapping[str, Any],
                            parents: Mapping[str, Any] | None = None, regions: Any = None,
                            seed: int = 0) -> Result:
  """One-call API: validate, load `method` of `workdir`, return the counterfactual `Result`.

  Args:
    workdir: a trained workdir.
    method: "no", "reg", "seg", "pos_seg" (or the keys no_cft, reg_cft, ...).
    image: path of a grayscale PNG or a uint8 array, of the model's image size.
    interventions: `{variable: 250 | "250" | "-15%"}`.
    parents: factual values `{variable: value}` (age, sex required; areas measured by the
      oracle when absent).
    regions: region map (positional setting only).
    seed: key of the posterior sample.
  """
  key = methods_lib.method_key(method)
  config = load_config(workdir, key)
  request = check_request(config, image, interventions, parents, regions)
  return CounterfactualModel.load(workdir, key, config).run(request, seed)

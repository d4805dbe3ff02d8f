"""Counterfactuals of one's own images with a trained workdir (the `counterfactual` command).

    model = CounterfactualModel.load("runs/synth_chest", "seg")
    result = model("img.png", {"left_lung_area": "-15%", "heart_area": 250})
    write_outputs(result, "out_dir")

or in one call `counterfactual_of_image(workdir, method, image, interventions, parents)`.

* **Image**: a single-channel 8-bit PNG (or a uint8 array) of the model's size S x S;
  x = (pixel - 127.5) / 127.5.
* **Factual parents**: from `parents` (e.g. read from a CSV), else area variables are
  *measured by the oracle* on the image (hard argmax pixel count). Variables an image cannot
  show (age, sex) must be given: nothing is silently assumed.
* **Interventions**: `{variable: value}` with value absolute in data units (250, "250") or
  relative to the factual value ("-15%": a* = 0.85 a); only the config's intervenable
  variables; values outside a variable's support are refused.
* **Result**: x* = `scm.counterfactual.counterfactual(x, pa, do, PRNGKey(seed))`, the parents
  before/after (the PGM propagates the intervention to descendants) and the oracle's areas of
  x and x*. Every input is validated before any model is loaded, except a relative target
  that leaves its support (known once the oracle has measured the factual value).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
from typing import Any, Mapping

import numpy as np

from segcft_jax.evaluation.interventions import in_support
from segcft_jax.stages import records

METHOD_ALIASES = {"no": "no_cft", "none": "no_cft", "reg": "reg_cft", "seg": "seg_cft",
                  "pos_seg": "pos_seg_cft", "posseg": "pos_seg_cft"}
OUTPUTS = ("counterfactual.png", "difference.png", "result.json")
_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_VALUE = re.compile(rf"^\s*({_NUMBER})\s*(%?)\s*$")
_SEX = {"0": 0.0, "1": 1.0, "f": 0.0, "female": 0.0, "m": 1.0, "male": 1.0}


def method_key(method: str) -> str:
  """"seg" / "seg_cft" / "seg-cft" -> "seg_cft"; raises ValueError on anything else."""
  from segcft_jax.cft.methods import METHODS  # pylint: disable=g-import-not-at-top
  key = method.strip().lower().replace("-", "_")
  key = METHOD_ALIASES.get(key, key)
  if key not in METHODS:
    raise ValueError(f"Unknown method {method!r}; choose one of {', '.join(METHODS)} "
                     f"(or {', '.join(METHOD_ALIASES)}).")
  return key


def load_config(workdir: str, method: str):
  """The config saved by the method's stage (`<workdir>/<stage>/config.json`).

  Raises:
    FileNotFoundError: no such workdir, or the method's stage has not completed there.
  """
  import ml_collections  # pylint: disable=g-import-not-at-top
  from segcft_jax.cft.methods import METHODS  # pylint: disable=g-import-not-at-top
  if not os.path.isdir(workdir):
    raise FileNotFoundError(f"Workdir {workdir} does not exist.")
  stage = METHODS[method]
  if not records.is_done(workdir, stage):
    trained = [m for m, s in METHODS.items() if records.is_done(workdir, s)]
    raise FileNotFoundError(f"Method {method} (stage {stage}) has not been trained in "
                            f"{workdir}; trained there: {', '.join(trained) or 'none'}.")
  with open(os.path.join(records.stage_dir(workdir, stage), "config.json")) as f:
    return ml_collections.ConfigDict(json.load(f))


def parse_value(variable: str, value: Any) -> tuple[float, bool]:
  """`250` / "250" -> (250.0, False); "-15%" -> (-15.0, True). Raises ValueError."""
  if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
    return float(value), False
  match = _VALUE.match(str(value))
  if not match:
    raise ValueError(f"Malformed value {value!r} for {variable}: expected a number "
                     f"(e.g. 250) or a relative change (e.g. -15% or +10%).")
  return float(match.group(1)), bool(match.group(2))


def parse_do(specs) -> dict[str, str]:
  """["left_lung_area=-15%", "heart_area=250"] -> {variable: value text}. Raises ValueError."""
  out = {}
  for spec in specs:
    name, sep, value = str(spec).partition("=")
    name = name.strip()
    if not sep or not re.fullmatch(r"[A-Za-z_]\w*", name) or not value.strip():
      raise ValueError(f"Malformed --do {spec!r}: expected VARIABLE=VALUE, e.g. "
                       f"left_lung_area=-15% or heart_area=250.")
    if name in out:
      raise ValueError(f"--do names {name} twice.")
    parse_value(name, value)
    out[name] = value.strip()
  return out


def read_image(image: Any, size: int) -> np.ndarray:
  """A path to a grayscale PNG, or a uint8 array `[S, S]` / `[S, S, 1]` -> uint8 `[S, S]`."""
  if isinstance(image, (str, os.PathLike)):
    from PIL import Image, UnidentifiedImageError  # pylint: disable=g-import-not-at-top
    if not os.path.exists(image):
      raise FileNotFoundError(f"Input image {image} does not exist.")
    try:
      with Image.open(image) as img:
        mode, bands = img.mode, len(img.getbands())
        if mode != "L":
          raise ValueError(f"{image} is a {mode} image with {bands} channel(s); the model "
                           f"takes single-channel 8-bit grayscale (mode L) PNGs of "
                           f"{size}x{size} (convert with PIL: Image.open(p).convert('L')).")
        array = np.asarray(img, np.uint8)
    except UnidentifiedImageError as e:
      raise ValueError(f"{image} is not a readable image file.") from e
  else:
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] == 1:
      array = array[..., 0]
    if array.ndim != 2 or array.dtype != np.uint8:
      raise ValueError(f"The image array must be uint8 [S, S] or [S, S, 1]; got "
                       f"{array.dtype} {array.shape}.")
  if array.shape != (size, size):
    raise ValueError(f"The input image is {array.shape[1]}x{array.shape[0]} pixels; this "
                     f"model takes {size}x{size} images.")
  return array


def read_parents_csv(path: str) -> dict[str, float]:
  """A CSV with a header of variable names and one row of values (sex: 0/1 or F/M)."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"Parents file {path} does not exist.")
  with open(path, newline="") as f:
    rows = [r for r in csv.reader(f) if any(c.strip() for c in r)]
  if len(rows) != 2 or len(rows[0]) != len(rows[1]):
    raise ValueError(f"{path} must hold a header of variable names and exactly one row of "
                     f"values (e.g. 'sex,age' then '1,54').")
  return {k.strip(): v.strip() for k, v in zip(*rows)}


def factual_parents(given: Mapping[str, Any] | None, graph, measurable) -> dict[str, float]:
  """Validated given parents (floats); raises on unknown names, bad numbers, or missing
  variables that the oracle cannot measure."""
  out = {}
  for name, value in (given or {}).items():
    if name not in graph:
      raise ValueError(f"Unknown variable {name!r} in the parents; variables of this model: "
                       f"{', '.join(graph.order)}.")
    if name == "sex" and str(value).strip().lower() in _SEX:
      out[name] = _SEX[str(value).strip().lower()]
      continue
    number, relative = parse_value(name, value)
    if relative:
      raise ValueError(f"Parent {name} must be an absolute value, got {value!r}.")
    out[name] = number
  missing = [n for n in graph.order if n not in out and n not in measurable]
  if missing:
    raise ValueError(f"{', '.join(missing)} cannot be measured from the image; give "
                     f"{'them' if len(missing) > 1 else 'it'} with --parents=file.csv or "
                     f"{' '.join(f'--{n}' for n in missing)} (parents={{...}} in Python).")
  return out


def check_outputs(out_dir: str, overwrite: bool) -> None:
  """Refuses to replace existing outputs unless `overwrite`."""
  existing = [f for f in OUTPUTS if os.path.exists(os.path.join(out_dir, f))]
  if existing and not overwrite:
    raise FileExistsError(f"{out_dir} already holds {', '.join(existing)}; pass --overwrite "
                          f"(overwrite=True) to replace them.")


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

  def to_json(self) -> dict:
    """The JSON record; floats rounded to 6 significant digits."""
    def rounded(obj):
      if isinstance(obj, dict):
        return {k: rounded(v) for k, v in obj.items()}
      return float(f"{obj:.6g}") if isinstance(obj, float) else obj
    return rounded({k: getattr(self, k) for k in (
        "method", "interventions", "parents_before", "parents_after", "parents_source",
        "measured_before", "measured_after", "seed")})


def _support(var) -> str:
  if var.type == "binary":
    return "0 or 1"
  return {"range": f"[{var.low}, {var.high}]", "log_standard": "positive values",
          "log1p_standard": "non-negative values"}.get(var.norm, "finite values")


@dataclasses.dataclass
class Request:
  """Validated inputs: the image, interventions `{variable: (number, relative, text)}`, the
  given factual parents and (positional setting) the region map."""
  image: np.ndarray
  interventions: dict[str, tuple[float, bool, str]]
  given: dict[str, float]
  regions: np.ndarray | None


def check_request(config, image: Any, interventions: Mapping[str, Any],
                  parents: Mapping[str, Any] | None = None, regions: Any = None) -> Request:
  """Validates every input against the config alone (no model is loaded).

  Raises:
    ValueError / FileNotFoundError with a one-line message naming the problem.
  """
  from segcft_jax.evaluation.trained import locate  # pylint: disable=g-import-not-at-top
  from segcft_jax.scm.graph import Graph  # pylint: disable=g-import-not-at-top
  graph = Graph.from_config(config.scm)
  allowed = tuple(config.scm.intervenable)
  if not interventions:
    raise ValueError("Give at least one intervention, e.g. --do left_lung_area=-15%.")
  do = {}
  for name, value in interventions.items():
    if name not in allowed:
      raise ValueError(f"Cannot intervene on {name!r}; intervenable variables: "
                       f"{', '.join(allowed)}.")
    number, relative = parse_value(name, value)
    if relative and number <= -100.0:
      raise ValueError(f"{name}={value}: a relative change must be above -100%.")
    if not relative and not in_support(graph[name], np.array([number]))[0]:
      raise ValueError(f"{name}={value} is outside the support of {name} "
                       f"({_support(graph[name])}).")
    do[name] = (number, relative, str(value))
  structures = locate(config, allowed)  # what the oracle measures
  given = factual_parents(parents, graph, structures)
  size = int(config.data.image_size)
  array = read_image(image, size)
  region_map = None
  if any(r is not None for _, r in structures.values()):
    if regions is None:
      raise ValueError("This model measures regional areas: give the region map (labels "
                       "1..3 = proximal/mid/distal) with --regions=map.png.")
    region_map = read_image(regions, size)
  return Request(array, do, given, region_map)


class CounterfactualModel:
  """A trained method of a workdir, ready to produce counterfactuals of single images."""

  def __init__(self, trained, method: str):
    import jax  # pylint: disable=g-import-not-at-top
    from segcft_jax.evaluation import measure  # pylint: disable=g-import-not-at-top
    from segcft_jax.scm import counterfactual as cf_lib  # pylint: disable=g-import-not-at-top
    self.trained, self.method, self.config = trained, method, trained.config
    self._measure = jax.jit(lambda frozen, x, r: measure.measure(trained, frozen, x, r)["oracle"])
    self._cf = jax.jit(lambda hvae, frozen, x, pa, do, rng: cf_lib.counterfactual(
        trained.models, {"pgm": frozen["pgm"], "hvae": hvae}, x, pa, do, rng))

  @classmethod
  def load(cls, workdir: str, method: str, config=None) -> "CounterfactualModel":
    """Loads method `method` ("seg", "seg_cft", ...) of `workdir` and the oracle."""
    from segcft_jax.evaluation import trained as trained_lib  # pylint: disable=g-import-not-at-top
    key = method_key(method)
    config = config or load_config(workdir, key)
    return cls(trained_lib.load_trained(config, workdir, methods=[key], predictors=False), key)

  def __call__(self, image: Any, interventions: Mapping[str, Any],
               parents: Mapping[str, Any] | None = None, regions: Any = None,
               seed: int = 0) -> Result:
    return self.run(check_request(self.config, image, interventions, parents, regions), seed)

  def run(self, request: Request, seed: int = 0) -> Result:
    """The counterfactual of a validated request (see the module docstring)."""
    import jax  # pylint: disable=g-import-not-at-top
    from segcft_jax.scm import counterfactual as cf_lib  # pylint: disable=g-import-not-at-top
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
    t.graph.check_values({n: np.array([v]) for n, v in before.items()})
    targets = {n: before[n] * (1.0 + num / 100.0) if rel else num
               for n, (num, rel, _) in request.interventions.items()}
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
        measured_before=measured, measured_after=measured_after, seed=int(seed))


def write_outputs(result: Result, out_dir: str, overwrite: bool = False) -> list[str]:
  """counterfactual.png (uint8 grayscale), difference.png (x* - x, diverging colour map,
  symmetric range, colour bar) and result.json in `out_dir`; returns their paths."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from segcft_jax.evaluation import figures  # pylint: disable=g-import-not-at-top
  check_outputs(out_dir, overwrite)
  os.makedirs(out_dir, exist_ok=True)
  paths = [os.path.join(out_dir, f) for f in OUTPUTS]
  Image.fromarray(result.counterfactual, mode="L").save(paths[0])
  title = ", ".join(f"do({n} = {d['value']})" for n, d in result.interventions.items())
  figures.difference_map(paths[1], result.difference, f"{result.method}: {title}")
  with open(paths[2], "w") as f:
    json.dump(result.to_json(), f, indent=1)
    f.write("\n")
  return paths


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
  key = method_key(method)
  config = load_config(workdir, key)
  request = check_request(config, image, interventions, parents, regions)
  return CounterfactualModel.load(workdir, key, config).run(request, seed)

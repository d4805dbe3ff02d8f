"""Validating what a user asks of a trained model, before any model is loaded.

* **Image**: a grey PNG (8- or 16-bit), .npy, DICOM or NIfTI file, or an array, of any size:
  mapped to the model's S x S uint8 as the dataset's images are (`read_input`; a 16-bit or
  float image by its own min / max, with a warning); x = (pixel - 127.5) / 127.5.
* **Factual parents**: `{variable: value}` (e.g. read from a CSV); area variables not given
  are measured by the oracle on the image (hard argmax pixel count). Variables an image cannot
  show (age, sex) must be given: nothing is silently assumed. Given values must lie in the
  variable's support (`scm.graph`: a range, positive, 0 / 1).
* **Interventions**: `{variable: value}` with value absolute in data units (250, "250") or
  relative to the factual value ("-15%": a* = 0.85 a); only the config's intervenable
  variables; values outside a variable's support are refused.

What is allowed but far from the training data (an area beyond the image's pixel count or
many standard deviations from the training mean, a uniform image) is answered with a
warning in `Request.warnings` rather than refused: the model computes something, but
nothing it was trained to be right about.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import pathlib
import re
from typing import Any, Mapping

import numpy as np

from segcft_jax.data import images as images_lib
from segcft_jax.evaluation.interventions import in_support
from segcft_jax.evaluation.trained import locate
from segcft_jax.scm.graph import Graph

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_VALUE = re.compile(rf"^\s*({_NUMBER})\s*(%?)\s*$")
_SEX = {"0": 0.0, "1": 1.0, "f": 0.0, "female": 0.0, "m": 1.0, "male": 1.0}
# |z| of a target in normalised units beyond which it is far outside the training data.
FAR_Z = 4.0


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


def read_input(image: Any, size: int, notes: list[str] | None = None,
               percentiles: tuple[float, ...] = ()) -> tuple[np.ndarray, images_lib.Geometry]:
  """Any grey image -> (uint8 `[S, S]` model image, how it was mapped: `Geometry`).

  `image`: the path of a PNG (8- or 16-bit), .npy, DICOM or 2-D NIfTI file, or an array, of
  any size. It is mapped as the dataset's images are (`data.images.to_model_image`): padded
  to a centred square, area-resized to S, intensities by `percentiles` (the config's
  `data.intensity_percentiles`) or, without them, kept for 8-bit images and scaled by the
  image's own min / max otherwise; a line in `notes` says what was done.
  """
  notes = notes if notes is not None else []
  if isinstance(image, (str, os.PathLike)):
    raw, depth = _read_file(str(image), "Input image")
    name, kind = str(image), "PNG" if str(image).lower().endswith(".png") else "image"
  else:
    raw, name, kind = np.asarray(image), "The image array", "array"
    if raw.ndim == 3 and raw.shape[-1] == 1:
      raw = raw[..., 0]
    if raw.ndim != 2:
      raise ValueError(f"The image array must be grey, [H, W] or [H, W, 1]; got shape "
                       f"{list(raw.shape)}.")
    depth = str(raw.dtype)
  chosen = tuple(percentiles)
  if not chosen and raw.dtype != np.uint8:
    lo, hi = float(raw.min()), float(raw.max())
    if lo == hi:
      raise ValueError(f"{name} is a {depth} image with the one value {lo:g} throughout: "
                       f"there is nothing to rescale to 8 bits.")
    chosen = (0.0, 100.0)
    notes.append(f"{name} is a {depth} {kind}: rescaled by its own min / max ({lo:g} .. "
                 f"{hi:g}) to 0..255 for the model, which reads 8-bit images; save an 8-bit "
                 f"PNG to choose the scaling yourself.")
  if raw.shape != (size, size):
    notes.append(f"{name} is {raw.shape[1]}x{raw.shape[0]} pixels: zero-padded to a square "
                 f"and resized to the model's {size}x{size}, as the dataset's images are "
                 f"(--output_size=input maps the counterfactual back).")
  try:
    lo, hi = images_lib.intensity_range(raw, chosen)
    model_image = images_lib.to_model_image(raw, size, chosen)
  except images_lib.RowError as e:
    raise ValueError(f"{name}: {e}") from None
  return model_image, images_lib.Geometry(tuple(raw.shape), str(raw.dtype), lo, hi)


def read_image(image: Any, size: int, notes: list[str] | None = None,
               labels: bool = False) -> np.ndarray:
  """`read_input`'s model image; with `labels`, a label map (nearest-resized, values kept)."""
  if not labels:
    return read_input(image, size, notes)[0]
  if isinstance(image, (str, os.PathLike)):
    raw, _ = _read_file(str(image), "Region map")
  else:
    raw = np.asarray(image)
    raw = raw[..., 0] if raw.ndim == 3 and raw.shape[-1] == 1 else raw
  if raw.ndim != 2 or not np.issubdtype(raw.dtype, np.integer) or raw.min() < 0 or raw.max() > 255:
    raise ValueError(f"The region map must be a 2-D map of labels 0..255; got "
                     f"{raw.dtype} {list(raw.shape)}.")
  return images_lib.to_model_mask(raw, size)


def _read_file(path: str, what: str) -> tuple[np.ndarray, str]:
  if not os.path.exists(path):
    raise FileNotFoundError(f"{what} {path} does not exist.")
  if os.path.isdir(path):
    raise IsADirectoryError(f"{what} {path} is a directory; give the path of an image file.")
  try:
    return images_lib.read_array(pathlib.Path(path))
  except images_lib.ChannelError as e:
    raise ValueError(str(e)) from None
  except images_lib.RowError as e:
    raise ValueError(f"{what}: {e} (the file is damaged, incomplete or not an image).") from None


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


def _where(name: str, value: Any, origin: str | None) -> str:
  """How the user wrote a parent: `--age=-5`, `age=-5 in p.csv` or `age=-5`."""
  if origin and origin.startswith("--"):
    return f"{origin}={value}"
  return f"{name}={value}" + (f" in {origin}" if origin else "")


def parent_value(graph: Graph, name: str, value: Any, origin: str | None = None) -> float:
  """A given factual value in data units, checked against the variable's support.

  Args:
    origin: where it was given ("--age", "p.csv"), for the message.

  Raises:
    ValueError: `"--age=-5: age must be in [18.0, 90.0]."`
  """
  var, where = graph[name], _where(name, value, origin)
  if var.type == "binary":
    number = _SEX.get(str(value).strip().lower()) if name == "sex" else None
    if number is None:
      match = _VALUE.match(str(value))
      number = float(match.group(1)) if match and not match.group(2) else None
    if number not in (0.0, 1.0):
      choices = "0/F/female or 1/M/male" if name == "sex" else "0 or 1"
      raise ValueError(f"{where}: {name} must be {choices}.")
    return number
  if isinstance(value, str) and not _VALUE.match(value):
    raise ValueError(f"{where}: {name} must be a number ({_support(var)}).")
  number, relative = parse_value(name, value)
  if relative:
    raise ValueError(f"{where}: {name} must be an absolute value, not a relative change.")
  inside = (number == round(number) and 0 <= number < var.num_classes
            if var.type == "categorical" else in_support(var, np.array([number]))[0])
  if not inside:
    raise ValueError(f"{where}: {name} must be {_support(var)}.")
  return number


def factual_parents(given: Mapping[str, Any] | None, graph, measurable,
                    origins: Mapping[str, str] | None = None) -> dict[str, float]:
  """Validated given parents (floats); raises on unknown names, bad or out-of-support values,
  or missing variables that the oracle cannot measure."""
  out = {}
  for name, value in (given or {}).items():
    if name not in graph:
      raise ValueError(f"Unknown variable {name!r} in the parents; variables of this model: "
                       f"{', '.join(graph.order)}.")
    out[name] = parent_value(graph, name, value, (origins or {}).get(name))
  missing = [n for n in graph.order if n not in out and n not in measurable]
  if missing:
    raise ValueError(f"{', '.join(missing)} cannot be measured from the image; give "
                     f"{'them' if len(missing) > 1 else 'it'} with --parents=file.csv or "
                     f"{' '.join(f'--{n}' for n in missing)} (parents={{...}} in Python).")
  return out


def _support(var) -> str:
  """What a value of `var` must be: "0 or 1", "in [18.0, 90.0]", "positive", ..."""
  if var.type == "binary":
    return "0 or 1"
  if var.type == "categorical":
    return f"an integer class in [0, {var.num_classes})"
  if var.norm == "range":
    return f"in [{var.low}, {var.high}]"
  return {"log_standard": "positive", "log1p_standard": "non-negative"}.get(var.norm, "finite")


def far_outside(var, value: float, pixels: int | None) -> str | None:
  """Why `value` of `var` is far outside the training distribution, or None.

  Args:
    pixels: the image's pixel count when `var` is an area a segmentor measures (an area
      cannot exceed it), else None.
  """
  if pixels is not None and value > pixels:
    return f"it is more than the image's {pixels} pixels"
  if var.discrete or var.norm == "range":
    return None  # Inside its declared range (checked before), which bounds the training data.
  transform = {"log_standard": np.log, "log1p_standard": np.log1p}.get(var.norm, lambda v: v)
  with np.errstate(divide="ignore"):
    z = (float(transform(value)) - var.mean) / var.std
  if abs(z) <= FAR_Z:
    return None
  scale = "" if var.norm == "standard" else f"{var.norm.split('_')[0]} "
  return f"it lies {abs(z):.1f} standard deviations of {scale}{var.name} from the training mean"


@dataclasses.dataclass
class Request:
  """Validated inputs: the image, interventions `{variable: (number, relative, text)}`, the
  given factual parents, (positional setting) the region map, and warnings about inputs far
  from the training data (one line each)."""
  image: np.ndarray
  interventions: dict[str, tuple[float, bool, str]]
  given: dict[str, float]
  regions: np.ndarray | None
  warnings: list[str] = dataclasses.field(default_factory=list)
  geometry: images_lib.Geometry | None = None  # the input's size and type (mapping back)


def far_target_warning(var, text: str, value: float, pixels: int | None) -> str | None:
  """The warning for an intervention target far outside the training data, or None."""
  reason = far_outside(var, value, pixels)
  return None if reason is None else (
      f"{var.name}={text} is far outside the training distribution ({reason}); the "
      f"counterfactual extrapolates beyond what the model was trained on.")


def check_request(config, image: Any, interventions: Mapping[str, Any],
                  parents: Mapping[str, Any] | None = None, regions: Any = None,
                  origins: Mapping[str, str] | None = None) -> Request:
  """Validates every input against the config alone (no model is loaded).

  Args:
    origins: where each given parent came from ("--age", "p.csv"), to name it in messages.

  Raises:
    ValueError / FileNotFoundError / IsADirectoryError with a one-line message naming the
    problem.
  """
  graph = Graph.from_config(config.scm)
  allowed = tuple(config.scm.intervenable)
  size = int(config.data.image_size)
  structures = locate(config, allowed)  # what the oracle measures
  if not interventions:
    raise ValueError("Give at least one intervention, e.g. --do left_lung_area=-15%.")
  do, notes = {}, []
  for name, value in interventions.items():
    if name not in allowed:
      raise ValueError(f"Cannot intervene on {name!r}; intervenable variables: "
                       f"{', '.join(allowed)}.")
    number, relative = parse_value(name, value)
    if relative and number <= -100.0:
      raise ValueError(f"{name}={value}: a relative change must be above -100%.")
    if not relative:
      if not in_support(graph[name], np.array([number]))[0]:
        raise ValueError(f"{name}={value} is outside the support of {name}: it must be "
                         f"{_support(graph[name])}.")
      notes.append(far_target_warning(graph[name], str(value), number,
                                      size * size if name in structures else None))
    do[name] = (number, relative, str(value))
  given = factual_parents(parents, graph, structures, origins)
  for name, number in given.items():
    reason = far_outside(graph[name], number, size * size if name in structures else None)
    if reason:
      notes.append(f"the factual {_where(name, parents[name], (origins or {}).get(name))} is "
                   f"far outside the training distribution ({reason}).")
  array, geometry = read_input(image, size, notes,
                               tuple(config.data.get("intensity_percentiles", None) or ()))
  if float(array.std()) < 1.0:  # 0-255 units: no structure left to see
    notes.append(f"The input image is uniform (pixel mean {array.mean():.1f}, std "
                 f"{array.std():.2g}): far outside the training distribution; the oracle's "
                 f"areas and the counterfactual will mean little.")
  positional = any(r is not None for _, r in structures.values())
  region_map = None
  if positional:
    if regions is None:
      raise ValueError("This model measures regional areas: give the region map (labels "
                       "1..3 = proximal/mid/distal) with --regions=map.png.")
    region_map = read_image(regions, size, labels=True)
  elif regions is not None:
    raise ValueError("This model has no regions (it measures whole-structure areas; only a "
                     "positional model, e.g. pos_seg, reads a region map): leave out "
                     "--regions (regions=None in Python).")
  return Request(array, do, given, region_map, [n for n in notes if n], geometry)

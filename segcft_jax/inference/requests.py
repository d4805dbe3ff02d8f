"""Validating what a user asks of a trained model, before any model is loaded.

* **Image**: a single-channel 8-bit PNG (or a uint8 array) of the model's size S x S;
  x = (pixel - 127.5) / 127.5.
* **Factual parents**: `{variable: value}` (e.g. read from a CSV); area variables not given
  are measured by the oracle on the image (hard argmax pixel count). Variables an image cannot
  show (age, sex) must be given: nothing is silently assumed.
* **Interventions**: `{variable: value}` with value absolute in data units (250, "250") or
  relative to the factual value ("-15%": a* = 0.85 a); only the config's intervenable
  variables; values outside a variable's support are refused.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import re
from typing import Any, Mapping

import numpy as np
from PIL import Image, UnidentifiedImageError

from segcft_jax.evaluation.interventions import in_support
from segcft_jax.evaluation.trained import locate
from segcft_jax.scm.graph import Graph

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_VALUE = re.compile(rf"^\s*({_NUMBER})\s*(%?)\s*$")
_SEX = {"0": 0.0, "1": 1.0, "f": 0.0, "female": 0.0, "m": 1.0, "male": 1.0}


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

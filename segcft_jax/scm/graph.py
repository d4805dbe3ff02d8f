"""The declared causal graph of the scalar variables and their normalisation.

Variables are declared in the config (``config.scm.variables``: name -> dict), never in code::

    type="continuous", parents=(...), norm="range", low=l, high=h:
        v_n = 2 (v - l) / (h - l) - 1                 (support [l, h] -> [-1, 1])
    type="continuous", parents=(...), norm="log_standard", mean=m, std=s:
        v_n = (log v - m) / s                         (support v > 0)
    norm="log1p_standard", mean=m, std=s:
        v_n = (log(1 + v) - m) / s                    (support v >= 0; areas that can be 0)
    type="continuous", parents=(...), norm="standard", mean=m, std=s:
        v_n = (v - m) / s                             (support R)
    type="binary", parents=(...):                     v_n = v in {0, 1} (float32)
    type="categorical", parents=(...), num_classes=K: v_n = v in {0..K-1} (int32)

The graph must be a DAG; :attr:`Graph.order` is a topological order that breaks ties by the
order in which the config lists the variables (``ConfigDict`` lists keys alphabetically),
so it is deterministic. The *parent vector* of a mechanism (:meth:`Graph.to_vector`) stacks
one column per continuous or binary parent and a one-hot block per categorical parent.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Variable", "Graph", "TYPES", "NORMS"]

TYPES = ("continuous", "binary", "categorical")
NORMS = ("range", "log_standard", "log1p_standard", "standard")


@dataclasses.dataclass(frozen=True)
class Variable:
  """One declared variable (see the module docstring for the meaning of the fields)."""

  name: str
  type: str
  parents: tuple[str, ...] = ()
  norm: str | None = None
  low: float | None = None
  high: float | None = None
  mean: float | None = None
  std: float | None = None
  num_classes: int | None = None

  @property
  def discrete(self) -> bool:
    return self.type != "continuous"

  @property
  def width(self) -> int:
    """Columns of this variable in a parent vector."""
    return self.num_classes if self.type == "categorical" else 1


def _variable(name: str, spec: Mapping[str, Any]) -> Variable:
  """Validates one config entry and builds its :class:`Variable`."""
  spec = dict(spec)
  vtype = spec.get("type")
  if vtype not in TYPES:
    raise ValueError(f"Variable {name!r} has unknown type {vtype!r}; expected one of {TYPES}.")
  parents = spec.get("parents", ())
  if isinstance(parents, str) or not isinstance(parents, Sequence):
    raise ValueError(f"Variable {name!r}: parents must be a tuple of names, got {parents!r}.")
  kw = dict(name=name, type=vtype, parents=tuple(str(p) for p in parents))
  if vtype == "continuous":
    norm = spec.get("norm")
    if norm not in NORMS:
      raise ValueError(f"Continuous variable {name!r} has unknown norm {norm!r}; "
                       f"expected one of {NORMS}.")
    keys = ("low", "high") if norm == "range" else ("mean", "std")
    for k in keys:
      if spec.get(k) is None or not math.isfinite(float(spec[k])):
        raise ValueError(f"Variable {name!r} with norm={norm!r} needs a finite {k!r}.")
      kw[k] = float(spec[k])
    if norm == "range" and not kw["high"] > kw["low"]:
      raise ValueError(f"Variable {name!r}: range norm needs high > low, got "
                       f"low={kw['low']}, high={kw['high']}.")
    if norm != "range" and not kw["std"] > 0:
      raise ValueError(f"Variable {name!r}: norm={norm!r} needs std > 0, got {kw['std']}.")
    kw["norm"] = norm
  elif vtype == "categorical":
    k = spec.get("num_classes")
    if k is None or int(k) != k or int(k) < 2:
      raise ValueError(f"Categorical variable {name!r} needs an integer num_classes >= 2, "
                       f"got {k!r}.")
    kw["num_classes"] = int(k)
  return Variable(**kw)


class Graph:
  """A DAG of scalar variables with normalisation and parent-vector encoding.

  Attributes:
    variables: Name -> :class:`Variable`, in declaration order.
    order: Topologically sorted names.
  """

  def __init__(self, variables: Sequence[Variable]):
    self.variables = {v.name: v for v in variables}
    if len(self.variables) != len(variables):
      raise ValueError("Duplicate variable names in the graph.")
    for v in variables:
      for p in v.parents:
        if p == v.name:
          raise ValueError(f"Variable {v.name!r} lists itself as a parent (cycle).")
        if p not in self.variables:
          raise ValueError(f"Variable {v.name!r} has unknown parent {p!r}; declared "
                           f"variables: {', '.join(self.variables)}.")
      if len(set(v.parents)) != len(v.parents):
        raise ValueError(f"Variable {v.name!r} lists a parent twice: {v.parents}.")
    self.order = self._topological_order()

  @classmethod
  def from_config(cls, cfg: Any) -> "Graph":
    """Builds the graph from ``config.scm`` (anything with a ``variables`` mapping).

    The whole experiment config (with an ``scm`` field) is accepted too.
    """
    if "variables" not in cfg and "scm" in cfg:
      cfg = cfg["scm"]
    if "variables" not in cfg:
      raise ValueError("The SCM config has no 'variables' field.")
    return cls([_variable(str(n), s) for n, s in cfg["variables"].items()])

  def _topological_order(self) -> tuple[str, ...]:
    """Kahn's algorithm, always taking the first ready variable in declaration order."""
    remaining = dict(self.variables)
    order = []
    while remaining:
      ready = [n for n, v in remaining.items() if all(p not in remaining for p in v.parents)]
      if not ready:
        raise ValueError(f"The graph has a cycle among {', '.join(sorted(remaining))}.")
      order.append(ready[0])
      del remaining[ready[0]]
    return tuple(order)

  # -- structure -----------------------------------------------------------------------------

  def __contains__(self, name: str) -> bool:
    return name in self.variables

  def __getitem__(self, name: str) -> Variable:
    self._check_name(name)
    return self.variables[name]

  def _check_name(self, name: str) -> None:
    if name not in self.variables:
      raise ValueError(f"Unknown variable {name!r}; declared: {', '.join(self.variables)}.")

  def parents(self, name: str) -> tuple[str, ...]:
    return self[name].parents

  def children(self, name: str) -> tuple[str, ...]:
    self._check_name(name)
    return tuple(n for n in self.order if name in self.variables[n].parents)

  def descendants(self, name: str) -> tuple[str, ...]:
    """Strict descendants of ``name``, in topological order."""
    self._check_name(name)
    found = {name}
    for n in self.order:  # Parents precede children, so one pass suffices.
      if any(p in found for p in self.variables[n].parents):
        found.add(n)
    return tuple(n for n in self.order if n in found and n != name)

  def roots(self) -> tuple[str, ...]:
    return tuple(n for n in self.order if not self.variables[n].parents)

  # -- normalisation -------------------------------------------------------------------------

  def normalize(self, raw: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """Data units -> model units, for any subset of the variables (jit-compatible)."""
    out = {}
    for n, x in raw.items():
      v = self[n]
      if v.type == "categorical":
        out[n] = jnp.asarray(x).astype(jnp.int32)
        continue
      x = jnp.asarray(x, jnp.float32)
      if v.norm == "range":
        x = 2.0 * (x - v.low) / (v.high - v.low) - 1.0
      elif v.norm == "log_standard":
        x = (jnp.log(x) - v.mean) / v.std
      elif v.norm == "log1p_standard":
        x = (jnp.log1p(x) - v.mean) / v.std
      elif v.norm == "standard":
        x = (x - v.mean) / v.std
      out[n] = x
    return out

  def denormalize(self, values: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """Model units -> data units (inverse of :meth:`normalize`)."""
    out = {}
    for n, x in values.items():
      v = self[n]
      if v.type == "categorical":
        out[n] = jnp.asarray(x).astype(jnp.int32)
        continue
      x = jnp.asarray(x, jnp.float32)
      if v.norm == "range":
        x = (x + 1.0) * 0.5 * (v.high - v.low) + v.low
      elif v.norm == "log_standard":
        x = jnp.exp(x * v.std + v.mean)
      elif v.norm == "log1p_standard":
        x = jnp.expm1(x * v.std + v.mean)
      elif v.norm == "standard":
        x = x * v.std + v.mean
      out[n] = x
    return out

  # -- parent vectors ------------------------------------------------------------------------

  def vector_dim(self, names: Sequence[str] | None = None) -> int:
    """Columns of :meth:`to_vector` for ``names`` (default: all, in topological order)."""
    names = self.order if names is None else names
    return sum(self[n].width for n in names)

  def to_vector(self, values: Mapping[str, jax.Array],
                names: Sequence[str] | None = None) -> jax.Array:
    """Stacks variables into ``[B, vector_dim(names)]`` (categorical ones one-hot).

    Args:
      values: Name -> ``[B]`` (normalised values when feeding a mechanism).
      names: Columns to take, in this order (default: all, in topological order).

    Returns:
      Float32 ``[B, C]``.
    """
    names = self.order if names is None else tuple(names)
    if not names:
      raise ValueError("to_vector needs at least one variable name.")
    cols = []
    for n in names:
      v = self[n]
      if n not in values:
        raise ValueError(f"to_vector: no value given for variable {n!r}.")
      x = jnp.asarray(values[n])
      if v.type == "categorical":
        cols.append(jax.nn.one_hot(x, v.num_classes, dtype=jnp.float32))
      else:
        cols.append(x.astype(jnp.float32)[:, None])
    return jnp.concatenate(cols, axis=-1)

  # -- validation ----------------------------------------------------------------------------

  def check_values(self, raw: Mapping[str, Any], names: Sequence[str] | None = None) -> int:
    """Checks data-unit values on the host; raises ValueError naming the bad variable.

    Args:
      raw: Name -> ``[B]`` array in data units. Keys that are not variables are ignored
        (so a whole data batch can be passed).
      names: Variables that must be present and valid (default: all).

    Returns:
      The batch size ``B``.
    """
    names = self.order if names is None else tuple(names)
    batch = None
    for n in names:
      v = self[n]
      if n not in raw:
        raise ValueError(f"Missing value for variable {n!r}.")
      x = np.asarray(raw[n])
      if x.ndim != 1:
        raise ValueError(f"Variable {n!r} must have shape [B]; got {x.shape}.")
      if batch is None:
        batch = x.shape[0]
      elif x.shape[0] != batch:
        raise ValueError(f"Variable {n!r} has batch size {x.shape[0]}, others have {batch}.")
      if not np.issubdtype(x.dtype, np.number) and x.dtype != np.bool_:
        raise ValueError(f"Variable {n!r} must be numeric; got dtype {x.dtype}.")
      x = x.astype(np.float64)
      if not np.all(np.isfinite(x)):
        raise ValueError(f"Variable {n!r} has non-finite values.")
      bad = None
      if v.type == "binary":
        bad = (x != 0) & (x != 1)
        what = "must be 0 or 1"
      elif v.type == "categorical":
        bad = (x != np.round(x)) | (x < 0) | (x >= v.num_classes)
        what = f"must be an integer class in [0, {v.num_classes})"
      elif v.norm == "range":
        bad = (x < v.low) | (x > v.high)
        what = f"must lie in the declared range [{v.low}, {v.high}]"
      elif v.norm == "log_standard":
        bad = x <= 0
        what = "must be positive (log_standard normalisation)"
      elif v.norm == "log1p_standard":
        bad = x < 0
        what = "must be non-negative (log1p_standard normalisation)"
      if bad is not None and np.any(bad):
        i = int(np.argmax(bad))
        raise ValueError(f"Variable {n!r} {what}; got {x[i]!r} at index {i} "
                         f"({int(bad.sum())} bad values).")
    return 0 if batch is None else batch

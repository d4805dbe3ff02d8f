"""The scalar SCM: likelihood, sampling and abduction-action-prediction counterfactuals.

Each variable ``v`` has a mechanism (``mechanisms.py``) ``v = f_v(u_v; pa_v)`` in normalised
units. Given observed (normalised) values ``v`` and per-example interventions
``do = {name: (value, mask)}``:

1. **Abduction**: every continuous variable gets ``u_v = f_v^{-1}(v; pa_v)`` with its
   *observed* parents. Discrete variables have no noise: their observed value is kept.
2. **Action**: where ``mask`` is true, ``v <- value`` (the mechanism is replaced).
3. **Prediction**: in topological order, an example's value of ``v`` is recomputed as
   ``f_v(u_v; pa*_v)`` exactly when one of its parents changed for that example
   (``changed_v = do_mask_v or any(changed_p for p in pa_v)``); everywhere else it *is* the
   observed value (selected, not recomputed, so it is bit-identical). A discrete child of a
   changed parent keeps its observed value and counts as unchanged (it has no abducted
   noise to push forward; the graphs in this project have discrete roots only, where this
   is exact).

The log-likelihood is ``sum_v log p(v | pa_v)`` over all variables (normalised units).
All methods are pure functions of ``(params, inputs)`` and jit-compatible; ``do`` keys and
the graph are static (Python-level) structure.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp

from segcft_jax.scm.graph import Graph
from segcft_jax.scm.mechanisms import ContinuousMechanism, DiscreteMechanism

__all__ = ["PGM"]

Values = dict[str, jax.Array]
# name -> (value_n [B], mask [B] bool), or a bare value_n [B] (every example intervened).
Do = Mapping[str, Any]


class PGM:
  """Flow-based SCM over a :class:`Graph`; parameters are an explicit pytree.

  Args:
    graph: The variable graph.
    hidden: Hidden widths of every conditioning MLP.
    num_bins: Spline bins ``K``.
    bound: Spline interval half-width ``B``.
    child_spline: Compose continuous children's conditional affine with a spline on the
      noise (roots always have one).
  """

  def __init__(self, graph: Graph, hidden: Sequence[int] = (32, 32), num_bins: int = 8,
               bound: float = 3.0, child_spline: bool = False):
    self.graph = graph
    hidden = tuple(int(h) for h in hidden)
    self.mechanisms = {}
    for n in graph.order:
      v = graph[n]
      dim = graph.vector_dim(v.parents) if v.parents else 0
      if v.type == "continuous":
        self.mechanisms[n] = ContinuousMechanism(
            parent_dim=dim, squash=v.norm == "range", spline=child_spline or dim == 0,
            num_bins=int(num_bins), bound=float(bound), hidden=hidden)
      else:
        k = v.num_classes if v.type == "categorical" else 2
        self.mechanisms[n] = DiscreteMechanism(
            parent_dim=dim, num_classes=k, categorical=v.type == "categorical", hidden=hidden)

  @classmethod
  def from_config(cls, cfg: Any, **kwargs) -> "PGM":
    """Builds the graph with :meth:`Graph.from_config`; ``kwargs`` go to the constructor."""
    return cls(Graph.from_config(cfg), **kwargs)

  def init(self, rng: jax.Array) -> dict:
    """Parameters ``{name: mechanism params}``."""
    keys = jax.random.split(rng, len(self.graph.order))
    return {n: self.mechanisms[n].init(k) for n, k in zip(self.graph.order, keys)}

  def _pa(self, name: str, values: Mapping[str, jax.Array]) -> jax.Array | None:
    parents = self.graph[name].parents
    return self.graph.to_vector(values, parents) if parents else None

  def _continuous(self, name: str) -> bool:
    return self.graph[name].type == "continuous"

  def _check_keys(self, values: Mapping[str, jax.Array], what: str) -> None:
    missing = [n for n in self.graph.order if n not in values]
    if missing:
      raise ValueError(f"{what} is missing variables: {', '.join(missing)}.")

  def log_prob(self, params: dict, values_n: Mapping[str, jax.Array]
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Log-likelihood of normalised values.

    Args:
      params: From :meth:`init`.
      values_n: Name -> ``[B]`` normalised values (all variables).

    Returns:
      ``(total [B], {name: [B]})``.
    """
    self._check_keys(values_n, "log_prob")
    per = {}
    for n in self.graph.order:
      per[n] = self.mechanisms[n].log_prob(params[n], values_n[n], self._pa(n, values_n))
    return sum(per.values()), per

  def sample(self, params: dict, rng: jax.Array, n: int) -> Values:
    """Ancestral sampling of ``n`` examples (normalised values)."""
    out = {}
    keys = jax.random.split(rng, len(self.graph.order))
    for name, key in zip(self.graph.order, keys):
      out[name] = self.mechanisms[name].sample(params[name], key, n, self._pa(name, out))
    return out

  def abduct(self, params: dict, values_n: Mapping[str, jax.Array]) -> Values:
    """Exogenous noise ``u_v = f_v^{-1}(v; pa_v)`` of every *continuous* variable.

    Discrete variables get no entry: abduction keeps their observed values.
    """
    self._check_keys(values_n, "abduct")
    return {n: self.mechanisms[n].inverse(params[n], values_n[n], self._pa(n, values_n))[0]
            for n in self.graph.order if self._continuous(n)}

  def _parse_do(self, do: Do | None) -> dict[str, tuple[jax.Array, jax.Array | None]]:
    parsed = {}
    for n, spec in (do or {}).items():
      if n not in self.graph:
        raise ValueError(f"do() names unknown variable {n!r}; declared: "
                         f"{', '.join(self.graph.order)}.")
      if isinstance(spec, (tuple, list)):
        if len(spec) != 2:
          raise ValueError(f"do[{n!r}] must be (value_n, mask) or value_n.")
        value, mask = spec
      else:
        value, mask = spec, None
      parsed[n] = (jnp.asarray(value), None if mask is None else jnp.asarray(mask, bool))
    return parsed

  def predict(self, params: dict, noises: Mapping[str, jax.Array],
              values_n: Mapping[str, jax.Array], do: Do | None = None) -> Values:
    """Action and prediction: push the abducted noise through the mutilated graph.

    Args:
      params: From :meth:`init`.
      noises: From :meth:`abduct` (continuous variables).
      values_n: Observed normalised values (all variables).
      do: Name -> ``(value_n [B], mask [B] bool)``; examples with a false mask are not
        intervened on that variable. A bare ``value_n`` intervenes on every example.

    Returns:
      Counterfactual normalised values; unchanged variables/examples are the observed
      values exactly.
    """
    self._check_keys(values_n, "predict")
    do = self._parse_do(do)
    out, changed = {}, {}
    for n in self.graph.order:
      obs = values_n[n]
      # Which examples see a changed parent (None: statically none of them).
      flags = [changed[p] for p in self.graph[n].parents if changed[p] is not None]
      mask = None
      if flags and self._continuous(n):
        mask = flags[0]
        for f in flags[1:]:
          mask = mask | f
        new = self.mechanisms[n].forward(params[n], noises[n], self._pa(n, out))[0]
        value = jnp.where(mask, new.astype(obs.dtype), obs)
      else:
        value = obs  # Roots, and discrete children (no noise): keep the observed value.
      if n in do:
        dv, dm = do[n]
        dv = jnp.broadcast_to(dv.astype(obs.dtype), obs.shape)
        dm = jnp.ones(obs.shape, bool) if dm is None else jnp.broadcast_to(dm, obs.shape)
        value = jnp.where(dm, dv, value)
        mask = dm if mask is None else mask | dm
      out[n], changed[n] = value, mask
    return out

  def counterfactual(self, params: dict, values_n: Mapping[str, jax.Array],
                     do: Do | None = None) -> Values:
    """``predict(params, abduct(params, values_n), values_n, do)``."""
    self._parse_do(do)  # Fail on a bad intervention before any computation.
    return self.predict(params, self.abduct(params, values_n), values_n, do)

"""The batched Python API: counterfactuals, measurements and samples of many images at once.

    >>> import segcft_jax
    >>> model = segcft_jax.load(workdir, method="seg")
    >>> out = model.counterfactual(images, parents={"age": ages, "sex": sexes},
    ...                            do={"heart_area": "-15%"})
    >>> out.images.shape == images.shape
    True
    >>> areas = model.measure(out.images)       # the oracle's areas, {variable: [N]}
    >>> x = model.sample({"age": ages, "sex": sexes, **out.parents_after})

Images are uint8 `[N, S, S]` at the model's size S. Each call runs in chunks of one global
batch (`batch_size`, a multiple of the device count: the chunk is split over the mesh's data
axis), so a step is compiled once per call kind, whatever N; the last chunk is padded and
the padding dropped. Chunk k draws its posterior / prior noise from `fold_in(seed, k)`, so
results are deterministic given the seed and the batch size.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from segcft_jax.cft import methods as methods_lib
from segcft_jax.evaluation import measure as measure_lib
from segcft_jax.inference import model as model_lib
from segcft_jax.inference.requests import parse_value
from segcft_jax.models.hvae import HVAE
from segcft_jax.scm import counterfactual as cf_lib
from segcft_jax.train import sharding

Array = np.ndarray
IN_FLIGHT = 4  # chunks dispatched ahead of the one being fetched


@dataclasses.dataclass
class Counterfactuals:
  """What `Model.counterfactual` returns, one row per input image.

  Attributes:
    images: the counterfactual images x*, uint8 `[N, S, S]`.
    parents_before: factual value of every graph variable (given or oracle-measured), `[N]`.
    parents_after: the counterfactual values (the PGM propagates `do` to descendants).
    measured_before, measured_after: the oracle's areas of x and x*.
  """
  images: Array
  parents_before: dict[str, Array]
  parents_after: dict[str, Array]
  measured_before: dict[str, Array]
  measured_after: dict[str, Array]


def _to_model(images: Any, size: int) -> Array:
  x = np.asarray(images)
  if x.ndim == 4 and x.shape[-1] == 1:
    x = x[..., 0]
  if x.ndim != 3 or x.shape[1:] != (size, size) or x.dtype != np.uint8:
    raise ValueError(f"images must be uint8 [N, {size}, {size}] (the model's size); got "
                     f"{x.dtype} {list(x.shape)}. Resize / rescale them first, e.g. with "
                     f"segcft_jax.data.images.to_model_image.")
  return ((x.astype(np.float32) - 127.5) / 127.5)[..., None]


def _to_uint8(x: Array) -> Array:
  return np.clip(np.rint(x[..., 0] * 127.5 + 127.5), 0, 255).astype(np.uint8)


class Model:
  """A trained method of a workdir (`segcft_jax.load`), for batches of images."""

  def __init__(self, trained, method: str, batch_size: int | None = None):
    self.trained, self.method, self.config = trained, method, trained.config
    self.size = int(self.config.data.image_size)
    self.mesh = sharding.make_mesh()
    n = self.mesh.size
    wanted = batch_size or int(self.config.evaluate.batch_size)
    self.batch_size = -(-wanted // n) * n
    self._batch = sharding.batch_sharding(self.mesh)
    self._frozen = sharding.replicate(trained.frozen, self.mesh)
    self._hvae = sharding.replicate(trained.methods[method], self.mesh)
    t = trained
    self._measure = jax.jit(
        lambda frozen, x, r: measure_lib.measure(t, frozen, x, r)["oracle"])
    def cf_measured(hvae, frozen, x, before, targets, rng, r):
      """x*, parents (normalised before / after, data units after) and x*'s measurement, in
      one call from data units: no eager op (which would compile for every new N) is left
      on the host."""
      pa = t.graph.normalize(before)
      # A NaN target leaves that row's variable alone (its own value keeps the maths finite).
      masks = {k: ~jnp.isnan(v) for k, v in targets.items()}
      filled = {k: jnp.where(masks[k], v, before[k]) for k, v in targets.items()}
      do = {k: (v, masks[k]) for k, v in t.graph.normalize(filled).items()}
      x_cf, pa_cf = cf_lib.counterfactual(t.models, {"pgm": frozen["pgm"], "hvae": hvae}, x,
                                          pa, do, rng)
      return (x_cf, pa, pa_cf, t.graph.denormalize(pa_cf),
              measure_lib.measure(t, frozen, x_cf, r)["oracle"])

    self._cf_measured = jax.jit(cf_measured)
    self._sample = jax.jit(lambda hvae, raw, rng, temp: t.models.hvae.apply(
        {"params": hvae}, t.models.parent_vector(t.graph.normalize(raw)), temp,
        method=HVAE.sample, rngs={"sample": rng}))

  def _chunks(self, n: int, fn: Callable[[slice, int], Any]) -> list[Any]:
    """`fn(rows, k)` of every chunk, fetched `IN_FLIGHT` chunks behind the dispatch (the
    host's padding and transfers overlap the devices' work; memory stays bounded)."""
    if n == 0:
      raise ValueError("No images: give at least one.")
    pending, out = [], []
    for k, s in enumerate(range(0, n, self.batch_size)):
      pending.append(fn(slice(s, min(s + self.batch_size, n)), k))
      if len(pending) > IN_FLIGHT:
        out.append(jax.device_get(pending.pop(0)))
    return out + [jax.device_get(p) for p in pending]

  def _put(self, tree: Any, rows: slice) -> Any:
    """Rows `rows` of every `[N, ...]` array, padded to one batch and split over the mesh."""
    def pad(a):
      a = np.asarray(a)[rows]
      extra = self.batch_size - a.shape[0]
      return np.concatenate([a, np.repeat(a[-1:], extra, axis=0)]) if extra else a
    return jax.device_put(jax.tree.map(pad, tree), self._batch)

  def _regions(self, regions: Any, n: int) -> Array | None:
    if not self.trained.uses_regions:
      if regions is not None:
        raise ValueError("This model has no regions: leave out regions.")
      return None
    if regions is None:
      raise ValueError("A positional model needs region maps: regions=int [N, S, S].")
    r = np.asarray(regions).astype(np.int32)
    if r.shape != (n, self.size, self.size):
      raise ValueError(f"regions must be [N, {self.size}, {self.size}]; got {list(r.shape)}.")
    return r

  def measure(self, images: Any, regions: Any = None) -> dict[str, Array]:
    """The oracle's measurement of every area variable of `images`, `{variable: [N]}`."""
    x = _to_model(images, self.size)
    r = self._regions(regions, len(x))
    return self._measured(x, r)

  def _measured(self, x: Array, r: Array | None) -> dict[str, Array]:
    n = len(x)
    parts = self._chunks(n, lambda rows, k: self._measure(
        self._frozen, self._put(x, rows), None if r is None else self._put(r, rows)))
    return {v: np.concatenate([p[v] for p in parts])[:n].astype(np.float64)
            for v in parts[0]} if parts else {}

  def _factual(self, parents: Mapping[str, Any] | None, measured: dict[str, Array],
               n: int) -> dict[str, Array]:
    graph, given = self.trained.graph, dict(parents or {})
    unknown = sorted(set(given) - set(graph.order))
    if unknown:
      raise ValueError(f"Unknown parents {unknown}; the graph's variables: {list(graph.order)}.")
    out = {}
    for name in graph.order:
      if name in given:
        value = np.broadcast_to(np.asarray(given[name], np.float64), (n,)).copy()
      elif name in measured:
        value = measured[name]
      else:
        raise ValueError(f"parents[{name!r}] is needed: the oracle cannot measure it.")
      out[name] = value
    graph.check_values(out)
    return out

  def counterfactual(self, images: Any, parents: Mapping[str, Any] | None = None,
                     do: Mapping[str, Any] | None = None, regions: Any = None,
                     seed: int = 0, measured: Mapping[str, Any] | None = None
                     ) -> Counterfactuals:
    """x* of every image under `do` (`{variable: value | "-15%" | array [N]}`, the same for
    every image unless an array, where NaN leaves a row's variable alone); factual parents
    not in `parents` are measured.

    `measured`: the oracle's areas of `images` (`measure`) when already known, e.g. for
    several interventions on the same images.
    """
    x = _to_model(images, self.size)
    n, r = len(x), self._regions(regions, len(x))
    measured = (self._measured(x, r) if measured is None
                else {k: np.asarray(v, np.float64) for k, v in measured.items()})
    before = self._factual(parents, measured, n)
    targets = {}
    for name, value in (do or {}).items():
      if isinstance(value, (np.ndarray, list, tuple)):
        targets[name] = np.broadcast_to(np.asarray(value, np.float64), (n,))
        continue
      num, rel = parse_value(name, value)
      if name not in before:
        raise ValueError(f"Unknown variable {name!r} in do; intervenable: "
                         f"{list(self.trained.variables)}.")
      targets[name] = before[name] * (1 + num / 100) if rel else np.full(n, num)
    graph = self.trained.graph
    not_allowed = [k for k in targets if k not in self.trained.variables]
    if not_allowed:
      raise ValueError(f"Cannot intervene on {not_allowed}; intervenable variables: "
                       f"{', '.join(self.trained.variables)}.")
    targets = {k: np.broadcast_to(np.asarray(v, np.float64), (n,)) for k, v in targets.items()}
    for k, v in targets.items():
      graph.check_values({k: v[~np.isnan(v)]}, [k])
    key = jax.random.PRNGKey(seed)
    raw_before = {k: v.astype(np.float32) for k, v in before.items()}
    raw_targets = {k: v.astype(np.float32) for k, v in targets.items()}

    def chunk(rows, k):
      return self._cf_measured(
          self._hvae, self._frozen, self._put(x, rows), self._put(raw_before, rows),
          self._put(raw_targets, rows), jax.random.fold_in(key, k),
          None if r is None else self._put(r, rows))

    parts = self._chunks(n, chunk)

    def joined(i):
      return {v: np.concatenate([p[i][v] for p in parts])[:n] for v in parts[0][i]}

    x_cf = np.concatenate([p[0] for p in parts])[:n]
    pa_n, pa_cf, raw, measured_after = joined(1), joined(2), joined(3), joined(4)
    measured_after = {v: m.astype(np.float64) for v, m in measured_after.items()}
    # Parents the intervention did not change are reported as given (no round trip).
    after = {v: np.where(pa_cf[v] == pa_n[v], before[v], raw[v]) for v in graph.order}
    return Counterfactuals(images=_to_uint8(x_cf), parents_before=before, parents_after=after,
                           measured_before=measured, measured_after=measured_after)

  def sample(self, parents: Mapping[str, Any], seed: int = 0,
             temperature: float = 1.0) -> Array:
    """Images drawn from the HVAE's prior given every HVAE parent, uint8 `[N, S, S]`."""
    graph, names = self.trained.graph, self.trained.models.parents
    missing = [p for p in names if p not in parents]
    if missing:
      raise ValueError(f"sample needs the HVAE's parents {list(names)}; missing {missing}.")
    n = max(np.size(parents[p]) for p in names) if names else 0
    values = {p: np.broadcast_to(np.asarray(parents[p], np.float64), (n,)) for p in names}
    graph.check_values(values, names)
    raw = {p: v.astype(np.float32) for p, v in values.items()}
    key = jax.random.PRNGKey(seed)
    parts = self._chunks(n, lambda rows, k: self._sample(
        self._hvae, self._put(raw, rows), jax.random.fold_in(key, k), temperature))
    return _to_uint8(np.concatenate(parts)[:n])


def load(workdir: str, method: str = "seg", batch_size: int | None = None) -> Model:
  """The trained `method` ("no", "reg", "seg", "pos_seg") of `workdir` as a batched `Model`,
  its weights checked first (`inference.stored`)."""
  key = methods_lib.method_key(method)
  return Model(model_lib.CounterfactualModel.load(workdir, key).trained, key, batch_size)

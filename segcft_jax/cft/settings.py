"""A CFT stage's settings, checked and parsed once from its config section.

`CFTSettings.from_config(config, stage)` runs at config-check time (before any stage of a
run starts) and again when the stage, the evaluation tools or the benchmarks build the
fine-tuning step; everything downstream reads the typed fields, so a field is interpreted in
one place. The defaults live in `train.defaults.cft_config` alone.

The weights mini-language (`distance_weights`, `draw_weights`, `focus`) is
`"<structure>=<w>,..."`: a weight applies to every name `<structure>_area[_<region>]`
(regressor, global or regional soft area alike, so every method weighs the same structures)
and to a name of exactly that structure (e.g. `thickness`).
"""

from __future__ import annotations

import dataclasses
import math

import ml_collections

from segcft_jax.cft import balance, measurements, methods, predictors

# `nll`: the regressor's own likelihood (Reg-CFT only), the others `measurements.distance_fn`.
DISTANCES = measurements.DISTANCES + ("nll",)


def parse_weights(spec: str, names: tuple[str, ...], field: str = "distance_weights",
                  default: float = 1.0, bare: float | None = None) -> dict[str, float]:
  """Per-name weights from `"<structure>=<w>,..."` (config field `field`; module docstring).

  Names not mentioned weigh `default`; a bare `<structure>` weighs `bare` (None: refused).
  `distance_weights` weighs measurements, `aux = sum_m w_m mean_b d_m`; `draw_weights` weighs
  intervenable variables, drawn per example with probability w_v / sum_u w_u; `focus`
  ("calcified": bare 1, default 0) names the variables of the curriculum.

  Raises:
    ValueError: a malformed entry, a non-positive weight, or a structure none of `names` has.
  """
  weights = {m: default for m in names}
  for item in filter(None, (p.strip() for p in spec.split(","))):
    structure, sep, value = item.partition("=")
    structure = structure.strip()
    try:
      w = float(value) if sep else (float("nan") if bare is None else bare)
    except ValueError:
      w = float("nan")
    if not (w > 0 and math.isfinite(w)):
      raise ValueError(f"{field} entry {item!r}: expected <structure>=<positive "
                       f"number>, e.g. 'calcified=3'.")
    hit = [m for m in names if structure in (m, balance.structure_of(m))]
    if not hit:
      raise ValueError(f"{field} names {structure!r}, which none of {', '.join(names)} "
                       f"has.")
    weights.update({m: w for m in hit})
  return weights


def _focus(cfg: ml_collections.ConfigDict, intervenable: tuple[str, ...]
           ) -> tuple[bool, ...] | None:
  """Which intervenable variables the curriculum's first `focus_steps` steps draw from.

  With `focus_steps` = N > 0, training steps 0..N-1 intervene only on the variables of the
  structures named by `focus` (e.g. "calcified"), the remaining steps on all of them; None
  without a curriculum.
  """
  steps, spec = int(cfg.focus_steps), cfg.focus
  if steps < 0 or (steps > 0 and steps >= int(cfg.num_steps)):
    raise ValueError(f"focus_steps={steps} must lie in [0, num_steps={cfg.num_steps}).")
  if steps == 0:
    return None
  mask = tuple(parse_weights(spec, intervenable, "focus", default=0.0, bare=1.0)[v] > 0
               for v in intervenable)
  if not any(mask):
    raise ValueError(f"focus_steps={steps} needs a focus naming intervenable structures, "
                     f"e.g. focus='calcified'; got focus={spec!r}.")
  return mask


@dataclasses.dataclass(frozen=True)
class CFTSettings:
  """What a CFT stage's step reads (`train.defaults.cft_config` documents each field).

  Attributes:
    stage: the stage (`cft_reg`, `cft_seg`, `cft_pos_seg`).
    predictor: its predictor kind (`cft.predictors.KINDS`).
    variables: the variables its predictor measures.
    intervenable: the variables interventions are drawn from.
    measurements: the predictor's measurement names.
    distance_weights: weight of every measurement's distance.
    draw_weights: relative draw probability of every intervenable variable.
    focus: per intervenable variable, whether the curriculum draws it (None: no curriculum).
    balance: "" (plain gradient) or "structure" (`cft.balance`).
    regressor_for: variables a segmentor predictor leaves to the regressor (a hybrid).
  """
  stage: str
  predictor: str
  variables: tuple[str, ...]
  intervenable: tuple[str, ...]
  measurements: tuple[str, ...]
  distance: str
  distance_floor: float
  huber_delta: float
  aux_weight: float
  damping: float
  lmbda_init: float
  elbo_margin: float
  intervention: str
  relative_range: tuple[float, float]
  train_encoder: bool
  t_abduct: float
  reuse_elbo_latents: bool
  distance_weights: dict[str, float]
  draw_weights: tuple[float, ...]
  focus: tuple[bool, ...] | None
  focus_steps: int
  balance: str
  regressor_for: tuple[str, ...] = ()

  @property
  def reuse_latents(self) -> bool:
    """Whether the ELBO pass's posterior sample serves as the abduction (only at t = 1)."""
    return self.reuse_elbo_latents and self.t_abduct == 1.0

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict, stage: str) -> "CFTSettings":
    """Checks and parses `config.<stage>`.

    Raises:
      ValueError: the stage does not apply to the config's setting, or a field is invalid.
    """
    methods.check_applies(config, stage)
    cfg = config[stage]
    kind = methods.BY_STAGE[stage].predictor
    variables = predictors.measured_variables(config)
    intervenable = tuple(config.scm.intervenable)
    regressor_for = _regressor_for(config, stage, kind, variables)
    names = predictors.measurement_names(config, kind, regressor_for)
    if cfg.distance not in DISTANCES:
      raise ValueError(f"config.{stage}.distance={cfg.distance!r} is not one of {DISTANCES}.")
    if cfg.distance == "nll":
      _check_nll(config, stage, kind, variables)
    if cfg.balance not in balance.MODES:
      raise ValueError(f"balance={cfg.balance!r} is not one of {balance.MODES}: '' follows the "
                       f"plain gradient, 'structure' gives every structure the same gradient "
                       f"norm.")
    draw = parse_weights(cfg.draw_weights, intervenable, "draw_weights")
    return cls(
        stage=stage, predictor=kind, variables=variables, intervenable=intervenable,
        measurements=names, distance=cfg.distance, distance_floor=float(cfg.distance_floor),
        huber_delta=float(cfg.huber_delta), aux_weight=float(cfg.aux_weight),
        damping=float(cfg.damping), lmbda_init=float(cfg.lmbda_init),
        elbo_margin=float(cfg.elbo_margin), intervention=cfg.intervention,
        relative_range=tuple(float(r) for r in cfg.relative_range),
        train_encoder=bool(cfg.train_encoder), t_abduct=float(cfg.t_abduct),
        reuse_elbo_latents=bool(cfg.reuse_elbo_latents),
        distance_weights=parse_weights(cfg.distance_weights, names),
        draw_weights=tuple(draw[v] for v in intervenable), focus=_focus(cfg, intervenable),
        focus_steps=int(cfg.focus_steps), balance=cfg.balance, regressor_for=regressor_for)


def _regressor_for(config: ml_collections.ConfigDict, stage: str, kind: str,
                   variables: tuple[str, ...]) -> tuple[str, ...]:
  """`config.<stage>.regressor_for`, checked: measured variables the regressor predicts,
  under a segmentor predictor with a distance other than `nll`."""
  names = tuple(config[stage].regressor_for)
  if not names:
    return ()
  if kind == "regressor":
    raise ValueError(f"config.{stage}.regressor_for is for segmentor stages; {stage} already "
                     f"measures everything with the regressor.")
  unknown = [v for v in names if v not in variables]
  regressed = tuple(config.regressor.variables) if "regressor" in config else ()
  missing = [v for v in names if v not in regressed]
  if unknown or missing:
    raise ValueError(f"config.{stage}.regressor_for={names}: every entry must be a measured "
                     f"variable ({', '.join(variables)}) that config.regressor.variables "
                     f"({', '.join(regressed) or 'no regressor'}) predicts.")
  if config[stage].distance == "nll":
    raise ValueError(f"config.{stage}.distance='nll' is for cft_reg only.")
  return tuple(v for v in variables if v in names)


def _check_nll(config: ml_collections.ConfigDict, stage: str, kind: str,
               variables: tuple[str, ...]) -> None:
  """The `nll` distance is the regressor's Gaussian likelihood: Reg-CFT, continuous only."""
  if kind != "regressor":
    raise ValueError(f"config.{stage}.distance='nll' is the regressor's Gaussian -log q(target"
                     f" | x*), for cft_reg only; choose another distance for {stage}.")
  if config.regressor.loss != "gaussian_nll":
    raise ValueError(f"config.{stage}.distance='nll' needs a regressor trained with "
                     f"loss='gaussian_nll' (a likelihood); the regressor loss is "
                     f"{config.regressor.loss!r}.")
  binary = [v for v in variables if config.scm.variables[v].type == "binary"]
  if binary:
    raise ValueError(f"config.{stage}.distance='nll' supports continuous variables only; "
                     f"{binary} are binary.")

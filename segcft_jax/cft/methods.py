"""The methods compared in every table (SPEC §1, §4): one registry that every layer reads.

    key          stage        predictor (fine-tuned against)      setting
    no_cft       hvae         —  (the pretrained DSCM)            every
    reg_cft      cft_reg      regressor                           every
    seg_cft      cft_seg      segmentor soft areas of structures  every
    pos_seg_cft  cft_pos_seg  segmentor soft areas per region     positional

A method's HVAE lives in its stage's exported weights. The stage registry, the CFT stage, the
evaluation (which methods exist, their training predictor), the report and figures (display
name, colour) and the command line (aliases) all read `METHODS`; adding a method is one entry
here plus its predictor kind in `cft.predictors`.
"""

from __future__ import annotations

import dataclasses

import ml_collections

SETTINGS = ("global", "positional")

# How the evaluation measures like each predictor kind (`evaluation.measure.PREDICTORS`).
_EVALUATED_BY = {"regressor": "regressor", "segmentor": "segmentor_soft",
                 "positional": "segmentor_soft"}


@dataclasses.dataclass(frozen=True)
class Method:
  """One compared method.

  Attributes:
    key: its key in metrics.json and on the command line (`no_cft`, ...).
    stage: the pipeline stage whose weights hold its HVAE.
    name: display name in tables and figures.
    colour: matplotlib colour in figures.
    aliases: short command-line names (`--method=seg`).
    predictor: the predictor kind its stage fine-tunes against (`cft.predictors.KINDS`);
      None for the pretrained model.
    settings: the config settings (`config.setting`) it applies to.
  """
  key: str
  stage: str
  name: str
  colour: str
  aliases: tuple[str, ...]
  predictor: str | None = None
  settings: tuple[str, ...] = SETTINGS

  @property
  def evaluated_by(self) -> str | None:
    """The evaluation predictor that measures as its training predictor did."""
    return None if self.predictor is None else _EVALUATED_BY[self.predictor]


METHODS: tuple[Method, ...] = (
    Method("no_cft", "hvae", "No-CFT", "tab:gray", ("no", "none")),
    Method("reg_cft", "cft_reg", "Reg-CFT", "tab:orange", ("reg",), "regressor"),
    Method("seg_cft", "cft_seg", "Seg-CFT", "tab:blue", ("seg",), "segmentor"),
    Method("pos_seg_cft", "cft_pos_seg", "Pos-Seg-CFT", "tab:green", ("pos_seg", "posseg"),
           "positional", ("positional",)),
)
BY_KEY = {m.key: m for m in METHODS}
BY_STAGE = {m.stage: m for m in METHODS}
# Fine-tuning stages, in pipeline order.
CFT_STAGES = tuple(m.stage for m in METHODS if m.predictor is not None)


def display_name(key: str) -> str:
  """"seg_cft" -> "Seg-CFT" (an unknown key is shown as it is)."""
  return BY_KEY[key].name if key in BY_KEY else key


def method_key(text: str) -> str:
  """"seg" / "seg_cft" / "seg-cft" / "Seg-CFT" -> "seg_cft"; raises ValueError otherwise."""
  key = text.strip().lower().replace("-", "_")
  for m in METHODS:
    if key == m.key or key in m.aliases:
      return m.key
  aliases = [a for m in METHODS for a in m.aliases]
  raise ValueError(f"Unknown method {text!r}; choose one of {', '.join(BY_KEY)} "
                   f"(or {', '.join(aliases)}).")


def setting(config: ml_collections.ConfigDict) -> str:
  """The config's setting: "positional" (regional areas) or "global" (the default)."""
  return str(config.get("setting", "global"))


def check_applies(config: ml_collections.ConfigDict, stage: str) -> None:
  """Fails before any work when fine-tuning stage `stage` cannot run with `config`."""
  method = BY_STAGE[stage]
  if setting(config) not in method.settings:
    raise ValueError(f"{stage} ({method.name}) measures regional areas; run it with a "
                     f"positional config variant, e.g. configs/synth_vessel.py:positional.")
  if stage not in config:
    raise ValueError(f"Stage {stage!r} needs a config.{stage} section, which "
                     f"configs/{config.name}.py does not define for variant {config.variant!r}.")

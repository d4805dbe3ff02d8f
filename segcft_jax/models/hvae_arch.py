"""HVAE hyper-parameters and architecture strings (reference spec §1.2, §1.3, §2.1).

An HVAE is described by two comma-separated architecture strings:

* ``enc_arch``: stages ``<res>b<n>[d<f>]``. Stage ``i`` adds ``n`` residual blocks of width
  ``widths[i]`` and, if ``d<f>`` is present, one downsampling block of output width
  ``widths[i + 1]`` followed by ``f x f`` average pooling. The ``<res>`` number is cosmetic
  (as in the reference): resolutions follow from ``input_res`` and the pool factors.
* ``dec_arch``: stages ``<res>b<n>``, coarse to fine. Stage ``i`` adds ``n`` decoder blocks at
  resolution ``res`` (this number *is* used) with width ``widths[::-1][i]``. Decoder block
  ``j`` maps ``in_w -> out_w`` where ``out_w`` is the width of block ``j + 1`` (the last
  block keeps its own). Blocks with ``res <= z_max_res`` are stochastic.

Encoder block ``j`` maps ``in_w -> out_w`` with ``in_w`` the output width of block ``j - 1``
(block 0: its own width); all bottlenecks are ``int(in_w / bottleneck)``.

The parsed specs are plain tuples of frozen dataclasses; the modules in ``hvae_blocks`` and
``hvae`` only read them. Presets reproduce the reference configurations: ``morphomnist``,
``chest64`` (mimic192 with every resolution divided by 3) and ``chest192`` (mimic192).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Mapping

import jax.numpy as jnp

__all__ = [
    "HVAEConfig", "EncoderBlockSpec", "DecoderBlockSpec", "parse_encoder",
    "parse_decoder", "encoder_stem", "morphomnist", "chest64", "chest192", "PRESETS",
    "COMPUTE_DTYPES", "architecture_fields",
]

COMPUTE_DTYPES = ("float32", "bfloat16")
_ENC_TOKEN = re.compile(r"^(\d+)b(\d+)(?:d(\d+))?$")
_DEC_TOKEN = re.compile(r"^(\d+)b(\d+)$")


@dataclasses.dataclass(frozen=True)
class EncoderBlockSpec:
  """One encoder residual block.

  Attributes:
    in_width: Input channels.
    out_width: Output channels.
    down_rate: Average-pool factor applied after the block, or None.
    res: Spatial size of the block's output (after pooling and odd-size padding).
  """
  in_width: int
  out_width: int
  down_rate: int | None
  res: int


@dataclasses.dataclass(frozen=True)
class DecoderBlockSpec:
  """One top-down decoder block.

  Attributes:
    res: Spatial size the block works at.
    in_width: Channels of the deterministic state ``h`` entering the block.
    out_width: Channels leaving it (the next block's width).
    stochastic: Whether the block has a posterior (``res <= z_max_res``).
    kernel: Convolution size of its residual blocks (3 if ``res > 2`` else 1).
  """
  res: int
  in_width: int
  out_width: int
  stochastic: bool
  kernel: int


@dataclasses.dataclass(frozen=True)
class HVAEConfig:
  """Hyper-parameters of the hierarchical VAE (reference ``hps.py`` names).

  Attributes:
    input_res: Image side length ``R`` (square images).
    input_channels: Image channels (only 1 is supported by the likelihood).
    widths: Channel widths, finest first.
    enc_arch: Encoder architecture string, e.g. ``"32b3d2,16b3d2,1b4"``.
    dec_arch: Decoder architecture string, e.g. ``"1b4,16b4,32b4"``.
    context_dim: Length of the parent vector ``pa``.
    z_dim: Latent channels per stochastic block.
    bottleneck: Bottleneck factor of every residual block.
    z_max_res: Blocks with ``res <= z_max_res`` are stochastic; None makes all stochastic
      (the reference default 192 does the same for every shipped resolution).
    bias_max_res: Learnt bias maps exist at decoder resolutions ``<= bias_max_res``.
    cond_prior: Whether the prior sees the parents (latent mediator, spec §1.5).
    x_like: Likelihood, ``"<cov>_dgauss"`` with cov in fixed / shared / diag.
    std_init: If > 0, the pixel log-scale head starts at the constant ``log(std_init)``.
    kl_free_bits: Batch-level free bits per latent channel (0: off).
    prior_dropout_channels: ``(a, b)``: when training with ``cond_prior``, channels
      ``[a, b)`` of the prior's parent input are zeroed with probability 1/3 per batch
      (the reference's Morpho-MNIST digit dropout, spec §1.4); None: no dropout.
    block_version: ``"default"`` (GELU bottleneck) or ``"light"`` (ReLU, two convs).
    compute_dtype: ``"float32"`` or ``"bfloat16"``: the dtype of the stem, of the conv path
      and activations inside each residual block and of the decoder's latent projections
      (mixed precision). Parameters, the residual streams ``h`` and ``s`` (skips included),
      the latent Gaussians, the KL and the pixel likelihood stay float32 whatever this is,
      so checkpoints do not depend on it.
  """
  input_res: int
  input_channels: int
  widths: tuple[int, ...]
  enc_arch: str
  dec_arch: str
  context_dim: int
  z_dim: int = 16
  bottleneck: int = 4
  z_max_res: int | None = None
  bias_max_res: int = 64
  cond_prior: bool = False
  x_like: str = "diag_dgauss"
  std_init: float = 0.0
  kl_free_bits: float = 0.0
  prior_dropout_channels: tuple[int, int] | None = None
  block_version: str = "default"
  compute_dtype: str = "float32"

  def __post_init__(self):
    # Normalise sequences coming from ConfigDicts / lists so the config stays hashable.
    object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
    if self.prior_dropout_channels is not None:
      a, b = (int(v) for v in self.prior_dropout_channels)
      if not 0 <= a < b <= self.context_dim:
        raise ValueError(f"prior_dropout_channels {(a, b)} must satisfy "
                         f"0 <= a < b <= context_dim = {self.context_dim}")
      object.__setattr__(self, "prior_dropout_channels", (a, b))
    if self.block_version not in ("default", "light"):
      raise ValueError(f"block_version must be 'default' or 'light', got "
                       f"{self.block_version!r}")
    if self.compute_dtype not in COMPUTE_DTYPES:
      raise ValueError(f"compute_dtype must be one of {COMPUTE_DTYPES}, got "
                       f"{self.compute_dtype!r}")
    cov, _, like = self.x_like.partition("_")
    if like != "dgauss" or cov not in ("fixed", "shared", "diag"):
      raise ValueError(f"x_like must be '<fixed|shared|diag>_dgauss', got {self.x_like!r}")
    if self.input_channels != 1:
      raise ValueError("only 1-channel images are supported (the RGB autoregressive channel "
                       f"means of the reference are not ported); got {self.input_channels}")
    if self.bias_max_res < 1:
      raise ValueError(f"bias_max_res must be >= 1 (the top-down state starts from the 1x1 "
                       f"bias map), got {self.bias_max_res}")
    # Parse eagerly so a bad string fails at configuration time, not inside a trace.
    parse_decoder(self, parse_encoder(self))

  @property
  def dtype(self):
    """``compute_dtype`` as a JAX dtype."""
    return jnp.dtype(self.compute_dtype)

  @property
  def covariance(self) -> str:
    """The ``<cov>`` part of ``x_like``."""
    return self.x_like.split("_")[0]

  @classmethod
  def from_config(cls, cfg: Mapping[str, Any]) -> "HVAEConfig":
    """Builds a config from a ConfigDict (or mapping).

    Keys are the field names above. An optional ``preset`` key (``"morphomnist"``,
    ``"chest64"``, ``"chest192"``) starts from that preset; the other keys override it.
    Unknown keys raise so that a typo cannot silently fall back to a default.

    Args:
      cfg: The ``hvae`` section of an experiment config.

    Returns:
      The frozen config.

    Raises:
      ValueError: On unknown keys, an unknown preset or missing required fields.
    """
    items = dict(cfg.items())
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(items) - fields - {"preset"})
    if unknown:
      raise ValueError(f"unknown HVAE config keys {unknown}; valid keys: "
                       f"{sorted(fields | {'preset'})}")
    preset = items.pop("preset", None)
    if preset:
      if preset not in PRESETS:
        raise ValueError(f"unknown HVAE preset {preset!r}; valid: {sorted(PRESETS)}")
      if preset == "morphomnist":
        base = morphomnist()
      elif "context_dim" not in items:
        raise ValueError(f"HVAE preset {preset!r} needs context_dim")
      else:
        base = PRESETS[preset](int(items["context_dim"]))
      return dataclasses.replace(base, **items)
    missing = sorted(f.name for f in dataclasses.fields(cls)
                     if f.default is dataclasses.MISSING and f.name not in items)
    if missing:
      raise ValueError(f"HVAE config is missing required keys {missing}")
    return cls(**items)


def architecture_fields(model: Mapping[str, Any]) -> dict:
  """An ``hvae.model`` config section as checkpoint fingerprints record it.

  ``compute_dtype`` is left out: it changes the arithmetic, not the parameters, so a model
  trained in float32 can be fine-tuned or evaluated in bfloat16 and vice versa.
  """
  items = model.to_dict() if hasattr(model, "to_dict") else dict(model)
  return {k: v for k, v in items.items() if k != "compute_dtype"}


def parse_encoder(config: HVAEConfig) -> tuple[EncoderBlockSpec, ...]:
  """Parses ``config.enc_arch`` into per-block specs (spec §1.2).

  Returns:
    The encoder blocks in forward order. The stem is implied: a 7x7 stride-1 conv to
    ``widths[0]``, or (first stage ``"<r>b0"`` with no ``d``) a stride-2 conv to
    ``widths[1]`` that consumes that stage.

  Raises:
    ValueError: On a malformed token (named in the message), too few widths, or a
      resolution that pooling cannot reach.
  """
  widths = config.widths
  tokens = config.enc_arch.split(",")
  stages = []  # (width, down_rate)
  res = config.input_res
  for i, token in enumerate(tokens):
    m = _ENC_TOKEN.match(token.strip())
    if m is None:
      raise ValueError(f"bad enc_arch token {token!r} in {config.enc_arch!r}: expected "
                       "'<res>b<n>' or '<res>b<n>d<f>' (e.g. '32b3d2')")
    n, d = int(m.group(2)), m.group(3)
    need = i + 2 if d is not None else i + 1
    if len(widths) < need:
      raise ValueError(f"enc_arch token {token!r} (stage {i}) needs widths[{need - 1}] but "
                       f"widths has only {len(widths)} entries")
    if i == 0 and n == 0 and d is None:
      # Reference stride-2 stem of width widths[1]; the stage itself adds no block.
      if len(widths) < 2 or res % 2:
        raise ValueError(f"stride-2 stem (enc_arch token {token!r}) needs widths[1] and an "
                         "even input_res")
      stages.append((widths[1], "stem"))
      continue
    stages += [(widths[i], None)] * n
    if d is not None:
      if int(d) < 1:
        raise ValueError(f"bad enc_arch token {token!r}: pool factor must be >= 1")
      stages.append((widths[i + 1], int(d)))
  if stages and stages[0][1] == "stem":
    res //= 2
    stages = stages[1:]
  if not stages:
    raise ValueError(f"enc_arch {config.enc_arch!r} defines no encoder block")
  specs = []
  for j, (width, d) in enumerate(stages):
    in_width = stages[max(0, j - 1)][0]
    if d is not None:
      if res // d < 1:
        raise ValueError(f"enc_arch {config.enc_arch!r}: pooling by {d} at resolution {res}")
      res //= d
    if res % 2 and res > 1:  # the encoder zero-pads odd sizes (never for shipped configs)
      res += 1
    specs.append(EncoderBlockSpec(in_width, width, d, res))
  return tuple(specs)


def encoder_stem(config: HVAEConfig) -> tuple[int, int]:
  """Returns ``(width, stride)`` of the 7x7 encoder stem (spec §1.2)."""
  m = _ENC_TOKEN.match(config.enc_arch.split(",")[0].strip())
  if m is not None and int(m.group(2)) == 0 and m.group(3) is None:
    return config.widths[1], 2
  return config.widths[0], 1


def parse_decoder(config: HVAEConfig,
                  encoder: tuple[EncoderBlockSpec, ...] | None = None,
                  ) -> tuple[DecoderBlockSpec, ...]:
  """Parses ``config.dec_arch`` into per-block specs (spec §1.2, §1.3).

  Args:
    config: The HVAE config.
    encoder: Encoder specs, to check that every stochastic block finds an encoder
      activation of its resolution and width (parsed from ``config`` if None).

  Returns:
    The decoder blocks, coarse to fine.

  Raises:
    ValueError: On a malformed token (named in the message), too few widths, resolutions
      that are not increasing integer multiples starting at 1 and ending at ``input_res``,
      or a stochastic block without a matching encoder activation.
  """
  encoder = parse_encoder(config) if encoder is None else encoder
  widths = config.widths[::-1]
  tokens = config.dec_arch.split(",")
  stages = []  # (res, width)
  for i, token in enumerate(tokens):
    m = _DEC_TOKEN.match(token.strip())
    if m is None:
      raise ValueError(f"bad dec_arch token {token!r} in {config.dec_arch!r}: expected "
                       "'<res>b<n>' (e.g. '16b4')")
    if i >= len(widths):
      raise ValueError(f"dec_arch token {token!r} (stage {i}) needs widths[::-1][{i}] but "
                       f"widths has only {len(widths)} entries")
    res, n = int(m.group(1)), int(m.group(2))
    if stages and (res <= stages[-1][0] or res % stages[-1][0]):
      raise ValueError(f"dec_arch token {token!r}: resolution {res} is not an integer "
                       f"multiple of the previous stage's {stages[-1][0]}")
    stages += [(res, widths[i])] * n
  if not stages or stages[0][0] != 1:
    raise ValueError(f"dec_arch {config.dec_arch!r} must start at resolution 1 with >= 1 "
                     "block (the top-down state starts from the 1x1 bias map)")
  if stages[-1][0] != config.input_res:
    raise ValueError(f"dec_arch {config.dec_arch!r} ends at resolution {stages[-1][0]}, "
                     f"not input_res = {config.input_res}")
  acts = {spec.res: spec.out_width for spec in encoder}  # last block per res wins
  z_max = config.z_max_res if config.z_max_res is not None else config.input_res
  specs = []
  for j, (res, width) in enumerate(stages):
    out_width = stages[min(len(stages) - 1, j + 1)][1]
    stochastic = res <= z_max
    if stochastic and acts.get(res) != width:
      raise ValueError(f"decoder block {j} at resolution {res} has width {width} but the "
                       f"encoder activation there has width {acts.get(res)} "
                       f"(encoder resolutions: {sorted(acts)})")
    if specs and not specs[-1].stochastic and stochastic:
      # Latent lists are indexed by global block index (spec §1.4).
      raise ValueError("all stochastic decoder blocks must precede the deterministic ones")
    specs.append(DecoderBlockSpec(res, width, out_width, stochastic, 3 if res > 2 else 1))
  return tuple(specs)


def morphomnist() -> HVAEConfig:
  """Reference Morpho-MNIST HVAE (run_local.sh: conditional prior, digit dropout)."""
  return HVAEConfig(
      input_res=32, input_channels=1, widths=(16, 32, 64, 128, 256),
      enc_arch="32b3d2,16b3d2,8b3d2,4b3d4,1b4", dec_arch="1b4,4b4,8b4,16b4,32b4",
      context_dim=12, cond_prior=True, prior_dropout_channels=(2, 12))


def chest192(context_dim: int) -> HVAEConfig:
  """Reference mimic192 HVAE (exogenous prior, the two 192x192 blocks deterministic)."""
  return HVAEConfig(
      input_res=192, input_channels=1, widths=(32, 64, 96, 128, 160, 192, 512),
      enc_arch="192b1d2,96b3d2,48b7d2,24b11d2,12b7d2,6b3d6,1b2",
      dec_arch="1b2,6b4,12b8,24b12,48b8,96b4,192b2", context_dim=context_dim,
      z_max_res=96, bias_max_res=64, cond_prior=False)


def chest64(context_dim: int) -> HVAEConfig:
  """mimic192 with every resolution divided by 3 (spec §2.1, "chest at 64x64")."""
  return HVAEConfig(
      input_res=64, input_channels=1, widths=(32, 64, 96, 128, 160, 192, 512),
      enc_arch="64b1d2,32b3d2,16b7d2,8b11d2,4b7d2,2b3d2,1b2",
      dec_arch="1b2,2b4,4b8,8b12,16b8,32b4,64b2", context_dim=context_dim,
      z_max_res=32, bias_max_res=16, cond_prior=False)


PRESETS = {"morphomnist": morphomnist, "chest64": chest64, "chest192": chest192}

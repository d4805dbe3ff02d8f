"""TFDS builder of Morpho-MNIST t10k (SPEC §2 morphomnist; causal-gen spec §5 and §2.2).

Source: the 10,000 t10k images, their digit labels and the morphometrics CSV shipped with
causal-gen (`datasets/morphomnist`): `t10k-images-idx3-ubyte.gz`, `t10k-labels-idx1-ubyte.gz`
and `t10k-morpho.csv` (columns `index`, `thickness`, `intensity`; row i describes image i).
The 60k training images are not available, so all three splits come from t10k: a permutation
of the 10k indices drawn with the config seed gives train / validation / test (8k / 1k / 1k by
default) — deterministic, disjoint, and independent of the build machine.

Each example stores:
  image         uint8 [32, 32, 1]: the 28x28 digit zero-padded by 2 px on every side (the
                centred 32x32 crop of causal-gen's valid/test loader; §2.2).
  mask          uint8 [32, 32]: 1 ("stroke") where the unpadded image is >= 0.5 * its own
                maximum, else 0 ("background"); the padding is background.
  digit         int64 in 0..9.
  thickness     float32, stroke thickness in pixels (CSV; the SCM's ground-truth parent).
  intensity     float32, stroke intensity in 0..255 units (CSV).
  stroke_area   float32, number of stroke pixels of `mask`.
  index         int64, the row of the example in the t10k files.

Where the files are: `config.data.source_dir` when non-empty, else the environment variable
`SEGCFT_MORPHOMNIST_DIR`, else `<repository root>/../shared/data/morphomnist`. The IDX files
are parsed here (big-endian header: two zero bytes, dtype code 0x08 = uint8, number of
dimensions, then one uint32 size per dimension, then the raw bytes); gzip-compressed or plain.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import os
import pathlib
import zlib

import ml_collections
import numpy as np
import tensorflow_datasets as tfds

SPLITS = ("train", "validation", "test")
CLASS_NAMES = ("background", "stroke")
MODEL_KEYS = ("image", "mask", "digit", "thickness", "intensity", "stroke_area")

IMAGES_FILE = "t10k-images-idx3-ubyte.gz"
LABELS_FILE = "t10k-labels-idx1-ubyte.gz"
MORPHO_FILE = "t10k-morpho.csv"
ENV_VAR = "SEGCFT_MORPHOMNIST_DIR"
NUM_EXAMPLES = 10_000
PAD = 2  # 28 + 2 * 2 = 32, as causal-gen's evaluation loader.
MASK_THRESHOLD = 0.5  # Stroke = pixel >= 0.5 * the image's maximum.

# Parent normalisation of causal-gen (§2.2): v_n = 2 (v - low) / (high - low) - 1 with the
# train-set min / max, so the train values span [-1, 1]; the t10k values lie inside.
THICKNESS_RANGE = (0.87598526, 6.255515)
INTENSITY_RANGE = (66.601204, 254.90317)

_IDX_DTYPES = {0x08: np.uint8}
_WHERE = ("Copy them from causal-gen's datasets/morphomnist (github.com/biomedia-mira/"
          "causal-gen), then set config.data.source_dir or ${env}.")


def default_source_dir() -> pathlib.Path:
  """`<repository root>/../shared/data/morphomnist` (repository root = parent of the package)."""
  repo_root = pathlib.Path(__file__).resolve().parents[2]
  return repo_root.parent / "shared" / "data" / "morphomnist"


def resolve_source_dir(source_dir: str = "") -> pathlib.Path:
  """The directory holding the t10k files: `source_dir`, else $SEGCFT_MORPHOMNIST_DIR, else
  `default_source_dir()`."""
  return pathlib.Path(source_dir or os.environ.get(ENV_VAR) or default_source_dir())


def _existing(directory: pathlib.Path, name: str) -> pathlib.Path:
  """`directory/name`, or its uncompressed twin (name without `.gz`), or FileNotFoundError."""
  candidates = [directory / name]
  if name.endswith(".gz"):
    candidates.append(directory / name[:-3])
  for path in candidates:
    if path.is_file():
      return path
  raise FileNotFoundError(
      f"Morpho-MNIST file {candidates[0]} not found. " + _WHERE.replace("{env}", ENV_VAR))


def read_idx(path: str | os.PathLike) -> np.ndarray:
  """Parses an IDX file (gzip-compressed if its name ends in .gz).

  Args:
    path: the file.

  Returns:
    The array with the shape of the header.

  Raises:
    FileNotFoundError: the file does not exist.
    ValueError: a bad magic number, an unsupported dtype, or fewer bytes than the header
      announces (truncated file); the message names the file.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"IDX file {path} not found.")
  try:
    if path.suffix == ".gz":
      with gzip.open(path, "rb") as f:
        data = f.read()
    else:
      data = path.read_bytes()
  except (EOFError, OSError, zlib.error) as e:
    raise ValueError(f"IDX file {path} cannot be decompressed ({type(e).__name__}: {e}); it is "
                     f"truncated or corrupt — copy it again.") from e
  if len(data) < 4 or data[0] != 0 or data[1] != 0:
    raise ValueError(f"IDX file {path} does not start with the IDX magic number (two zero "
                     f"bytes, dtype, ndim); it is not an IDX file.")
  dtype_code, ndim = data[2], data[3]
  if dtype_code not in _IDX_DTYPES:
    raise ValueError(f"IDX file {path} has dtype code 0x{dtype_code:02x}; only uint8 (0x08) "
                     f"is supported.")
  header = 4 + 4 * ndim
  if len(data) < header:
    raise ValueError(f"IDX file {path} is truncated: {len(data)} bytes, shorter than its "
                     f"{header}-byte header.")
  shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
  expected = header + int(np.prod(shape, dtype=np.int64))
  if len(data) != expected:
    raise ValueError(f"IDX file {path} is truncated or padded: the header announces shape "
                     f"{shape} ({expected} bytes), the file has {len(data)} bytes.")
  return np.frombuffer(data, _IDX_DTYPES[dtype_code], offset=header).reshape(shape)


def read_morpho_csv(path: str | os.PathLike, num: int) -> dict[str, np.ndarray]:
  """Reads `index, thickness, intensity` rows; row i must describe image i.

  Raises:
    ValueError: missing columns, a row count other than `num`, an index out of order or an
      unparsable value; the message names the file and the row.
  """
  path = pathlib.Path(path)
  with open(path, newline="") as f:
    reader = csv.DictReader(f)
    missing = {"index", "thickness", "intensity"} - set(reader.fieldnames or ())
    if missing:
      raise ValueError(f"{path} lacks the column(s) {sorted(missing)}; found "
                       f"{reader.fieldnames}.")
    thickness, intensity = [], []
    for i, row in enumerate(reader):
      try:
        index, t, v = int(row["index"]), float(row["thickness"]), float(row["intensity"])
      except (TypeError, ValueError) as e:
        raise ValueError(f"{path}, data row {i}: cannot parse {row} ({e}).") from e
      if index != i:
        raise ValueError(f"{path}, data row {i}: index is {index}, expected {i} (row i must "
                         f"describe image i).")
      thickness.append(t)
      intensity.append(v)
  if len(thickness) != num:
    raise ValueError(f"{path} has {len(thickness)} data rows; the images file has {num}.")
  return dict(thickness=np.asarray(thickness, np.float32),
              intensity=np.asarray(intensity, np.float32))


def load_t10k(source_dir: str | os.PathLike) -> dict[str, np.ndarray]:
  """The t10k arrays: images uint8 [N, 28, 28], digit, thickness, intensity [N].

  Raises:
    FileNotFoundError: a file is missing (the message says where to get it).
    ValueError: a file is truncated or inconsistent with the others.
  """
  directory = pathlib.Path(source_dir)
  images_path = _existing(directory, IMAGES_FILE)
  labels_path = _existing(directory, LABELS_FILE)
  morpho_path = _existing(directory, MORPHO_FILE)
  images = read_idx(images_path)
  digits = read_idx(labels_path)
  if images.ndim != 3 or images.shape[1:] != (28, 28):
    raise ValueError(f"{images_path} holds shape {images.shape}, expected [N, 28, 28].")
  if digits.shape != images.shape[:1]:
    raise ValueError(f"{labels_path} holds {digits.shape} labels for {len(images)} images in "
                     f"{images_path}.")
  if digits.max(initial=0) > 9:
    raise ValueError(f"{labels_path} holds a label {digits.max()} outside 0..9.")
  return dict(images=images, digit=digits.astype(np.int64),
              **read_morpho_csv(morpho_path, len(images)))


def pad_images(images: np.ndarray) -> np.ndarray:
  """Zero-pads [N, 28, 28] to [N, 32, 32] (PAD px on every side)."""
  return np.pad(images, ((0, 0), (PAD, PAD), (PAD, PAD)))


def stroke_mask(images: np.ndarray) -> np.ndarray:
  """uint8 [N, H, W]: 1 where a pixel is >= MASK_THRESHOLD * its image's maximum (> 0)."""
  peak = images.reshape(len(images), -1).max(axis=1).astype(np.float32)[:, None, None]
  return ((images >= MASK_THRESHOLD * peak) & (peak > 0)).astype(np.uint8)


def split_indices(sizes: dict[str, int], seed: int,
                  num_total: int = NUM_EXAMPLES) -> dict[str, np.ndarray]:
  """Disjoint index sets: consecutive blocks, in SPLITS order, of a seeded permutation.

  Raises:
    ValueError: the sizes add up to more than `num_total`.
  """
  if sum(sizes.values()) > num_total or min(sizes.values()) < 1:
    raise ValueError(f"Split sizes {sizes} must be >= 1 and add up to at most {num_total} "
                     f"(the t10k images); lower config.data.num_*.")
  perm = np.random.default_rng(seed).permutation(num_total)
  out, start = {}, 0
  for split in SPLITS:
    out[split] = perm[start:start + sizes[split]]
    start += sizes[split]
  return out


def normalise(values: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
  """causal-gen's parent scaling to [-1, 1] (train range; §2.2)."""
  low, high = value_range
  return 2.0 * (np.asarray(values, np.float32) - low) / (high - low) - 1.0


@dataclasses.dataclass(kw_only=True)
class MorphoMNISTConfig(tfds.core.BuilderConfig):
  """Split sizes and seed (encoded in the name) and the source directory (not in the name:
  any copy of the same files gives the same build)."""
  num_train: int = 8000
  num_validation: int = 1000
  num_test: int = 1000
  seed: int = 0
  source_dir: str = ""

  @classmethod
  def make(cls, num_train: int, num_validation: int, num_test: int, seed: int,
           source_dir: str = "") -> "MorphoMNISTConfig":
    name = f"t10k_n{num_train}-{num_validation}-{num_test}_seed{seed}"
    return cls(name=name, num_train=num_train, num_validation=num_validation,
               num_test=num_test, seed=seed, source_dir=source_dir)

  def split_sizes(self) -> dict[str, int]:
    return dict(train=self.num_train, validation=self.num_validation, test=self.num_test)


class MorphoMNIST(tfds.core.GeneratorBasedBuilder):
  """Morpho-MNIST t10k digits with stroke masks, thickness, intensity and digit labels."""

  name = "morphomnist"  # As config.data.name (TFDS would derive "morpho_mnist").
  VERSION = tfds.core.Version("1.0.0")
  # Builds are requested with `MorphoMNISTConfig.make(...)`; TFDS needs one registered config.
  BUILDER_CONFIGS = [MorphoMNISTConfig(name="default")]

  def _info(self) -> tfds.core.DatasetInfo:
    s = 28 + 2 * PAD
    features = {
        "image": tfds.features.Tensor(shape=(s, s, 1), dtype=np.uint8, encoding="zlib"),
        "mask": tfds.features.Tensor(shape=(s, s), dtype=np.uint8, encoding="zlib"),
        "digit": tfds.features.Scalar(dtype=np.int64),
        "index": tfds.features.Scalar(dtype=np.int64),
    }
    features.update({k: tfds.features.Scalar(dtype=np.float32)
                     for k in ("thickness", "intensity", "stroke_area")})
    return tfds.core.DatasetInfo(
        builder=self,
        description="Morpho-MNIST t10k split 8k/1k/1k (segcft-jax, SPEC §2 morphomnist).",
        features=tfds.features.FeaturesDict(features))

  def _split_generators(self, dl_manager):
    del dl_manager  # Local files only.
    cfg = self.builder_config
    data = load_t10k(resolve_source_dir(cfg.source_dir))
    indices = split_indices(cfg.split_sizes(), cfg.seed, num_total=len(data["images"]))
    return {split: self._generate_examples(data, indices[split]) for split in SPLITS}

  def _generate_examples(self, data: dict[str, np.ndarray], indices: np.ndarray):
    for i in indices:
      image = pad_images(data["images"][i][None])[0]  # [32, 32]
      mask = stroke_mask(image[None])[0]
      yield int(i), {
          "image": image[..., None], "mask": mask, "digit": int(data["digit"][i]),
          "thickness": data["thickness"][i], "intensity": data["intensity"][i],
          "stroke_area": np.float32(mask.sum()), "index": int(i)}


def make_builder(cfg: ml_collections.ConfigDict, data_dir: str) -> MorphoMNIST:
  """The builder for the `data` config section (num_*, seed, source_dir)."""
  config = MorphoMNISTConfig.make(cfg.num_train, cfg.num_validation, cfg.num_test, cfg.seed,
                                  cfg.source_dir)
  return MorphoMNIST(config=config, data_dir=data_dir, file_format="array_record")

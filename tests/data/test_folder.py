"""The folder dataset: phantom examples written as files build back to the native records, and
every bad input gets a message naming the file or row."""

import csv
import os
import pathlib

import ml_collections
import numpy as np
import pytest
from PIL import Image

from segcft_jax import config_files
from segcft_jax.data import datasets, folder, inspection, synth_vessel

CHEST_CLASSES = ("background", "left_lung", "right_lung", "heart")
VESSEL_CLASSES = ("background", "lumen", "calcified", "noncalcified")  # the phantom's labels
SEX = ("F", "M")  # text in the table; category index = the phantom's code


def native(tmp_path_factory, name: str, sizes=(20, 6, 6)):
  """A built phantom dataset (32x32) and its records by split."""
  cfg = ml_collections.ConfigDict(dict(name=name, data_dir="", seed=0, image_size=32,
                                       num_train=sizes[0], num_validation=sizes[1],
                                       num_test=sizes[2]))
  b = datasets.builder(cfg, str(tmp_path_factory.mktemp(name)))
  b.download_and_prepare(file_format="array_record")
  return {s: [b.as_data_source(s)[i] for i in range(len(b.as_data_source(s)))]
          for s in ("train", "validation", "test")}


def write_folder(root: pathlib.Path, records: dict, regions: bool = False,
                 split_column: bool = True, sex_text: bool = True) -> dict[str, dict]:
  """The records as a folder: 8-bit PNG images, masks [, regions] and variables.csv (sex as
  the text of SEX, or as its 0 / 1 code)."""
  for d in ("images", "masks") + (("regions",) if regions else ()):
    (root / d).mkdir(parents=True, exist_ok=True)
  by_stem, rows = {}, []
  for split, recs in records.items():
    for r in recs:
      stem = f"{split}_{int(r['index']):03d}"
      by_stem[stem] = dict(r, split=split)
      Image.fromarray(r["image"][..., 0]).save(root / "images" / f"{stem}.png")
      Image.fromarray(r["mask"]).save(root / "masks" / f"{stem}.png")
      if regions:
        Image.fromarray(r["regions"]).save(root / "regions" / f"{stem}.png")
      sex = SEX[int(r["sex"])] if sex_text else str(int(r["sex"]))
      rows.append(dict(stem=stem, sex=sex, age=repr(float(r["age"])),
                       **({"split": split} if split_column else {}),
                       group=f"patient{int(r['index']) // 2}_{split}"))
  write_table(root, rows)
  return by_stem


def write_table(root: pathlib.Path, rows: list[dict]) -> None:
  with open(root / "variables.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)


def read_table(root: pathlib.Path) -> list[dict]:
  with open(root / "variables.csv", newline="") as f:
    return list(csv.DictReader(f))


def folder_cfg(root, classes=CHEST_CLASSES, **kw) -> ml_collections.ConfigDict:
  base = dict(name="folder", data_dir="", directory=str(root), image_size=32, classes=classes,
              labels=(), regions=(), columns=("sex", "age"),
              categories=ml_collections.ConfigDict({"sex": SEX}), table="variables.csv",
              stem_column="stem", split_fractions=(0.6, 0.2, 0.2), intensity_percentiles=(),
              max_skip_fraction=0.05, seed=0)
  base.update(kw)
  return ml_collections.ConfigDict(base)


def build(cfg, work):
  b = datasets.builder(cfg, str(work))
  b.download_and_prepare(file_format="array_record")
  return b


def records(b) -> dict[str, dict]:
  """stem -> record, over every split (with its split)."""
  out = {}
  for s in ("train", "validation", "test"):
    src = b.as_data_source(s)
    for i in range(len(src)):
      r = src[i]
      out[r["stem"].decode()] = dict(r, split=s)
  return out


@pytest.fixture(scope="module")
def chest(tmp_path_factory):
  recs = native(tmp_path_factory, "synth_chest")
  root = tmp_path_factory.mktemp("chest_folder")
  return recs, root, write_folder(root, recs)


def test_chest_folder_builds_the_native_records(chest, tmp_path):
  _, root, by_stem = chest
  b = build(folder_cfg(root), tmp_path)
  got = records(b)
  assert set(got) == set(by_stem)
  for stem, want in by_stem.items():
    r = got[stem]
    assert r["split"] == want["split"]
    np.testing.assert_array_equal(r["image"], want["image"])  # 8-bit PNG: lossless
    np.testing.assert_array_equal(r["mask"], want["mask"])
    for a in ("left_lung_area", "right_lung_area", "heart_area"):
      assert r[a] == want[a], (stem, a)  # exactly: counted on the same mask
    assert r["sex"] == want["sex"] and r["age"] == np.float32(want["age"])
  spec = datasets.spec(folder_cfg(root))
  assert spec.class_names == CHEST_CLASSES and spec.region_names == ()
  assert spec.model_keys == ("image", "mask", "sex", "age", "left_lung_area",
                             "right_lung_area", "heart_area")
  report = folder.build_report(b)
  assert report["num_skipped"] == 0 and report["image_sizes"] == {"32x32": len(by_stem)}
  assert report["depths"] == {".png 8-bit": len(by_stem)}


def test_vessel_folder_with_regions_builds_the_native_records(tmp_path_factory, tmp_path):
  recs = native(tmp_path_factory, "synth_vessel")
  root = tmp_path_factory.mktemp("vessel_folder")
  by_stem = write_folder(root, recs, regions=True)
  cfg = folder_cfg(root, classes=VESSEL_CLASSES, regions=synth_vessel.REGION_NAMES)
  got = records(build(cfg, tmp_path))
  assert set(got) == set(by_stem)
  for stem, want in by_stem.items():
    r = got[stem]
    np.testing.assert_array_equal(r["regions"], want["regions"])
    for name in synth_vessel.GLOBAL_AREAS + synth_vessel.REGIONAL_AREAS:
      assert r[name] == want[name], (stem, name)
  assert datasets.spec(cfg).region_names == synth_vessel.REGION_NAMES


def test_without_a_split_column_groups_are_split_deterministically(chest, tmp_path):
  recs, _, _ = chest
  root = tmp_path / "f"
  write_folder(root, recs, split_column=False)
  a, b = (records(build(folder_cfg(root, seed=s), tmp_path / f"w{s}")) for s in (0, 1))
  again = records(build(folder_cfg(root, seed=0, max_skip_fraction=0.06), tmp_path / "w2"))
  assert {k: r["split"] for k, r in a.items()} == {k: r["split"] for k, r in again.items()}
  assert {k: r["split"] for k, r in a.items()} != {k: r["split"] for k, r in b.items()}
  for recs_ in (a, b):
    split_of = {}
    for r in recs_.values():  # no group (patient) in two splits
      assert split_of.setdefault(r["group"], r["split"]) == r["split"]
    assert {r["split"] for r in recs_.values()} == {"train", "validation", "test"}


def _bad_folder(chest, root: pathlib.Path) -> None:
  """The chest folder with one bad input of each skippable kind (table lines named)."""
  recs, _, _ = chest
  write_folder(root, recs)
  rows = read_table(root)
  os.remove(root / "masks" / f"{rows[0]['stem']}.png")  # image without a mask
  os.remove(root / "images" / f"{rows[1]['stem']}.png")  # row without an image
  rows[2]["age"] = "unknown"  # non-numeric value in a numeric column
  rows[3]["sex"] = "X"  # not one of the categories
  mask = np.array(Image.open(root / "masks" / f"{rows[4]['stem']}.png"))
  mask[0, 0] = 7
  Image.fromarray(mask).save(root / "masks" / f"{rows[4]['stem']}.png")  # unknown label
  Image.fromarray(np.zeros((40, 40), np.uint8)).save(root / "masks" / f"{rows[5]['stem']}.png")
  # An image of another size, with its mask: resized, counted and reported.
  big = np.array(Image.open(root / "images" / f"{rows[6]['stem']}.png").resize((48, 48)))
  Image.fromarray(big).save(root / "images" / f"{rows[6]['stem']}.png")
  m = np.array(Image.open(root / "masks" / f"{rows[6]['stem']}.png").resize((48, 48),
                                                                            Image.NEAREST))
  Image.fromarray(m).save(root / "masks" / f"{rows[6]['stem']}.png")
  Image.fromarray(np.zeros((32, 32), np.uint8)).save(root / "images" / "orphan.png")
  write_table(root, rows)


def test_bad_examples_are_skipped_counted_and_named(chest, tmp_path):
  root = tmp_path / "bad"
  _bad_folder(chest, root)
  rows = read_table(root)
  b = build(folder_cfg(root, max_skip_fraction=0.3), tmp_path / "w")
  report = folder.build_report(b)
  assert report["skipped"] == {"no_mask": 1, "no_image": 1, "bad_value": 2, "bad_labels": 1,
                               "size_mismatch": 1, "no_row": 1}
  text = "\n".join(report["skipped_examples"])
  for needle in (f"no file masks/{rows[0]['stem']}.* for image {rows[0]['stem']}.png",
                 f"line 3 ({rows[1]['stem']}): no file images/{rows[1]['stem']}.*",
                 "column 'age' holds 'unknown', not a number",
                 "column 'sex' holds 'X', not one of the categories ('F', 'M')",
                 f"mask {rows[4]['stem']}.png has values [7] not in (0, 1, 2, 3) "
                 "(config.data.labels)",
                 f"mask {rows[5]['stem']}.png is 40x40, its image 32x32",
                 "no row of variables.csv has stem 'orphan'"):
    assert needle in text, needle
  assert report["image_sizes"] == {"32x32": len(rows) - 7, "48x48": 1}  # of those written
  got = records(b)
  assert got[rows[6]["stem"]]["image"].shape == (32, 32, 1)  # resized to the model size
  assert len(got) == len(rows) - 6


def test_too_many_bad_examples_stop_the_build_and_keep_earlier_builds(chest, tmp_path):
  root = tmp_path / "bad"
  _bad_folder(chest, root)
  good = build(folder_cfg(root, max_skip_fraction=0.3), tmp_path / "w")
  with pytest.raises(ValueError, match=r"\d+ of \d+ examples of .* are bad .* more than "
                                       r"config.data.max_skip_fraction=0.05"):
    build(folder_cfg(root), tmp_path / "w")
  assert not datasets.builder(folder_cfg(root), str(tmp_path / "w")).is_prepared()
  assert len(records(good)) == len(read_table(root)) - 6  # the earlier build still reads


def test_dataset_wide_problems_stop_the_build_with_one_message(chest, tmp_path):
  recs, _, _ = chest
  root = tmp_path / "f"
  write_folder(root, recs)
  with pytest.raises(ValueError, match=r"variables.csv has no column 'weight' \(named by the "
                                       r"graph"):
    build(folder_cfg(root, columns=("sex", "age", "weight")), tmp_path / "w1")
  with pytest.raises(ValueError, match="set --config.data.directory=DIR"):
    build(folder_cfg(""), tmp_path / "w2")
  with pytest.raises(FileNotFoundError, match="does not exist"):
    build(folder_cfg(tmp_path / "nowhere"), tmp_path / "w3")
  rows = read_table(root)
  write_table(root, [dict(r, split="train" if r["split"] == "test" else r["split"])
                     for r in rows])
  with pytest.raises(ValueError, match=r"The test split of .* would be empty"):
    build(folder_cfg(root), tmp_path / "w4")
  write_table(root, rows)
  rgb = np.zeros((32, 32, 3), np.uint8)
  Image.fromarray(rgb).save(root / "images" / f"{rows[0]['stem']}.png")
  with pytest.raises(ValueError, match=rf"{rows[0]['stem']}.png has 3 channels .* must be grey"):
    build(folder_cfg(root), tmp_path / "w5")
  assert not list((tmp_path / "w5").rglob("*.array_record*"))  # nothing half-written


def test_npy_16_bit_png_and_nifti_images_read_as_grey(tmp_path):
  from segcft_jax.data import images  # pylint: disable=g-import-not-at-top
  a = (np.arange(40 * 30, dtype=np.uint16).reshape(40, 30) * 50)
  Image.fromarray(a).save(tmp_path / "a.png")
  np.save(tmp_path / "b.npy", a.astype(np.float32))
  got, depth = images.read_array(tmp_path / "a.png")
  np.testing.assert_array_equal(got, a)
  assert depth == "16-bit"
  got, depth = images.read_array(tmp_path / "b.npy")
  assert depth == "float32" and np.array_equal(got, a)
  out = images.to_model_image(got, 32, (0.0, 100.0))
  assert out.shape == (32, 32) and out.min() == 0 and out.max() == 255
  assert out[:, 0].max() == 0  # the 40x30 image is padded by 5 columns of zeros each side
  with pytest.raises(images.RowError, match="no fixed range; set config.data.intensity"):
    images.to_model_image(got, 32, ())
  nibabel = pytest.importorskip("nibabel")
  small = (a // 4).astype(np.int16)
  nibabel.save(nibabel.Nifti1Image(small[..., None], np.eye(4)), tmp_path / "c.nii.gz")
  got, _ = images.read_array(tmp_path / "c.nii.gz")
  np.testing.assert_array_equal(got, small)
  assert images.stem(tmp_path / "c.nii.gz") == "c"


def test_inspector_measures_and_declares_the_folder(chest, tmp_path):
  _, root, by_stem = chest
  found = inspection.inspect_folder(root, image_size=32, classes=CHEST_CLASSES)
  assert found.counts["examples"] == len(by_stem) and found.counts["images_without_row"] == 0
  assert found.image_sizes == {"32x32": len(by_stem)}
  assert found.columns["sex"]["kind"] == "text" and found.columns["sex"]["categories"] == SEX
  variables, categories = inspection.declare(found, inspection.parse_graph(
      "sex, age -> left_lung_area, right_lung_area, heart_area"))
  assert categories == {"sex": SEX}
  assert variables["sex"] == dict(type="binary", parents=())
  assert variables["heart_area"] == dict(type="continuous", parents=("sex", "age"),
                                         norm="log_standard", mean=None, std=None)
  stats = inspection.measured_statistics(found, variables)
  areas = np.array([r["heart_area"] for r in by_stem.values()], np.float64)
  assert stats["heart_area"]["mean"] == pytest.approx(np.log(areas).mean(), abs=1e-6)
  assert stats["age"]["norm"] == "standard"
  text = inspection.config_file(found, variables, categories, ("heart_area",), image_size=32,
                                name="my_chest", command="python -m segcft_jax.inspect ...")
  path = tmp_path / "my_chest.py"
  path.write_text(text)
  config = config_files.load(f"{path}:quick")
  assert config.name == "my_chest" and config.data.directory == str(root.resolve())
  assert config.data.columns == ("sex", "age") and tuple(config.data.categories.sex) == SEX
  assert config.cft_variables == ("heart_area",) and config.setting == "global"
  assert config.scm.variables.heart_area.mean is None  # measured by the data stage
  with pytest.raises(ValueError, match=r"The graph names \['weight'\]"):
    inspection.declare(found, inspection.parse_graph("weight -> heart_area"))
  with pytest.raises(ValueError, match="cycle|unknown parent|lists itself"):
    inspection.declare(found, inspection.parse_graph("heart_area -> heart_area"))


def test_inspector_command_prints_the_config_and_names_bad_input(chest, tmp_path, capsys):
  from segcft_jax import inspect as inspect_cli  # pylint: disable=g-import-not-at-top
  _, root, by_stem = chest
  assert inspect_cli.main([f"--dir={root}", "--image_size=32",
                           f"--classes={','.join(CHEST_CLASSES)}"]) == 0
  out = capsys.readouterr().out
  assert f"examples {len(by_stem)}" in out and "mask values (masks holding each): 0=" in out
  assert "left_lung_area           log_standard" in out
  assert "def get_config(arg=None):" in out  # the config file, printed
  assert inspect_cli.main([f"--dir={tmp_path / 'nowhere'}"]) == 1
  assert capsys.readouterr().err.strip().endswith("is not a directory (layout: DIR/images/"
                                                  "<stem>.png|.npy|.dcm|.nii[.gz], "
                                                  "DIR/masks/<stem>.png|.npy, optional "
                                                  "DIR/regions/<stem>.png|.npy and "
                                                  "DIR/variables.csv (a `stem` column, the "
                                                  "variables, optional `split` and `group`)).")
  assert inspect_cli.main([f"--dir={root}", "--graph=age heart_area"]) == 1
  assert "expected 'parent, ... -> child, ...'" in capsys.readouterr().err


def test_dicom_pixels_get_rescale_and_monochrome1_is_inverted(tmp_path):
  from segcft_jax.data import images  # pylint: disable=g-import-not-at-top
  pydicom = pytest.importorskip("pydicom")
  from pydicom.dataset import FileMetaDataset  # pylint: disable=g-import-not-at-top
  a = (np.arange(12 * 10, dtype=np.uint16).reshape(12, 10) * 7)
  meta = FileMetaDataset()
  meta.MediaStorageSOPClassUID = pydicom.uid.SecondaryCaptureImageStorage
  meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
  meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
  for photometric, path in (("MONOCHROME2", tmp_path / "a.dcm"),
                            ("MONOCHROME1", tmp_path / "b.dcm")):
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.Rows, ds.Columns, ds.SamplesPerPixel = 12, 10, 1
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PhotometricInterpretation = photometric
    ds.RescaleSlope, ds.RescaleIntercept = 2, -100
    ds.PixelData = a.tobytes()
    ds.save_as(path, enforce_file_format=True)
  got, depth = images.read_array(tmp_path / "a.dcm")
  assert depth == "12-bit"
  np.testing.assert_array_equal(got, a * 2.0 - 100)
  inverted, _ = images.read_array(tmp_path / "b.dcm")
  np.testing.assert_array_equal(inverted, got.max() + got.min() - got)  # brighter is higher

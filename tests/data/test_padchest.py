"""PadChest + CheXmask build on tiny fixtures written in the real formats.

The fixture: 16-bit PNGs of 40x48 px (some under ImageDir subfolders, some flat), a CheXmask
table whose RLE strings encode known masks, and a PadChest metadata table with the real
column names and value formats (YYYYMMDD study dates, birth years as floats, "M"/"F").
"""

import csv
import os

import ml_collections
import numpy as np
import pytest
from PIL import Image

from segcft_jax import config_files, stages
from segcft_jax.data import chexmask, datasets, images, padchest, splits

CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "padchest.py")

H, W = 40, 48
META_COLUMNS = ("ImageID", "ImageDir", "StudyDate_DICOM", "StudyID", "PatientID", "PatientBirth",
                "PatientSex_DICOM", "Projection", "SpatialResolution_DICOM", "Rows_DICOM",
                "Columns_DICOM", "Report")
MASK_COLUMNS = ("ImageID", "Dice RCA (Max)", "Dice RCA (Mean)", "Landmarks", "Left Lung",
                "Right Lung", "Heart", "Height", "Width")


def known_masks(k: int) -> dict[str, np.ndarray]:
  """Left / right lung rectangles and a heart ellipse overlapping the left lung."""
  yy, xx = np.mgrid[:H, :W]
  m = {"right_lung": (yy >= 6) & (yy < 32 + k % 3) & (xx >= 5) & (xx < 20),
       "left_lung": (yy >= 6) & (yy < 30) & (xx >= 27) & (xx < 43 - k % 4),
       "heart": ((yy - 26) / 7.0) ** 2 + ((xx - 27) / (6.0 + k % 3)) ** 2 <= 1}
  return {o: v.astype(np.uint8) for o, v in m.items()}


def _image(k: int) -> np.ndarray:
  rng = np.random.default_rng(k)
  lungs = known_masks(k)["left_lung"] | known_masks(k)["right_lung"]
  return (2000 + 1500 * ~lungs.astype(bool) + rng.integers(0, 200, (H, W))).astype(np.uint16)


def write_fixture(root, bad=True, extra=0):
  """Writes the three inputs; returns {image_id: facts} of the rows that must be kept.

  `extra` more good PA rows, one patient each (enough for a training batch).
  """
  (root / "images" / "3").mkdir(parents=True)
  masks_rows, meta_rows, kept = [], [], {}
  # (patient, dice, projection, sex, birth, spacing, image problem)
  plan = [("p0", 0.91, "PA", "M", "1950.0", "0.143", None),
          ("p0", 0.88, "PA", "M", "1950.0", "0.143", None),
          ("p1", 0.95, "PA", "F", "1961.0", "", None),
          ("p2", 0.80, "PA", "F", "1948.0", "0.2", None),
          ("p3", 0.93, "PA", "M", "1972.0", "0.1", None),
          ("p4", 0.75, "PA", "F", "1939.0", "0.148", None),
          ("p5", 0.90, "PA", "M", "1980.0", "0.143", None),
          ("p6", 0.85, "PA", "F", "1955.0", "0.143", None),
          ("p7", 0.50, "PA", "M", "1950.0", "0.143", None),       # low Dice RCA: filtered
          ("p8", 0.90, "L", "M", "1950.0", "0.143", None)]        # lateral: filtered
  if bad:
    plan += [("p9", 0.90, "PA", "F", "1950.0", "0.143", "bad_rle"),
             ("p10", 0.90, "PA", "M", "1950.0", "0.143", "bad_image"),
             ("p11", 0.90, "PA", "O", "1950.0", "0.143", None),   # sex "O": skipped
             ("p12", 0.90, "PA", "M", "1950.0", "0.143", "absent")]
  plan += [(f"q{j}", 0.8 + 0.01 * (j % 10), "PA", "MF"[j % 2], f"{1940 + j}.0", "0.143", None)
           for j in range(extra)]
  for k, (pid, dice, proj, sex, birth, spacing, problem) in enumerate(plan):
    image_id = f"2168401113669640{k:02d}_00-000-{k:03d}.png"
    subdir = "3" if k % 2 else ""
    masks = known_masks(k)
    path = root / "images" / subdir / image_id
    if problem == "bad_image":
      Image.fromarray(_image(k)).save(path)
      path.write_bytes(path.read_bytes()[:60])  # truncated PNG
    elif problem != "absent":
      Image.fromarray(_image(k)).save(path)
    rles = {o: chexmask.encode_rle(m) for o, m in masks.items()}
    if problem == "bad_rle":
      rles["heart"] += f" {H * W - 3} 10"  # a run past H * W
    masks_rows.append({"ImageID": image_id, "Dice RCA (Max)": dice + 0.02,
                       "Dice RCA (Mean)": dice, "Landmarks": "1,2,3,4", "Left Lung":
                       rles["left_lung"], "Right Lung": rles["right_lung"],
                       "Heart": rles["heart"], "Height": H, "Width": W})
    meta_rows.append({"ImageID": image_id, "ImageDir": "3" if subdir else "7",
                      "StudyDate_DICOM": f"20{10 + k % 6}0915", "StudyID": f"s{k}",
                      "PatientID": pid, "PatientBirth": birth, "PatientSex_DICOM": sex,
                      "Projection": proj, "SpatialResolution_DICOM": spacing,
                      "Rows_DICOM": H, "Columns_DICOM": W,
                      "Report": 'cardiomegalia, "leve"; sin cambios'})
    if problem is None and dice >= 0.7 and proj == "PA" and sex in "MF":
      kept[image_id] = dict(masks=masks, rles=rles, patient=pid, sex=sex, k=k,
                            birth=float(birth), spacing=float(spacing or -1))
  meta_rows.append(dict(meta_rows[0], ImageID="not_in_chexmask.png"))
  for name, columns, rows in (("Padchest.csv", MASK_COLUMNS, masks_rows),
                              (padchest.PadChestConfig.metadata_csv, META_COLUMNS, meta_rows)):
    with open(root / name, "w", newline="") as f:
      writer = csv.DictWriter(f, columns)
      writer.writeheader()
      writer.writerows(rows)
  return kept


def _data_cfg(manual_dir, **kw):
  base = dict(name="padchest", data_dir="", manual_dir=str(manual_dir), image_size=64,
              min_dice_rca=0.7, dice_column="Dice RCA (Mean)", projections=("PA",),
              split_fractions=(0.5, 0.25, 0.25), intensity_percentiles=(0.5, 99.5),
              max_images=0, max_skip_fraction=0.5, seed=0)
  base.update(kw)
  return ml_collections.ConfigDict(base)


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
  root = tmp_path_factory.mktemp("manual")
  kept = write_fixture(root)
  work = str(tmp_path_factory.mktemp("work"))
  b = datasets.builder(_data_cfg(root), work)
  b.download_and_prepare(file_format="array_record")
  return root, kept, b, work


def _records(b):
  out = {}
  for s in padchest.SPLITS:
    src = b.as_data_source(s)
    for i in range(len(src)):
      out[src[i]["image_id"].decode()] = dict(src[i], split=s)
  return out


def test_rle_follows_chexmask_convention():
  mask = np.array([[0, 1, 1, 0], [0, 0, 0, 1], [1, 0, 0, 0]], np.uint8)
  # Row-major, 1-based starts: pixels 1-2 -> "2 2"; pixels 7-8 -> "8 2".
  assert chexmask.encode_rle(mask) == "2 2 8 2"
  np.testing.assert_array_equal(chexmask.decode_rle("2 2 8 2", 3, 4), mask)
  assert not chexmask.decode_rle("", 3, 4).any()
  for rle, message in (("1 13", "Height x Width = 3 x 4 = 12"), ("1 2 3", "odd number"),
                       ("1 4 3 2", "unsorted or overlap"), ("0 2", "start below 1"),
                       ("a 2", "non-integer")):
    with pytest.raises(ValueError, match=message):
      chexmask.decode_rle(rle, 3, 4)
  masks = known_masks(0)
  np.testing.assert_array_equal(
      chexmask.decode_rle(chexmask.encode_rle(masks["heart"]), H, W), masks["heart"])
  labels = chexmask.label_map(masks)
  assert (labels == 3).sum() == masks["heart"].sum()  # Heart painted over the lung.
  assert ((labels == 1) == (masks["left_lung"].astype(bool) & ~masks["heart"].astype(bool))).all()


def test_build_keeps_good_rows_and_stores_known_masks(fixture):
  _, kept, b, _ = fixture
  recs = _records(b)
  assert set(recs) == set(kept)
  for image_id, r in recs.items():
    facts = kept[image_id]
    for organ, rle in facts["rles"].items():
      np.testing.assert_array_equal(chexmask.decode_rle(rle, H, W), facts["masks"][organ])
    labels = chexmask.label_map(facts["masks"])
    np.testing.assert_array_equal(r["mask"], images.to_model_mask(labels, 64))
    assert r["image"].shape == (64, 64, 1) and r["image"].dtype == np.uint8
    assert r["image"].min() == 0 and r["image"].max() == 255
    assert r["image"][0].max() == 0  # the 40-row image is padded top and bottom
    for label, area in enumerate(padchest.AREAS, start=1):
      assert float(r[area]) == float((r["mask"] == label).sum()) > 0
      if facts["spacing"] > 0:
        np.testing.assert_allclose(float(r[f"{area}_mm2"]),
                                   (labels == label).sum() * facts["spacing"] ** 2, rtol=1e-5)
      else:
        assert float(r[f"{area}_mm2"]) == -1.0 and float(r["pixel_spacing_mm"]) == -1.0
    assert int(r["sex"]) == {"M": 0, "F": 1}[facts["sex"]]
    study_year = 2010 + facts["k"] % 6
    np.testing.assert_allclose(float(r["age"]), study_year - facts["birth"] + 76 / 365.25,
                               atol=0.01)  # 15 Sep vs 1 Jul.
    assert r["patient_id"].decode() == facts["patient"]


def test_splits_are_by_patient_and_deterministic(fixture):
  _, _, b, _ = fixture
  recs = _records(b)
  split_of = {}
  for r in recs.values():
    assert split_of.setdefault(r["patient_id"], r["split"]) == r["split"]
  assert set(split_of.values()) == set(padchest.SPLITS)
  counts = {f"p{i}": i % 3 + 1 for i in range(30)}
  a = splits.split_groups(counts, (0.8, 0.1, 0.1), seed=0)
  assert a == splits.split_groups(counts, (0.8, 0.1, 0.1), seed=0)
  assert a != splits.split_groups(counts, (0.8, 0.1, 0.1), seed=1)
  assert [list(a.values()).count(s) for s in padchest.SPLITS] == [24, 3, 3]
  few = splits.split_groups(counts, (0.8, 0.1, 0.1), seed=0, max_images=10)
  assert sum(counts[p] for p in few) >= 10 > sum(counts[p] for p in list(few)[:-1])


def test_filtered_and_bad_rows_are_counted(fixture):
  root, _, b, work = fixture
  report = padchest.build_report(b)
  assert report["filtered"]["low_dice_rca"] == 1 and report["filtered"]["projection"] == 1
  assert report["filtered"]["image_not_on_disk"] == 1
  assert report["skipped"] == {"bad_sex": 1, "bad_rle": 1, "bad_image": 1}
  assert report["num_skipped"] == 3 and len(report["skipped_examples"]) == 3
  assert any("Padchest.csv data row 10" in e and "Height x Width" in e
             for e in report["skipped_examples"])
  assert sum(report["images"].values()) == 8
  again = datasets.builder(_data_cfg(root), work)
  assert padchest.build_report(again)["num_skipped"] == 3  # Read back from disk.


@pytest.mark.parametrize("fraction,where", [
    (0.05, r"1 of 14 rows of .*Padchest\.csv are bad"),  # While joining the tables.
    (0.3, r"1 of 2 rows of .*Padchest\.csv \(validation split\) are bad")])  # Generating.
def test_too_many_bad_rows_stop_the_build(fraction, where, tmp_path):
  write_fixture(tmp_path / "m")
  b = datasets.builder(_data_cfg(tmp_path / "m", max_skip_fraction=fraction),
                       str(tmp_path / "w"))
  with pytest.raises(ValueError, match=where + f".*max_skip_fraction={fraction}"):
    b.download_and_prepare(file_format="array_record")


def test_missing_inputs_fail_with_where_to_get_them(tmp_path):
  work = str(tmp_path / "w")
  with pytest.raises(ValueError, match="manual_dir=DIR"):
    datasets.builder(_data_cfg(""), work).download_and_prepare(file_format="array_record")
  root = tmp_path / "m"
  write_fixture(root, bad=False)
  (root / "Padchest.csv").rename(root / "other.csv")
  with pytest.raises(FileNotFoundError, match=r"Padchest\.csv not found.*physionet"):
    datasets.builder(_data_cfg(root), work).download_and_prepare(file_format="array_record")
  (root / "other.csv").rename(root / "Padchest.csv")
  meta = root / padchest.PadChestConfig.metadata_csv
  meta.rename(root / "other.csv")
  with pytest.raises(FileNotFoundError, match=r"PADCHEST_chest.*not found.*bimcv"):
    datasets.builder(_data_cfg(root), work).download_and_prepare(file_format="array_record")
  # A required column missing: named with the file.
  text = (root / "other.csv").read_text().replace("PatientSex_DICOM", "Sex", 1)
  meta.write_text(text)
  with pytest.raises(ValueError, match=r"PADCHEST.*lacks the column\(s\) \['PatientSex_DICOM'\]"):
    datasets.builder(_data_cfg(root), work).download_and_prepare(file_format="array_record")
  meta.write_text((root / "other.csv").read_text().replace("Projection", "View", 1))
  with pytest.raises(ValueError, match=r"lacks the column\(s\) \['Projection'\]"):
    datasets.builder(_data_cfg(root), work).download_and_prepare(file_format="array_record")
  (root / "images").rename(root / "pngs")
  with pytest.raises(FileNotFoundError, match=r"image directory .*images not found"):
    datasets.builder(_data_cfg(root), work).download_and_prepare(file_format="array_record")


def test_config_data_stage_needs_manual_dir_then_builds(tmp_path):
  config = config_files.load(CONFIG + ":quick")
  assert config.data.manual_dir == ""
  with pytest.raises(ValueError, match="manual download: set --config.data.manual_dir"):
    stages.run_stages(config, str(tmp_path / "a"), ["data"])
  write_fixture(tmp_path / "m", bad=False)
  config.data.manual_dir = str(tmp_path / "m")
  config.data.split_fractions = (0.5, 0.25, 0.25)
  summary = stages.run_stages(config, str(tmp_path / "b"), ["data"])["data"]
  assert sum(summary["splits"].values()) == 8
  assert set(summary["train"]) == {"num_examples", "sex", "age", *padchest.AREAS}


def test_image_of_another_size_than_its_masks_is_skipped_and_named(tmp_path):
  kept = write_fixture(tmp_path / "m", bad=False)
  image_id = sorted(kept)[0]
  path = next((tmp_path / "m" / "images").rglob(image_id))
  Image.fromarray(np.zeros((H, H), np.uint16)).save(path)  # 40x40, the masks are 40x48
  b = datasets.builder(_data_cfg(tmp_path / "m"), str(tmp_path / "w"))
  b.download_and_prepare(file_format="array_record")
  report = padchest.build_report(b)
  assert report["skipped"] == {"size_mismatch": 1}
  assert f"image {path} is 40x40, the CheXmask row says 40x48" in report["skipped_examples"][0]
  assert sum(report["images"].values()) == len(kept) - 1

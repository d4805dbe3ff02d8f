"""The README table of benchmark figures: newest record per step, reference ratio."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
from benchmarks import table  # pylint: disable=g-import-not-at-top,wrong-import-position


def _record(step, img_s, commit, config="morphomnist"):
  return dict(benchmark="steps", config=config, step=step, batch=32, mesh_devices=1,
              commit=commit, img_per_s_median=img_s, img_per_s_min=img_s - 1,
              img_per_s_max=img_s + 1, compile_s=12.0, flops_per_step=8.7e9,
              flops_per_s=1.6e10, peak_bytes=2 ** 20)


def test_latest_keeps_the_newest_record_per_step_in_benchmark_order():
  records = [_record("counterfactual", 100.0, "a"), _record("train", 40.0, "a"),
             _record("train", 59.0, "b"), dict(benchmark="input", config="x")]
  rows = table.latest(records)
  assert [(r["step"], r["img_per_s_median"]) for r in rows] == [("train", 59.0),
                                                                ("counterfactual", 100.0)]
  assert [r["img_per_s_median"] for r in table.latest(records, commit="a")] == [40.0, 100.0]


def test_markdown_divides_by_the_errata_figure_without_a_side_by_side_run():
  text = table.markdown([_record("train", 54.0, "b"), _record("cft_seg", 30.0, "b", "chest64")])
  lines = text.splitlines()
  assert "| 108.0 (errata) | 0.50× (≥ 2×) |" in lines[2]  # 54 / 108
  assert "| chest64 | cft_seg | 32 | 30.0 (29.0–31.0) | — | — |" in lines[3]


def _reference(step, img_s, commit, config="morphomnist"):
  return dict(benchmark="reference_causal_gen", config=config, step=step, batch=32,
              commit=commit, img_per_s_median=img_s)


def test_markdown_prefers_the_side_by_side_reference_of_the_same_commit():
  records = [_reference("train", 40.0, "a"), _reference("train", 50.0, "b"),
             _reference("train", 30.0, "b"), _reference("cft", 20.0, "a")]
  rows = [_record("train", 60.0, "b"), _record("cft_reg", 30.0, "b"),
          _record("train", 60.0, "c", "chest64")]
  lines = table.markdown(rows, records).splitlines()
  assert "| 40.0 (side by side, 2 run(s)) | 1.50× (≥ 2×) |" in lines[2]  # median of b's
  assert "| 20.0 (side by side, 1 run(s)) | 1.50× (≥ 2×) |" in lines[3]  # other commit only
  assert "| 28.0 (errata) | 2.14× (≥ 1.5×) |" in lines[4]


def test_bfloat16_rows_are_kept_apart_and_not_compared_with_the_float32_reference():
  low = dict(_record("train", 70.0, "b"), compute_dtype="bfloat16")
  rows = table.latest([_record("train", 60.0, "a"), low])
  assert [(r["img_per_s_median"], r.get("compute_dtype")) for r in rows] == [
      (60.0, None), (70.0, "bfloat16")]
  lines = table.markdown(rows, [_reference("train", 30.0, "a")]).splitlines()
  assert "| 30.0 (side by side, 1 run(s)) | 2.00× (≥ 2×) |" in lines[2]
  assert "| morphomnist | train (bfloat16) | 32 | 70.0 (69.0–71.0) | — | — |" in lines[3]

"""Benchmark records: environment fields and where they are appended."""

import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
from benchmarks import results_io  # pylint: disable=g-import-not-at-top,wrong-import-position


def test_commit_from_the_environment_where_the_tree_has_no_git(tmp_path, monkeypatch):
  monkeypatch.setenv("SEGCFT_COMMIT", "abc1234")
  path = results_io.append({"benchmark": "steps", "step": "train"}, str(tmp_path / "r.jsonl"))
  (record,) = [json.loads(line) for line in open(path)]
  assert record["commit"] == "abc1234" and record["step"] == "train"
  assert record["device"] == results_io.device_name() and record["device_count"] >= 1

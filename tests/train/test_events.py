"""TensorBoard events: the logged records' scalars and images read back from the files."""

import glob
import os
import struct

import numpy as np
from tensorboardX.proto import event_pb2

from segcft_jax.train import events, metrics_log


def read_events(directory: str) -> dict[str, list[tuple[int, float | str]]]:
  """{tag: [(step, value)]} of every event file in `directory` ("image" for images): the
  TFRecord framing is length (8 bytes), its CRC (4), the Event proto, its CRC (4)."""
  out: dict[str, list] = {}
  for path in sorted(glob.glob(os.path.join(directory, "events.out.tfevents.*"))):
    data, i = open(path, "rb").read(), 0
    while i < len(data):
      (n,) = struct.unpack("<Q", data[i:i + 8])
      event = event_pb2.Event()
      event.ParseFromString(data[i + 12:i + 12 + n])
      i += 16 + n
      for v in event.summary.value:
        out.setdefault(v.tag, []).append(
            (event.step, "image" if v.HasField("image") else v.simple_value))
  return out


def test_scalars_flatten_nested_records_and_skip_what_is_not_a_number():
  record = {"step": 3, "split": "validation", "loss": 0.5, "dice": {"heart": 0.75},
            "ok": True, "nan": float("nan"), "name": "x", "none": None}
  assert events.scalars(record) == {"loss": 0.5, "dice/heart": 0.75}


def test_metrics_writer_writes_the_same_scalars_as_events(tmp_path):
  writer = metrics_log.MetricsWriter(str(tmp_path / "metrics.jsonl"),
                                     events.EventWriter(str(tmp_path)))
  writer.write({"step": 10, "loss": np.float32(1.5), "img_per_s": 100.0})
  writer.write({"step": 20, "loss": 1.25})
  writer.write({"step": 20, "split": "validation", "dice": {"heart": 0.5}})
  writer.write({"event": "resume", "step": 20})
  writer.events.image("figures/grid", np.zeros((4, 6, 3), np.uint8), 20)
  writer.close()
  found = read_events(str(tmp_path))
  assert found["train/loss"] == [(10, 1.5), (20, 1.25)]
  assert found["train/img_per_s"] == [(10, 100.0)]
  assert found["validation/dice/heart"] == [(20, 0.5)]
  assert found["figures/grid"] == [(20, "image")]
  assert not any(t.startswith("resume") or "event" in t for t in found)
  assert len(open(tmp_path / "metrics.jsonl").readlines()) == 4

"""`evaluate` stage: the SPEC §4 suite for every trained method -> eval/.

Writes `eval/metrics.json` (SPEC §4 layout: `conventions`, `reference`, `methods.<key>`),
`eval/report.md` (tables with methods as rows, the paper's expected ordering checked) and
`eval/figures/*.png`. Methods are those whose stage has completed (`cft.methods`): No-CFT
always, Reg-/Seg-/Pos-Seg-CFT when trained. Like every stage it is skipped once
`eval/summary.json` exists; delete that file to re-evaluate after training another method.
metrics.json holds no timings, so two runs on the same workdir give byte-identical files.
With `config.tensorboard`, the headline numbers and counterfactual grids also go to
TensorBoard events in eval/.
"""

from __future__ import annotations

import json
import logging
import os
import time

import jax
import ml_collections
import numpy as np
from PIL import Image

from segcft_jax import workdir as workdir_lib
from segcft_jax.data import datasets
from segcft_jax.evaluation import figures, report, suite as suite_lib, trained as trained_lib
from segcft_jax.train import events

log = logging.getLogger(__name__)
NAME = "evaluate"  # its directory is eval/ (workdir.stage_dir)


def region_names(trained: trained_lib.Trained) -> dict[str, str]:
  """Regional variable -> region name (empty outside the positional setting)."""
  names = datasets.spec(trained.config.data).region_names
  return {v: names[r - 1] for v, (_, r) in trained.structures.items() if r is not None}


def write_metrics(path: str, metrics: dict) -> None:
  """Deterministic JSON (insertion order, fixed indent), written atomically."""
  tmp = f"{path}.tmp"
  with open(tmp, "w") as f:
    json.dump(metrics, f, indent=1, ensure_ascii=False)
    f.write("\n")
  os.replace(tmp, path)


def evaluate(config: ml_collections.ConfigDict, workdir: str, out_dir: str) -> dict:
  """Runs the suite on `workdir` and writes metrics.json, report.md and figures/ to `out_dir`.

  Returns:
    A summary: methods evaluated, examples, the headline numbers and timings.
  """
  t0 = time.perf_counter()
  trained = trained_lib.load_trained(config, workdir)
  if not trained.methods:
    raise FileNotFoundError(f"No trained HVAE in {workdir}; run the hvae stage first.")
  t_load = time.perf_counter() - t0
  cfg = config.evaluate
  source = datasets.open_split(datasets.prepared_builder(config.data, workdir), "test")
  batches = suite_lib.test_batches(source, trained.input_keys, cfg.batch_size, cfg.num_examples)
  suite = suite_lib.Suite(trained)
  suite.run(batches)
  metrics = suite.metrics()
  t_suite = time.perf_counter() - t0 - t_load
  written = []
  if jax.process_index() == 0:
    os.makedirs(out_dir, exist_ok=True)
    write_metrics(os.path.join(out_dir, "metrics.json"), metrics)
    written = figures.write_all(os.path.join(out_dir, "figures"), suite, metrics)
    regions = region_names(trained)
    with open(os.path.join(out_dir, "report.md"), "w") as f:
      f.write(report.render(metrics, config, written, regions or None))
  err = cfg.area_error
  headline = report.variable_means(metrics, "effectiveness", err)
  share = report.variable_means(metrics, "localisation", "outside_share")
  if config.get("tensorboard", True) and jax.process_index() == 0:
    _write_events(out_dir, written, {"effectiveness": headline, "outside_share": share})
  ordering = report.expected_ordering(metrics, err, region_names(trained) or None)
  return dict(methods=list(trained.methods), num_examples=metrics["conventions"]["num_examples"],
              effectiveness={m: headline[m] for m in trained.methods}, area_error=err,
              outside_share={m: share[m] for m in trained.methods},
              expected_ordering={c: s for c, s, _ in ordering}, figures=written,
              load_seconds=t_load, suite_seconds=t_suite,
              write_seconds=time.perf_counter() - t0 - t_load - t_suite)


def _write_events(out_dir: str, figure_names: list[str], headline: dict) -> None:
  """The headline numbers and the counterfactual grids (`figures/counterfactuals_*.png`) as
  TensorBoard events in `out_dir`."""
  writer = events.EventWriter(out_dir)
  writer.record({"step": 0, "split": "test", **headline})
  for name in figure_names:
    if name.startswith("counterfactuals") and name.endswith(".png"):
      with Image.open(os.path.join(out_dir, "figures", name)) as im:
        writer.image(f"figures/{name[:-4]}", np.asarray(im.convert("RGB")), 0)
  writer.close()


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """The stage: evaluates into `<workdir>/eval/`."""
  summary = evaluate(config, workdir, workdir_lib.stage_dir(workdir, NAME))
  log.info("[evaluate] %s: effectiveness %s", ", ".join(summary["methods"]),
           {m: round(v, 3) for m, v in summary["effectiveness"].items() if v is not None})
  return summary

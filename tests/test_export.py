"""`python -m segcft_jax.export`: a workdir trained before weights were exported converts
once, to the same parameters the stages export."""

import os
import shutil

import jax
import numpy as np
import pytest

from segcft_jax import builders, export, workdir as workdir_lib
from segcft_jax.train import weights

STAGES = ("segmentor", "regressor", "pgm", "cft_seg")


@pytest.fixture(scope="module")
def old_workdir(quick_chest_workdir, tmp_path_factory):
  """Copies of trained stages without their weights, as an older version wrote them."""
  work = str(tmp_path_factory.mktemp("old"))
  os.symlink(os.path.join(quick_chest_workdir, "data"), os.path.join(work, "data"))
  for stage in STAGES:
    shutil.copytree(os.path.join(quick_chest_workdir, stage), os.path.join(work, stage))
    shutil.rmtree(weights.directory(os.path.join(work, stage)))
  return work


def test_loading_without_weights_names_the_export_command(old_workdir):
  config = workdir_lib.read_config(old_workdir, "segmentor")
  with pytest.raises(FileNotFoundError, match="segcft_jax.export --workdir="):
    builders.load_unet(config, old_workdir, "segmentor")


def test_export_writes_the_weights_the_stages_wrote(quick_chest_workdir, old_workdir, capsys):
  assert export.main([f"--workdir={old_workdir}"]) == 0
  assert capsys.readouterr().out.strip() == f"exported {', '.join(STAGES)}"
  for stage in STAGES:
    new, arch_new = weights.load(os.path.join(old_workdir, stage), {})
    want, arch = weights.load(os.path.join(quick_chest_workdir, stage), {})
    assert arch_new == arch
    for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(want), strict=True):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert export.main([f"--workdir={old_workdir}"]) == 0  # Nothing left to do.
  assert "nothing to export" in capsys.readouterr().out
  assert export.main([f"--workdir={old_workdir}/missing"]) == 1
  assert "does not exist" in capsys.readouterr().err

"""The split of the CFT predictor loss into four parts, and its command on the quick workdir."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from tools import gradient_conflict as gc


def test_split_aux_parts_sum_to_the_weighted_loss():
  d = {"a_area": jnp.array([1.0, 2.0, 3.0, 4.0]), "b_area": jnp.array([0.5, 0.0, 1.5, 2.0]),
       "c_area": jnp.array([3.0, 1.0, 0.0, 2.0])}
  hit = {"a_area": jnp.array([True, False, False, True]),
         "b_area": jnp.array([False, True, False, False]),
         "c_area": jnp.array([False, False, True, False])}
  w = {"a_area": 2.0, "b_area": 1.0, "c_area": 0.5}
  parts = np.asarray(gc.split_aux(d, hit, w, ["a_area"]))
  # a intervened in examples 0 and 3: 2 * (1 + 4) / 4; preserved in 1 and 2: 2 * (2 + 3) / 4.
  np.testing.assert_allclose(parts[:2], [2.5, 2.5], rtol=1e-6)
  # b hit in example 1 (d = 0), c in 2 (d = 0): the others' intervened part is 0.
  np.testing.assert_allclose(parts[2], 0.0, atol=1e-7)
  np.testing.assert_allclose(parts[3], (0.5 + 1.5 + 2.0) / 4 + 0.5 * (3 + 1 + 2) / 4, rtol=1e-6)
  aux = sum(w[m] * v.mean() for m, v in d.items())  # cft.task's aux
  np.testing.assert_allclose(parts.sum(), float(aux), rtol=1e-6)


def test_summarise_norms_and_cosines():
  g = np.zeros((2, 4, 3))
  g[:, 0] = [1.0, 0.0, 0.0]
  g[:, 1] = [-2.0, 0.0, 0.0]   # opposite to part 0
  g[:, 2] = [0.0, 3.0, 0.0]    # orthogonal
  g[:, 3] = [1.0, 1.0, 0.0]
  r = gc.summarise(np.ones((2, 4)), g)
  assert r["grad_norm"]["intervened"] == pytest.approx(1.0)
  assert r["grad_norm"]["preserved"] == pytest.approx(2.0)
  assert r["cosine"]["intervened"]["preserved"] == pytest.approx(-1.0)
  assert r["cosine"]["intervened"]["other_intervened"] == pytest.approx(0.0)
  assert r["cosine"]["intervened"]["other_preserved"] == pytest.approx(2 ** -0.5)


def test_command_on_the_quick_workdir(quick_chest_workdir, tmp_path, capsys):
  out = tmp_path / "parts.json"
  assert gc.main([f"--workdir={quick_chest_workdir}", "--stage=cft_seg", "--structure=heart",
                  "--batches=2", f"--out={out}"]) == 0
  assert "cft_seg, structure heart" in capsys.readouterr().out
  result = json.load(open(out))
  assert result["measurements"] == ["heart_area"] and result["balance"] == ""
  assert set(result["weights"]) == {"no_cft", "seg_cft"}
  for r in result["weights"].values():
    assert all(v >= 0 for v in r["value"].values())
    assert r["grad_norm"]["other_intervened"] > 0
    for p in gc.PARTS:
      assert r["cosine"][p][p] == pytest.approx(1.0, abs=1e-5)
      assert all(abs(c) <= 1 + 1e-5 for c in r["cosine"][p].values())


@pytest.mark.parametrize("flags,message", [
    (["--stage=cft_seg", "--structure=kidney"], "--structure"),
    (["--stage=cft_pos_seg", "--structure=heart"], "has not been trained"),
    (["--stage=hvae", "--structure=heart"], "--stage"),
])
def test_command_refuses_bad_input(quick_chest_workdir, capsys, flags, message):
  assert gc.main([f"--workdir={quick_chest_workdir}", *flags]) == 1
  assert message in capsys.readouterr().err

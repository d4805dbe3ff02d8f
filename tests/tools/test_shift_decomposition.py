"""The split of x* - x into mean, scale and clip terms, and its command on the quick workdir."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tools import shift_decomposition as sd
from segcft_jax.models.hvae import counterfactual_image


def test_terms_sum_to_the_change_including_clipped_pixels():
  ks = jax.random.split(jax.random.PRNGKey(0), 5)
  shape = (3, 8, 8, 1)
  x = jax.random.uniform(ks[0], shape, minval=-1.0, maxval=1.0)
  mu, mu_cf = (jnp.clip(jax.random.normal(k, shape), -1, 1) for k in ks[1:3])
  sigma, sigma_cf = (jnp.exp(0.5 * jax.random.normal(k, shape) - 1.0) for k in ks[3:])
  x_cf = counterfactual_image(x, mu, sigma, mu_cf, sigma_cf)
  terms = sd.split_change(x, mu, sigma, mu_cf, sigma_cf, x_cf)
  assert float(jnp.abs(terms["clip"]).max()) > 0.1  # Some pixels were clipped.
  np.testing.assert_allclose(terms["mean"] + terms["scale"] + terms["clip"], terms["total"],
                             atol=2e-6)
  # Unchanged decodes change nothing: every term vanishes.
  same = sd.split_change(x, mu, sigma, mu, sigma, counterfactual_image(x, mu, sigma, mu, sigma))
  for k in ("mean", "scale"):
    assert float(jnp.abs(same[k]).max()) == 0.0


def test_masked_means_per_example():
  v = np.arange(2 * 2 * 2, dtype=np.float32).reshape(2, 2, 2, 1)
  mask = np.array([[[1, 0], [0, 1]], [[0, 0], [0, 0]]], bool)
  out = sd.masked_means({"a": v}, mask)["a"]
  np.testing.assert_allclose(out, [(0 + 3) / 2, 0.0])


@pytest.mark.parametrize("text,expected", [("-30%", -0.3), ("+15%", 0.15), ("-100%", -1.0)])
def test_parse_change(text, expected):
  assert sd.parse_change(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["-30", "-150%", "abc"])
def test_parse_change_refuses(text):
  with pytest.raises(ValueError, match="--change"):
    sd.parse_change(text)


def test_command_on_the_quick_workdir(quick_chest_workdir, tmp_path, capsys):
  out = tmp_path / "decomposition.json"
  assert sd.main([f"--workdir={quick_chest_workdir}", "--variable=heart_area",
                  "--change=+30%", "--methods=no,seg", "--num_examples=8",
                  f"--out={out}"]) == 0
  printed = capsys.readouterr().out
  assert "no_cft" in printed and "seg_cft" in printed
  result = json.load(open(out))
  assert set(result["methods"]) == {"no_cft", "seg_cft"}
  for r in result["methods"].values():
    assert r["intervened"] == 8
    for region in ("outside", "target"):
      t = r[region]
      assert t["total"] == pytest.approx(t["mean"] + t["scale"] + t["clip"], abs=1e-3)
    s = r["structure"]
    assert 0.0 <= s["x"] <= 255.0 and s["sigma"] > 0.0


def test_command_refuses_bad_input(quick_chest_workdir, capsys):
  assert sd.main([f"--workdir={quick_chest_workdir}", "--variable=age",
                  "--methods=no", "--num_examples=4"]) == 1
  assert "not an area variable" in capsys.readouterr().err
  assert sd.main([f"--workdir={quick_chest_workdir}", "--variable=heart_area",
                  "--methods=pos_seg"]) == 1
  assert "has not been trained" in capsys.readouterr().err

"""The batched API on the shared quick workdir: its docstring example, chunking and padding,
measurements equal to the single-image API's, exact parents after an intervention."""

import doctest

import numpy as np
import pytest

import segcft_jax
from segcft_jax.data import datasets
from segcft_jax.inference import batched
from segcft_jax.inference import model as model_lib
from segcft_jax.inference import stored


def _test_examples(workdir: str, n: int):
  config = stored.load_config(workdir, "seg_cft")
  source = datasets.open_split(datasets.prepared_builder(config.data, workdir), "test")
  rows = [source[i] for i in range(n)]
  images = np.stack([r["image"][..., 0] for r in rows])
  return images, np.array([float(r["age"]) for r in rows]), np.array(
      [float(r["sex"]) for r in rows])


@pytest.fixture(scope="module")
def model(quick_chest_workdir):
  return segcft_jax.load(quick_chest_workdir, method="seg", batch_size=8)


def test_the_docstring_example_runs(quick_chest_workdir, model):
  images, ages, sexes = _test_examples(quick_chest_workdir, 5)
  globs = dict(workdir=quick_chest_workdir, images=images, ages=ages, sexes=sexes)
  parser, runner = doctest.DocTestParser(), doctest.DocTestRunner(verbose=False)
  test = parser.get_doctest(batched.__doc__, globs, "batched", None, 0)
  runner.run(test)
  assert runner.failures == 0 and runner.tries == 6


def test_chunks_and_padding_do_not_change_a_row(quick_chest_workdir, model):
  images, ages, sexes = _test_examples(quick_chest_workdir, 11)  # 8 + 3 padded
  assert model.batch_size == 8
  parents = {"age": ages, "sex": sexes}
  out = model.counterfactual(images, parents, do={"heart_area": "-15%"}, seed=3)
  assert out.images.shape == (11, 32, 32) and out.images.dtype == np.uint8
  again = model.counterfactual(images[:5], {"age": ages[:5], "sex": sexes[:5]},
                               do={"heart_area": "-15%"}, seed=3)
  np.testing.assert_array_equal(again.images, out.images[:5])
  # The intervened value is exactly the target; age and sex are not descendants.
  np.testing.assert_allclose(out.parents_after["heart_area"],
                             0.85 * out.parents_before["heart_area"], rtol=1e-5)
  np.testing.assert_array_equal(out.parents_after["age"], ages)
  np.testing.assert_array_equal(out.parents_after["sex"], sexes)
  # Measurements of the factual images equal the single-image API's oracle areas.
  single = model_lib.CounterfactualModel(model.trained, "seg_cft")
  first = single(images[0], {"heart_area": "-15%"}, parents={"age": ages[0], "sex": sexes[0]})
  for v, value in first.measured_before.items():
    assert out.measured_before[v][0] == pytest.approx(value, abs=1e-4)
  # x* is measured before its rounding to uint8, which moves an area by a pixel at most here.
  np.testing.assert_allclose(model.measure(out.images)["heart_area"],
                             out.measured_after["heart_area"], atol=2)


def test_samples_and_bad_input(quick_chest_workdir, model):
  images, ages, sexes = _test_examples(quick_chest_workdir, 3)
  parents = {"age": ages, "sex": sexes, **model.measure(images)}
  names = model.trained.models.parents
  x = model.sample({p: parents[p] for p in names}, seed=1)
  assert x.shape == (3, 32, 32) and x.dtype == np.uint8 and x.std() > 0
  np.testing.assert_array_equal(model.sample({p: parents[p] for p in names}, seed=1), x)
  with pytest.raises(ValueError, match=r"images must be uint8 \[N, 32, 32\]"):
    model.measure(images.astype(np.float32))
  with pytest.raises(ValueError, match=r"parents\['age'\] is needed"):
    model.counterfactual(images, do={"heart_area": "-15%"})
  with pytest.raises(ValueError, match="Unknown parents"):
    model.counterfactual(images, {"age": ages, "sex": sexes, "weight": 3})

"""segcft-jax: counterfactual image generation with deep structural causal models and
segmentor-guided counterfactual fine-tuning. `segcft_jax.load` opens a trained workdir."""


def load(workdir: str, method: str = "seg", batch_size: int | None = None):
  """The trained `method` of `workdir` as a batched model (`segcft_jax.inference.batched`);
  imported on call, so that importing the package configures nothing."""
  from segcft_jax.inference import batched  # pylint: disable=g-import-not-at-top
  return batched.load(workdir, method, batch_size)

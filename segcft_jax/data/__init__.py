"""Datasets: the synth_chest phantom, its TFDS builder and input pipelines."""

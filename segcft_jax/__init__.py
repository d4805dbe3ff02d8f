"""segcft-jax."""

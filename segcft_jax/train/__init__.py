"""Generic training machinery shared by every stage: state, step, loop, sharding, checkpoints."""

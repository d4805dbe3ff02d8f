"""`jax.jit` with the XLA:CPU code-generation options this project compiles with.

On the CPU backend every hot step is compiled with ``xla_backend_optimization_level=1`` and
``xla_llvm_disable_expensive_passes=true`` (LLVM's optimisation level 1 and no expensive
passes; no fast-math, so the arithmetic is IEEE as before). Measured on the 2-core CPU
machine, Morpho-MNIST HVAE train step, batch 32 (`python benchmarks/steps.py
--config=morphomnist --only=train [--cpu_options=default]`, see `benchmarks/README.md`):
compile 45-47 s -> 34 s and 71-78 -> 98-100 img/s: the heavy convolutions are library calls
(YNNPACK) either way, and LLVM's expensive passes mostly cost compile time and slowed the
many small elementwise fusions. Other backends get XLA's defaults.
"""

from __future__ import annotations

from typing import Any, Callable

import jax

CPU_OPTIONS = {"xla_backend_optimization_level": 1, "xla_llvm_disable_expensive_passes": True}


def options(fast_cpu: bool = True) -> dict[str, Any] | None:
  """Compiler options for the default backend: `CPU_OPTIONS` on CPU (if `fast_cpu`), else None."""
  if fast_cpu and jax.default_backend() == "cpu":
    return dict(CPU_OPTIONS)
  return None


def jit(fun: Callable, *, fast_cpu: bool = True, **kwargs) -> Callable:
  """`jax.jit(fun, **kwargs)` compiled with `options(fast_cpu)`."""
  return jax.jit(fun, compiler_options=options(fast_cpu), **kwargs)

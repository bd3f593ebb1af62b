"""prunax: constrained pruning solvers in pure-functional JAX.

``prunax.constraints`` is the constraint algebra (exact projections, the top-k kernel, pytree
specs), ``prunax.solvers`` the optax solvers and the epoch loop, ``prunax.problems`` the models as
loss closures, ``prunax.benchmarks`` the studies and speed measurements. The four are imported on
first use, so ``import prunax`` (and ``prunax --help``) does not import JAX.
"""

import importlib

__version__ = "0.1.0"

_SUBPACKAGES = ("benchmarks", "constraints", "problems", "solvers")

__all__ = ["__version__", *_SUBPACKAGES]


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"prunax.{name}")
    raise AttributeError(f"module 'prunax' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)

"""prunax: constrained pruning solvers in pure-functional JAX.

``prunax.constraints`` is the constraint algebra (exact projections, the top-k kernel, pytree
specs); ``prunax.benchmarks`` measures it. Solvers and problems follow (DESIGN.md).
"""

from prunax import benchmarks, constraints

__version__ = "0.1.0"

__all__ = ["__version__", "benchmarks", "constraints"]

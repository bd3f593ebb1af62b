"""Benchmarks: projection speed now; convergence per retraining epoch and solver overhead follow."""

from . import projection

__all__ = ["projection"]

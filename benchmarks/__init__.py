"""Benchmarks (DESIGN §5): ``convergence`` (per retraining epoch, the main job), ``projection`` and
``families`` (projection speed), ``overhead`` (solver step cost), ``support_recovery`` (sparse
least squares). Import the module you need; ``prunax bench`` runs them from the command line."""

from . import projection

__all__ = ["projection"]

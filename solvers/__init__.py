"""Optax-compatible pruning solvers, hard pruning and masked retraining (DESIGN §3).

Built so far: ``finalize`` / ``prune_report`` (hard prune), ``keep_masked`` (masked retraining)
and ``cubic_sparsity``. ADMM, SLR, reweighted group lasso and the magnitude baselines follow.
"""

from .masking import LeafReport, finalize, keep_masked, prune_report
from .schedules import cubic_sparsity

__all__ = ["LeafReport", "cubic_sparsity", "finalize", "keep_masked", "prune_report"]

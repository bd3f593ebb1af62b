"""Optax-compatible pruning solvers, hard pruning and masked retraining (DESIGN §3).

* ``admm``, ``slr`` and ``reweighted_group_lasso`` (subgradient form) go first in an optax chain:
  they add their penalty's gradient, and the optimizer after them takes the W-step.
* ``magnitude``, ``reweighted_group_lasso(prox=True)`` and ``keep_masked`` go last: they act on
  the optimizer's proposed step.
* ``finalize`` hard-prunes to the spec and returns the masks; ``prune_report`` says how far.
* ``progressive_distillation`` wraps a Problem's loss for SPD (teacher/student layer mixing).
* ``fit`` and ``prune`` run the epoch loop over a Problem with checkpoints and exact resume.
"""

from .admm import ADMMState, admm
from .distillation import distillation_loss, progressive_distillation, replacing_rate, wrap_state
from .group_lasso import GroupLassoState, group_soft_threshold, reweighted_group_lasso
from .loop import FitResult, NonFiniteLoss, PruneResult, cache_dir, fit, pretrained, prune
from .magnitude import MagnitudeState, magnitude
from .masking import LeafReport, finalize, keep_masked, prune_report, sign_rules
from .schedules import cubic_fraction, cubic_sparsity, geometric, restarts
from .slr import SLRState, slr, slr_alpha

__all__ = [
    "ADMMState",
    "FitResult",
    "NonFiniteLoss",
    "PruneResult",
    "cache_dir",
    "fit",
    "pretrained",
    "prune",
    "GroupLassoState",
    "LeafReport",
    "MagnitudeState",
    "SLRState",
    "admm",
    "cubic_fraction",
    "distillation_loss",
    "cubic_sparsity",
    "finalize",
    "geometric",
    "group_soft_threshold",
    "keep_masked",
    "sign_rules",
    "magnitude",
    "progressive_distillation",
    "prune_report",
    "replacing_rate",
    "restarts",
    "reweighted_group_lasso",
    "slr",
    "slr_alpha",
    "wrap_state",
]

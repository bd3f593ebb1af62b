"""Optax-compatible pruning solvers, hard pruning and masked retraining (docs/solvers.md).

* ``admm``, ``slr`` and ``reweighted_group_lasso`` (subgradient form) go first in an optax chain:
  they add their penalty's gradient, and the optimizer after them takes the W-step.
* ``magnitude``, ``reweighted_group_lasso(prox=True)`` and ``keep_masked`` go last: they act on
  the optimizer's proposed step.
* ``finalize`` hard-prunes to the spec and returns the masks; ``prune_report`` says how far.
* ``progressive_distillation`` wraps a Problem's loss for SPD (teacher/student layer mixing).
* ``fit`` and ``prune`` run the epoch loop over a Problem with checkpoints and exact resume.
"""

from ._admm import ADMMState, admm
from ._group_lasso import GroupLassoState, group_soft_threshold, reweighted_group_lasso
from ._loop import FitResult, NonFiniteLoss, PruneResult, cache_dir, fit, pretrained, prune
from ._magnitude import MagnitudeState, magnitude
from ._masking import LeafReport, finalize, keep_masked, prune_report, sign_rules
from ._schedules import cubic_fraction, cubic_sparsity, geometric, restarts
from ._slr import SLRState, slr, slr_alpha
from ._wrappers import ReplacingRate, distillation_loss, progressive_distillation, wrap_state

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
    "ReplacingRate",
    "restarts",
    "reweighted_group_lasso",
    "slr",
    "slr_alpha",
    "wrap_state",
]

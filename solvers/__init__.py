"""Optax-compatible pruning solvers, hard pruning and masked retraining (docs/solvers.md).

* ``admm`` and ``slr`` wrap an optimizer (``inner=``) and pull its step towards the constraint
  set (decoupled, ``pull_schedule``); in their coupled form, like ``reweighted_group_lasso``
  (subgradient form), they go first in an optax chain and add their penalty's gradient.
* ``magnitude``, ``reweighted_group_lasso(prox=True)`` and ``keep_masked`` go last: they act on
  the optimizer's proposed step.
* ``finalize`` hard-prunes to the spec and returns the masks; ``prune_report`` says how far.
* ``progressive_distillation`` wraps a Problem's loss for SPD (teacher/student layer mixing);
  ``switchable`` for level-aware training over several mask sets (RT3).
* ``rgl_lambda`` calibrates the group lasso's λ per leaf to a step budget.
* ``reinforce`` picks one candidate per budget level by policy gradient (RT3's controller).
* ``fit`` and ``prune`` run the epoch loop over a Problem with checkpoints and exact resume.
* ``oneshot``: post-training pruning of one layer from calibration data (magnitude, Wanda,
  SparseGPT, ADMM with a least-squares refit), for every constraint.
"""

from . import oneshot
from ._admm import ADMMState, admm
from ._checkpoint import CheckpointError
from ._group_lasso import GroupLassoState, group_soft_threshold, reweighted_group_lasso, rgl_lambda
from ._loop import FitResult, NonFiniteLoss, PruneResult, cache_dir, fit, pretrained, prune
from ._magnitude import MagnitudeState, magnitude
from ._masking import LeafReport, finalize, keep_masked, prune_report, sign_rules
from ._reinforce import LevelChoice, budget_reward, reinforce
from ._schedules import cubic_fraction, cubic_sparsity, geometric, restarts
from ._slr import SLRState, slr, slr_alpha
from ._splitting import DecoupledState, pull_schedule
from ._wrappers import ReplacingRate, distillation_loss, progressive_distillation, switchable, wrap_state

__all__ = [
    "ADMMState",
    "CheckpointError",
    "DecoupledState",
    "FitResult",
    "NonFiniteLoss",
    "PruneResult",
    "cache_dir",
    "fit",
    "pretrained",
    "prune",
    "GroupLassoState",
    "LeafReport",
    "LevelChoice",
    "MagnitudeState",
    "SLRState",
    "admm",
    "budget_reward",
    "cubic_fraction",
    "distillation_loss",
    "cubic_sparsity",
    "finalize",
    "geometric",
    "group_soft_threshold",
    "keep_masked",
    "sign_rules",
    "magnitude",
    "oneshot",
    "progressive_distillation",
    "pull_schedule",
    "prune_report",
    "reinforce",
    "ReplacingRate",
    "restarts",
    "reweighted_group_lasso",
    "rgl_lambda",
    "slr",
    "slr_alpha",
    "switchable",
    "wrap_state",
]

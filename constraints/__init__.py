"""The constraint algebra: per-array sets whose projection is a mask, the exact top-k kernel,
and specs that assign constraints to the leaves of a parameter pytree (docs/constraints.md)."""

from ._base import Constraint, Groups
from ._block import Block
from ._column_sign import ColumnSign
from ._counting import kept_count
from ._coupled import Coupled, channel_reduce, coupled, nonzero_slices, spread_channels
from ._global_budget import GlobalBudget, global_
from ._intersect import Intersect
from ._nm import NM
from ._paths import leaves_with_paths, path_str
from ._pattern import Pattern, mine_patterns
from ._spec import Spec, apply_masks, spec
from ._topk import TINY, keep_top_k, top_k_mask, top_k_masks
from ._unstructured import Unstructured

__all__ = [
    "NM",
    "TINY",
    "Block",
    "ColumnSign",
    "Constraint",
    "Coupled",
    "GlobalBudget",
    "Groups",
    "Intersect",
    "Pattern",
    "Spec",
    "Unstructured",
    "apply_masks",
    "channel_reduce",
    "coupled",
    "global_",
    "keep_top_k",
    "kept_count",
    "leaves_with_paths",
    "mine_patterns",
    "nonzero_slices",
    "path_str",
    "spec",
    "spread_channels",
    "top_k_mask",
    "top_k_masks",
]

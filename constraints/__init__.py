"""The constraint algebra: per-array sets whose projection is a mask, the exact top-k kernel,
and specs that assign constraints to the leaves of a parameter pytree (DESIGN §2)."""

from .base import Constraint, Groups
from .block import Block
from .column_sign import ColumnSign
from .counting import kept_count
from .global_budget import GlobalBudget, global_
from .intersect import Intersect
from .nm import NM
from .paths import path_str
from .pattern import Pattern, mine_patterns
from .spec import Spec, spec
from .topk import TINY, top_k_mask
from .unstructured import Unstructured

__all__ = [
    "NM",
    "TINY",
    "Block",
    "ColumnSign",
    "Constraint",
    "GlobalBudget",
    "Groups",
    "Intersect",
    "Pattern",
    "Spec",
    "Unstructured",
    "global_",
    "kept_count",
    "mine_patterns",
    "path_str",
    "spec",
    "top_k_mask",
]

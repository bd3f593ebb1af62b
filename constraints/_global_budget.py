"""Global budgets: one Unstructured or Block budget ranked across several leaves
(docs/constraints.md, "Specs and global budgets")."""

from __future__ import annotations

import re
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from ._block import Block
from ._counting import kept_count
from ._topk import top_k_masks
from ._unstructured import Unstructured

_NORMALIZE = (None, "rms", "max")


@dataclass(frozen=True)
class GlobalBudget:
    """One ``Unstructured`` or ``Block`` budget shared by every leaf whose path matches ``include``.

    The kept count is taken over all entries (or blocks) of those leaves together. Scores are |w|
    (Unstructured) or block energies (Block); ``normalize="rms"`` or ``"max"`` divides each leaf's
    scores by the root-mean-square or maximum of its finite scores first, so that layers of
    different scale compete fairly (NaN stays NaN, never kept; +inf stays inf, ranked first).
    Exact for the set {at most k nonzeros (blocks) in total} when ``normalize`` is None.
    """

    constraint: Unstructured | Block
    include: str
    normalize: str | None = None

    def __post_init__(self):
        if not isinstance(self.constraint, (Unstructured, Block)):
            raise ValueError(
                f"global_: only Unstructured or Block budgets can be shared, got {self.constraint!r}"
            )
        if self.normalize not in _NORMALIZE:
            raise ValueError(f"global_: normalize must be one of {_NORMALIZE}, got {self.normalize!r}")
        try:
            re.compile(self.include)
        except re.error as err:
            raise ValueError(f"global_: include={self.include!r} is not a valid regex ({err})") from None

    def _scores(self, w):
        """The leaf's scores (|w|, or block energies on the block grid), divided by the rms or max
        of its finite scores under ``normalize``."""
        scores = self.constraint.scores(w)
        if self.normalize is None:
            return scores
        finite = jnp.isfinite(scores)
        values = jnp.where(finite, scores, 0)
        if self.normalize == "max":
            norm = jnp.max(values, initial=0)  # an empty leaf has no scores
        else:  # sqrt(mean s^2) over the finite s
            norm = jnp.sqrt(jnp.sum(jnp.square(values)) / jnp.maximum(jnp.sum(finite), 1))
        return scores / (norm + 1e-30)

    def masks(self, leaves: list, scale=None) -> list:
        """One mask per leaf, from a single top-k over all of their (normalised) scores
        (``scale``: the gradual-pruning fraction of the sparsity, as in ``Constraint.mask``). The
        scores are ranked in place, never concatenated, so sharded leaves stay sharded."""
        scores = [self._scores(w) for w in leaves]
        total = sum(s.size for s in scores)
        keeps = top_k_masks(scores, kept_count(total, self.constraint.sparsity, scale))
        return [self.constraint.expand_flat(keep, w.shape) for w, keep in zip(leaves, keeps)]

    def is_feasible(self, leaves: list) -> jax.Array:
        c = self.constraint
        used = sum(c.used(w) for w in leaves)
        return used <= kept_count(sum(c.count(w.shape) for w in leaves), c.sparsity)


def global_(constraint: Unstructured | Block, include: str, normalize: str | None = None) -> GlobalBudget:
    """A budget ranked across all leaves matching ``include`` (see ``GlobalBudget``)."""
    return GlobalBudget(constraint, include, normalize)

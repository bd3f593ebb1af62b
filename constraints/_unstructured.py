"""Unstructured sparsity: at most k = n - floor(s * n) nonzeros; the projection keeps the k largest |w|."""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from ._base import Constraint, Groups, check_sparsity, energy_dtype, nonzero
from ._counting import kept_count
from ._topk import keep_top_k, top_k_mask


@dataclass(frozen=True)
class Unstructured(Constraint):
    """Keep exactly ``k = n - floor(sparsity * n)`` entries of largest magnitude (ties: lower flat
    index wins; NaN is never kept; see ``constraints.topk``). ``exact``: yes, since keeping the k
    largest |w| maximises the kept energy over all supports of size at most k."""

    sparsity: float

    def __post_init__(self):
        object.__setattr__(self, "sparsity", check_sparsity(self, self.sparsity))

    def kept(self, shape, scale=None):
        """Entries an array of ``shape`` keeps: ``n - floor(sparsity * n)`` (as ``Block.kept``)."""
        return kept_count(self.count(shape), self.sparsity, scale)

    # The ranking interface shared with Block, which global budgets use.
    def count(self, shape) -> int:
        return int(np.prod(shape, dtype=np.int64))

    def scores(self, w):
        return jnp.abs(w.astype(energy_dtype(w.dtype)))

    def expand_flat(self, flat, shape):
        return flat.reshape(shape)

    def used(self, w):
        """Number of nonzero entries (NaN and denormals count; see ``nonzero``)."""
        return jnp.sum(nonzero(w))

    def _mask(self, w, scale=None):
        return top_k_mask(w, self.kept(w.shape, scale), magnitude=True)

    def project(self, w, path="<array>"):
        """``where(mask(w), w, 0)`` with the mask and the masking in one pass (``keep_top_k``)."""
        w = jnp.asarray(w)
        self.check(w.shape, w.dtype, path)
        if w.size == 0:
            return w
        return keep_top_k(w, self.kept(w.shape))

    def _is_feasible(self, w):
        return self.used(w) <= self.kept(w.shape)

    def groups(self, shape):
        size = int(np.prod(shape, dtype=np.int64))
        return Groups(np.arange(size, dtype=np.int32).reshape(shape), size)

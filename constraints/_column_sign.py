"""FORMS column-sign polarity: every fragment of a crossbar column is single-signed
(docs/constraints.md, "Column-sign polarity")."""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax.numpy as jnp

from ._base import Constraint, check_float, check_int, energy_dtype, fail, normalize_axes, signs


@dataclass(frozen=True)
class ColumnSign(Constraint):
    """The nonzeros of every ``fragment``-long piece of a crossbar column share one sign.

    The leaf maps onto a crossbar as a matrix: rows are the C-order flattening of axes
    ``0..axis`` (the inputs: ``axis=0`` for a Dense kernel (in, out), ``axis=2`` for a conv kernel
    (kh, kw, cin, cout), giving kh*kw*cin rows) and columns the flattening of the axes after it.
    Each column is cut into fragments of ``fragment`` consecutive rows (the last may be partial).

    Exact: per fragment v keep v+ = max(v, 0) if ||v+||^2 >= ||v-||^2, i.e. sum(v |v|) >= 0
    (ties keep the positive side), else v- = min(v, 0); the sign choices are independent, and
    each maximises the kept energy of its fragment. NaN entries are never kept (and count for neither side).
    """

    fragment: int
    axis: int
    fixes_signs = True  # class attribute, not a field

    def __post_init__(self):
        object.__setattr__(self, "fragment", check_int(self, self.fragment, "fragment", low=1))
        object.__setattr__(self, "axis", check_int(self, self.axis, "axis"))

    def check(self, shape, dtype, path="<array>"):
        check_float(self, shape, dtype, path)
        if len(shape) < 2:
            fail(self, path, shape, "a crossbar needs input and output axes, so at least 2-d")
        axis = normalize_axes(self, (self.axis,), shape, path)[0]
        if axis == len(shape) - 1:
            fail(self, path, shape, f"axis {self.axis} is the last axis, which leaves no columns")

    def _matrix(self, x):
        """(fragments, fragment, columns) view, ragged rows padded with zeros."""
        axis = self.axis % x.ndim
        rows = 1
        for extent in x.shape[: axis + 1]:
            rows *= extent
        matrix = x.reshape(rows, -1)
        fragments = -(-rows // self.fragment)
        matrix = jnp.pad(matrix, ((0, fragments * self.fragment - rows), (0, 0)))
        return matrix.reshape(fragments, self.fragment, -1), rows

    def _unmatrix(self, fragments, rows, shape):
        return fragments.reshape(-1, fragments.shape[-1])[:rows].reshape(shape)

    def _views(self, shape):
        """(view, unview, fragment axis): when the fragment divides the extent of ``axis``, the
        leaf with that axis split in (fragments, fragment) and no axes merged (a sharded leaf stays
        sharded); otherwise the crossbar matrix ``_matrix``. Both group the same entries."""
        axis = self.axis % len(shape)
        if shape[axis] % self.fragment == 0:
            split = (*shape[:axis], shape[axis] // self.fragment, self.fragment, *shape[axis + 1 :])
            return (lambda x: x.reshape(split)), (lambda x: x.reshape(shape)), axis + 1
        rows = math.prod(shape[: axis + 1])
        return (lambda x: self._matrix(x)[0]), (lambda x: self._unmatrix(x, rows, shape)), 1

    def _mask(self, w, scale=None):
        view, unview, fragment_axis = self._views(w.shape)
        x = view(w.astype(energy_dtype(w.dtype)))
        positive, negative = (view(side) for side in signs(w))
        # ||v+||^2 - ||v-||^2 in one reduction: sum of x |x| (NaN entries count for neither side; a
        # NaN balance is inf - inf, both sides infinite, which ties and keeps the positive side)
        balance = jnp.sum(jnp.where(jnp.isnan(x), 0, x * jnp.abs(x)), axis=fragment_axis, keepdims=True)
        keep = jnp.where((balance >= 0) | jnp.isnan(balance), positive, negative)
        return unview(keep)

    def _is_feasible(self, w):
        view, _, fragment_axis = self._views(w.shape)
        positive, negative = (view(side) for side in signs(w))
        mixed = jnp.any(positive, axis=fragment_axis) & jnp.any(negative, axis=fragment_axis)
        return ~jnp.any(mixed) & ~jnp.any(jnp.isnan(w))

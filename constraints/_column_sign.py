"""FORMS column-sign polarity: every fragment of a crossbar column is single-signed
(docs/constraints.md, "Column-sign polarity")."""

from __future__ import annotations

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

    Exact: per fragment v keep v+ = max(v, 0) if ||v+||^2 >= ||v-||^2 (ties keep the positive
    side), else v- = min(v, 0); the sign choices are independent, and each maximises the kept
    energy of its fragment. NaN entries are never kept (and count for neither side).
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

    def _mask(self, w, scale=None):
        x = w.astype(energy_dtype(w.dtype))
        frags, rows = self._matrix(jnp.where(jnp.isnan(x), 0, x))
        positive, negative = (self._matrix(side)[0] for side in signs(w))
        positive_energy = jnp.sum(jnp.square(jnp.where(positive, frags, 0)), axis=1, keepdims=True)
        negative_energy = jnp.sum(jnp.square(jnp.where(negative, frags, 0)), axis=1, keepdims=True)
        keep = jnp.where(positive_energy >= negative_energy, positive, negative)
        return self._unmatrix(keep, rows, w.shape)

    def _is_feasible(self, w):
        positive, negative = (self._matrix(side)[0] for side in signs(w))
        mixed = jnp.any(positive, axis=1) & jnp.any(negative, axis=1)
        return ~jnp.any(mixed) & ~jnp.any(jnp.isnan(w))

"""Exact kept counts: k = n - floor(s * n), with a floor that forgives binary rounding.

docs/constraints.md, "Kept counts": ``Unstructured(0.9)`` on n entries keeps exactly
``n - floor(0.9 n)``. In binary floating point ``0.7 * 10 == 7.000000000000001`` and
``0.29 * 100 == 28.999999999999996``; a plain ``math.floor`` gives 7 and 28, so the second would
keep one entry too many. We take the floor of ``s * n`` after snapping it to the nearest integer
when it lies within a relative 1e-9 of one, which is far below any sparsity a user can mean and
far above float64 rounding error.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

_SNAP = 1e-9


def robust_floor(x: float) -> int:
    """``floor(x)``, except that x within a relative 1e-9 of an integer counts as that integer."""
    nearest = round(x)
    if abs(x - nearest) <= _SNAP * max(1.0, abs(x)):
        return int(nearest)
    return math.floor(x)


def pruned_count(n: int, sparsity: float) -> int:
    """Number of entries (or blocks, kernels, groups) a sparsity removes: ``floor(s * n)``."""
    return robust_floor(sparsity * n)


def kept_count(n: int, sparsity: float, scale=None):
    """Number of entries kept at a sparsity: ``k = n - floor(s * n)`` (so s = 0.9, n = 10 keeps 1).

    With ``scale`` (a fraction in [0, 1], traced or not: the gradual-pruning ramp) it is the traced
    int32 ``n - floor(scale * floor(s * n))``: the exact pruned count scaled, so scale 1 gives
    exactly the static k.
    """
    pruned = pruned_count(n, sparsity)
    if scale is None:
        return n - pruned
    scale = jnp.clip(jnp.asarray(scale, jnp.float32), 0.0, 1.0)
    scaled = jnp.where(scale >= 1.0, pruned, jnp.floor(scale * pruned).astype(jnp.int32))
    return jnp.int32(n) - scaled

"""Exact kept counts: k = n - floor(s * n), with a floor that forgives binary rounding.

docs/constraints.md, "Kept counts": ``Unstructured(0.9)`` on n entries keeps exactly
``n - floor(0.9 n)``. In binary floating point ``0.7 * 10 == 7.000000000000001`` and
``0.29 * 100 == 28.999999999999996``; a plain ``math.floor`` gives 7 and 28, so the second would
keep one entry too many. So s * n is computed exactly for the decimal that s prints as (its
shortest round-trip form: 0.29 for the float nearest 0.29, also for ``np.float32(0.29)``), and the
floor snaps to the nearest integer when s * n lies within 1e-9 of one (absolutely), which forgives
computed sparsities such as ``2 / 3`` (``2 / 3 * 3 == 1.9999999999999998``).
"""

from __future__ import annotations

import math
from fractions import Fraction

import jax.numpy as jnp

_SNAP = 1e-9


def robust_floor(x) -> int:
    """``floor(x)``, except that x within 1e-9 of an integer (|x - round(x)| <= 1e-9) counts as it."""
    nearest = round(x)
    if abs(x - nearest) <= _SNAP:
        return int(nearest)
    return math.floor(x)


def pruned_count(n: int, sparsity: float) -> int:
    """Number of entries (or blocks, kernels, groups) a sparsity removes: ``floor(s * n)``, with
    s * n exact for the decimal s prints as."""
    return robust_floor(Fraction(str(sparsity)) * n)


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

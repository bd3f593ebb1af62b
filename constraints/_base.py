"""What every constraint is: a downward-closed set of arrays whose projection is a mask
(docs/constraints.md, "The one idea").

A constraint is a frozen, hashable dataclass holding static configuration only, so it can be a
static argument of ``jax.jit``. Subclasses implement ``_mask``, ``_is_feasible`` and ``groups``
and ``check`` their configuration against a leaf; the base class gives ``project``, ``&`` and the
error messages that name the leaf path, shape, dtype, axis and constraint.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from functools import cached_property

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


@dataclass(frozen=True)
class Groups:
    """The group structure a penalty method uses (docs/constraints.md, "Groups"): ``ids`` has the
    leaf's shape and numbers the groups 0..count-1; the hard prune of the same constraint keeps or
    drops whole groups (Block, Pattern tiles) or entries (Unstructured: one group per entry)."""

    ids: np.ndarray
    count: int

    @cached_property
    def singletons(self) -> bool:
        """Every entry its own group, numbered in flat order (Unstructured): no gather needed."""
        return self.count == self.ids.size and bool(np.all(self.ids.reshape(-1) == np.arange(self.count)))

    def norms(self, w: jax.Array) -> jax.Array:
        """L2 norm of every group, shape (count,)."""
        w = w.astype(jnp.promote_types(w.dtype, jnp.float32))
        if self.singletons:
            return jnp.abs(w).reshape(-1)
        return jnp.sqrt(jax.ops.segment_sum(jnp.square(w).reshape(-1), self.ids.reshape(-1), self.count))

    def spread(self, values: jax.Array) -> jax.Array:
        """One value per group broadcast onto the leaf's shape."""
        if self.singletons:
            return values.reshape(self.ids.shape)
        return values[self.ids]


class Constraint:
    """Base of every constraint. ``mask(w)`` is the best admissible support (largest kept energy,
    deterministic ties), ``project(w) == where(mask(w), w, 0)``, ``is_feasible(w)`` a jit-safe
    bool scalar. ``exact`` says whether ``project`` is the Euclidean projection onto the set."""

    exact: bool = True
    # A sign rule (ColumnSign): masking alone does not keep w feasible while kept entries change,
    # so masked retraining must also keep their signs (``solvers.keep_masked(keep_signs=...)``).
    fixes_signs: bool = False

    # -- to implement ---------------------------------------------------------------------------
    def check(self, shape: tuple[int, ...], dtype, path: str = "<array>") -> None:
        """Raise ValueError if this constraint cannot apply to a leaf of this shape and dtype."""
        check_float(self, shape, dtype, path)

    def _mask(self, w: jax.Array, scale=None) -> jax.Array:
        """The mask; ``scale`` (see ``mask``) only matters to constraints with a sparsity."""
        raise NotImplementedError

    def _is_feasible(self, w: jax.Array) -> jax.Array:
        raise NotImplementedError

    def groups(self, shape: tuple[int, ...]) -> Groups | None:
        return None

    # -- given --------------------------------------------------------------------------------
    def mask(self, w: jax.Array, path: str = "<array>", scale=None) -> jax.Array:
        """``scale`` in [0, 1] (may be traced) prunes that fraction of each sparsity's count: the
        gradual-pruning ramp. Structure-only constraints (N:M, patterns, polarity) apply in full."""
        w = jnp.asarray(w)
        self.check(w.shape, w.dtype, path)
        if w.size == 0:
            return jnp.zeros(w.shape, bool)
        return self._mask(w, scale)

    def project(self, w: jax.Array, path: str = "<array>") -> jax.Array:
        w = jnp.asarray(w)
        return jnp.where(self.mask(w, path), w, jnp.zeros((), w.dtype))

    def is_feasible(self, w: jax.Array, path: str = "<array>") -> jax.Array:
        w = jnp.asarray(w)
        self.check(w.shape, w.dtype, path)
        if w.size == 0:
            return jnp.asarray(True)
        return self._is_feasible(w)

    def __and__(self, other: Constraint) -> Constraint:
        from ._intersect import Intersect

        return Intersect.of(self, other)


def fail(constraint, path: str, shape, message: str) -> None:
    """Raise the one error format of the package: leaf path, shape, constraint, what is wrong."""
    raise ValueError(f"{constraint!r} on leaf {path!r} with shape {tuple(shape)}: {message}")


def check_float(constraint, shape, dtype, path: str) -> None:
    if not jnp.issubdtype(dtype, jnp.floating):
        fail(constraint, path, shape, f"dtype {jnp.dtype(dtype).name} is not a float type")


def normalize_axes(constraint, axes, shape, path: str) -> tuple[int, ...]:
    """Axes made non-negative; out-of-range or repeated axes are an error naming them."""
    ndim = len(shape)
    out = []
    for axis in axes:
        if not -ndim <= axis < ndim:
            fail(constraint, path, shape, f"axis {axis} is out of range for {ndim}-d leaf")
        out.append(axis % ndim)
    if len(set(out)) != len(out):
        fail(constraint, path, shape, f"axes {tuple(axes)} repeat an axis")
    return tuple(out)


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and _is_real(value)


def check_sparsity(constraint, sparsity, name: str = "sparsity") -> float:
    """A Python or NumPy real in [0, 1) as a float (a NumPy float as the decimal it prints as:
    ``np.float32(0.3)`` is 0.3), else a ValueError naming the constraint, parameter and value."""
    if not (_is_real(sparsity) and 0.0 <= sparsity < 1.0):
        raise ValueError(f"{type(constraint).__name__}: {name} must be a number in [0, 1), got {sparsity!r}")
    return float(str(sparsity)) if isinstance(sparsity, np.floating) else float(sparsity)


def check_int(constraint, value, name: str, low: int | None = None, high: int | None = None) -> int:
    """A Python or NumPy int (>= low, and <= high if given) as an int, else a ValueError naming
    the constraint, parameter and value."""
    if not (_is_int(value) and (low is None or value >= low) and (high is None or value <= high)):
        bound = "" if low is None else f" >= {low}" if high is None else f" in [{low}, {high}]"
        raise ValueError(f"{type(constraint).__name__}: {name} must be an int{bound}, got {value!r}")
    return int(value)


def check_ints(constraint, values, name: str, positive: bool = False) -> tuple[int, ...]:
    """A non-empty sequence of Python or NumPy ints (positive ones if ``positive``) as a tuple of
    ints, else a ValueError naming the constraint, parameter and value."""
    try:
        ints = tuple(values)
    except TypeError:
        ints = ()
    if not (ints and all(_is_int(v) and (v > 0 or not positive) for v in ints)):
        kind = "positive ints" if positive else "ints"
        raise ValueError(f"{type(constraint).__name__}: {name} must be a sequence of {kind}, got {values!r}")
    return tuple(int(v) for v in ints)


def energy_dtype(dtype):
    """Scores of float16/bfloat16 leaves are computed in float32 (no overflow, exact order)."""
    return jnp.promote_types(dtype, jnp.float32)


_UNSIGNED = {2: np.uint16, 4: np.uint32, 8: np.uint64}


def _magnitude_bits(w):
    """(bits of |w|, sign bit set, bits of +inf) as unsigned ints, with integer operations only:
    XLA:CPU flushes denormals to zero in float operations, also in ones fused with a bitcast."""
    dtype = jnp.dtype(w.dtype)
    unsigned = _UNSIGNED[dtype.itemsize]
    bits = lax.bitcast_convert_type(w, unsigned)
    sign = unsigned(1) << unsigned(8 * dtype.itemsize - 1)
    infinity = np.array(np.inf, dtype).view(unsigned)
    return bits & ~sign, (bits & sign) != 0, infinity


def nonzero(w) -> jax.Array:
    """``w != 0`` read from the bits: every value but +-0 is a nonzero, denormals and NaN included
    (XLA:CPU compares denormals as 0, so ``w != 0`` would not count them)."""
    magnitude, _, _ = _magnitude_bits(w)
    return magnitude != 0


def signs(w) -> tuple[jax.Array, jax.Array]:
    """(positive, negative) entries, from the bits as ``nonzero``; NaN is neither."""
    magnitude, negative, infinity = _magnitude_bits(w)
    number = (magnitude != 0) & (magnitude <= infinity)
    return number & ~negative, number & negative

"""N:M sparsity: at most n nonzeros in every run of m consecutive entries along an axis."""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from ._base import Constraint, Groups, check_float, check_int, fail, nonzero, normalize_axes
from ._topk import ranking_key


def _runs(w, axis: int, m: int, fill):
    """View ``w`` as (..., groups, m) along ``axis``, the ragged last run padded with ``fill``."""
    moved = jnp.moveaxis(w, axis, -1)
    length = moved.shape[-1]
    groups = -(-length // m)
    pad = [(0, 0)] * (moved.ndim - 1) + [(0, groups * m - length)]
    padded = jnp.pad(moved, pad, constant_values=fill)
    return padded.reshape(*moved.shape[:-1], groups, m), length


def _unruns(runs, axis: int, length: int):
    flat = runs.reshape(*runs.shape[:-2], -1)[..., :length]
    return jnp.moveaxis(flat, -1, axis)


@dataclass(frozen=True)
class NM(Constraint):
    """At most ``n`` nonzeros in each run of ``m`` consecutive entries along ``axis`` (2:4 is
    ``NM(2, 4, axis)``). A ragged last run (length % m != 0) is a partial group that may keep
    min(n, its length). Exact: top-n |w| per run, ties to the lower position, NaN never kept."""

    n: int
    m: int
    axis: int

    def __post_init__(self):
        object.__setattr__(self, "m", check_int(self, self.m, "m (M of N:M)", low=1))
        object.__setattr__(self, "n", check_int(self, self.n, "n (N of N:M)", low=0, high=self.m))
        object.__setattr__(self, "axis", check_int(self, self.axis, "axis"))

    def check(self, shape, dtype, path="<array>"):
        check_float(self, shape, dtype, path)
        if len(shape) == 0:
            fail(self, path, shape, "N:M needs an axis, and a 0-d leaf has none")
        normalize_axes(self, (self.axis,), shape, path)

    def _axis(self, w):
        return self.axis % w.ndim

    def _mask(self, w, scale=None):
        axis = self._axis(w)
        score = ranking_key(jnp.abs(w.astype(jnp.promote_types(w.dtype, jnp.float32))))
        runs, length = _runs(score, axis, self.m, -1.0)  # padding ranks with NaN: never kept
        a = runs[..., :, None]
        b = runs[..., None, :]
        position = jnp.arange(self.m)
        earlier = position[None, :] < position[:, None]  # [i, j]: j comes before i
        beaten_by = (b > a) | ((b == a) & earlier)
        rank = jnp.sum(beaten_by, axis=-1)
        keep = (rank < self.n) & (runs >= 0)
        return _unruns(keep, axis, length)

    def _is_feasible(self, w):
        runs, _ = _runs(nonzero(w).astype(jnp.int32), self._axis(w), self.m, 0)
        return jnp.all(jnp.sum(runs, axis=-1) <= self.n)

    def groups(self, shape):
        axis = self.axis % len(shape)
        position = np.arange(shape[axis]) // self.m
        runs_per_line = -(-shape[axis] // self.m)
        lines = np.arange(int(np.prod(shape, dtype=np.int64)) // max(shape[axis], 1))
        lines = lines.reshape([s for i, s in enumerate(shape) if i != axis] or [1])
        ids = np.expand_dims(lines, axis) * runs_per_line + np.expand_dims(
            position, tuple(i for i in range(len(shape)) if i != axis)
        )
        return Groups(ids.reshape(shape).astype(np.int32), int(lines.size * runs_per_line))

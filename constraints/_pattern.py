"""Kernel and tile patterns (PatDNN 3x3 kernel patterns, RT3 b x b tile patterns) with optional
connectivity, and pattern-set mining from weights (docs/constraints.md, "Patterns")."""

from __future__ import annotations

import hashlib
import reprlib
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._base import (
    Constraint,
    Groups,
    check_float,
    check_ints,
    check_sparsity,
    energy_dtype,
    fail,
    nonzero,
    normalize_axes,
)
from ._block import block_grid, tile_view, untile_view
from ._counting import kept_count
from ._topk import ranking_key, top_k_mask


def _as_pattern_array(patterns) -> np.ndarray:
    try:
        array = np.asarray(patterns)
    except ValueError:  # numpy: "inhomogeneous shape"
        raise ValueError(
            "Pattern: patterns must be a stack (count, *tile_shape) of equally shaped tiles, got the "
            f"ragged {reprlib.repr(patterns)}"
        ) from None
    if array.ndim < 2 or array.shape[0] == 0:
        raise ValueError(
            f"Pattern: patterns must be a non-empty stack (count, *tile_shape), got shape {array.shape}"
        )
    if 0 in array.shape[1:]:
        raise ValueError(
            f"Pattern: patterns must have a tile shape without zero extents, got {array.shape[1:]}"
        )
    if not np.isin(array, (0, 1)).all():
        raise ValueError("Pattern: patterns must hold only 0 and 1")
    return array.astype(bool)


def _first_best(ranked, kept):
    """Per tile: the first index of the largest ``ranked`` (lower pattern index on ties) and the
    ``kept`` energy there."""
    choice = jnp.argmax(ranked, axis=-1)
    return choice, jnp.take_along_axis(kept, choice[..., None], axis=-1)[..., 0]


def _nested_tuple(array: np.ndarray):
    return tuple(_nested_tuple(a) for a in array) if array.ndim else bool(array)


@dataclass(frozen=True)
class Pattern(Constraint):
    """Every tile of ``w`` along ``axes`` keeps a support inside one pattern of the set; with
    ``connectivity`` (a sparsity over tiles) at most ``tiles - floor(connectivity * tiles)`` tiles
    are nonzero.

    ``patterns`` is 0/1 data of shape (count, *tile) with ``len(tile) == len(axes)``. By default a
    tile is the whole extent of ``axes`` (PatDNN: ``axes=(0, 1)`` of a (3, 3, cin, cout) kernel,
    one pattern per kernel) and that extent must equal the pattern shape; with ``tiles=True`` the
    axes are cut into pattern-sized tiles, ragged edges cropping the pattern (RT3 tiles).

    Exact: per tile the pattern of largest kept energy (ties: the lower pattern index), then the
    top-k tiles by that kept energy (ties: lower tile index). This order is the true projection,
    since a kept tile contributes its best pattern's energy and a dropped one nothing; PatDNN's
    order (connectivity by raw kernel norm, then patterns) is not.
    """

    patterns: tuple
    axes: tuple[int, ...]
    connectivity: float | None = None
    tiles: bool = False

    def __post_init__(self):
        array = _as_pattern_array(self.patterns)
        object.__setattr__(self, "patterns", _nested_tuple(array))
        object.__setattr__(self, "axes", check_ints(self, self.axes, "axes"))
        if array.ndim - 1 != len(self.axes):
            raise ValueError(
                f"Pattern: patterns of tile shape {array.shape[1:]} need {array.ndim - 1} axes, "
                f"got axes={self.axes}"
            )
        if self.connectivity is not None:
            object.__setattr__(self, "connectivity", check_sparsity(self, self.connectivity, "connectivity"))

    @property
    def pattern_array(self) -> np.ndarray:
        return np.asarray(self.patterns, dtype=bool)

    @property
    def tile_shape(self) -> tuple[int, ...]:
        return self.pattern_array.shape[1:]

    def __repr__(self):
        """Names the pattern set by a digest of its shape and entries, so that distinct sets (run
        fingerprints use the repr) have distinct reprs."""
        extra = "" if self.connectivity is None else f", connectivity={self.connectivity!r}"
        tiled = ", tiles=True" if self.tiles else ""
        array = self.pattern_array
        digest = hashlib.sha256(repr(array.shape).encode() + array.tobytes()).hexdigest()[:12]
        return (
            f"Pattern({array.shape[0]} patterns of {self.tile_shape} sha256:{digest}, "
            f"axes={self.axes}{extra}{tiled})"
        )

    def check(self, shape, dtype, path="<array>"):
        check_float(self, shape, dtype, path)
        axes = normalize_axes(self, self.axes, shape, path)
        extent = tuple(shape[a] for a in axes)
        if not self.tiles and extent != self.tile_shape:
            fail(
                self,
                path,
                shape,
                f"axes {self.axes} have extent {extent} but the patterns are {self.tile_shape}; "
                "use patterns of that size, or tiles=True to cut the axes into pattern tiles",
            )

    def _axes(self, ndim):
        return tuple(a % ndim for a in self.axes)

    def _tiles(self, x, fill=0):
        """(grid..., rest..., tile_size): every tile's entries flattened, the tiles still indexed by
        the tile grid and the non-tiled axes (not flattened, so a sharded leaf stays sharded)."""
        tiled = tile_view(x, self._axes(x.ndim), self.tile_shape, fill)
        size = int(np.prod(self.tile_shape))
        return tiled.reshape(*tiled.shape[: tiled.ndim - len(self.tile_shape)], size)

    def _untile(self, flat_tiles, shape):
        axes = self._axes(len(shape))
        grid = block_grid(shape, axes, self.tile_shape)
        rest = tuple(shape[a] for a in range(len(shape)) if a not in axes)
        return untile_view(flat_tiles.reshape(grid + rest + self.tile_shape), shape, axes, self.tile_shape)

    def count(self, shape) -> int:
        axes = self._axes(len(shape))
        rest = [shape[a] for a in range(len(shape)) if a not in axes]
        return int(np.prod(block_grid(shape, axes, self.tile_shape) + tuple(rest), dtype=np.int64))

    def _energies(self, w):
        """(tiles, size) squared entries in ``ranking_key`` order: NaN -> -1, at most TINY -> 0."""
        return self._tiles(ranking_key(jnp.square(w.astype(energy_dtype(w.dtype)))), fill=0)

    @partial(jax.jit, static_argnums=0)  # eager calls then compile the lax.cond once per shape
    def _best(self, w):
        """Per tile: the chosen pattern's mask (tiles..., size) and its kept energy (tiles...).

        A pattern's kept energy is one matrix product of the tile's energies (NaN as 0) with the
        patterns; the largest wins (ties: the lower pattern index). An infinite entry makes that
        product inf or NaN (inf * 0), which the chosen energies show without another pass; only
        then are patterns compared as (infinite entries kept, finite energy kept), the order of
        kept energies as the infinite entries grow without bound: +inf is the largest magnitude,
        as in every family. A tile keeping an infinite entry has kept energy inf; one holding a
        NaN, NaN (connectivity never keeps it).
        """
        pats = jnp.asarray(self.pattern_array.reshape(self.pattern_array.shape[0], -1))
        weights = pats.T.astype(energy_dtype(w.dtype))
        tiles = self._energies(w)
        kept = jnp.where(tiles < 0, 0, tiles) @ weights  # (tiles..., count)
        choice, best = _first_best(kept, kept)

        def infinite_first():  # recomputes the energies: capturing them costs a pass on every call
            tiles = self._energies(w)
            infinite = jnp.isinf(tiles)
            finite_kept = jnp.where(infinite | (tiles < 0), 0, tiles) @ weights
            infinite_kept = infinite.astype(weights.dtype) @ weights
            most = jnp.max(infinite_kept, axis=-1, keepdims=True)
            choice, best = _first_best(jnp.where(infinite_kept == most, finite_kept, -1), finite_kept)
            return choice, jnp.where(most[..., 0] > 0, jnp.inf, best)

        choice, best = lax.cond(jnp.all(jnp.isfinite(best)), lambda: (choice, best), infinite_first)
        return pats[choice] & (tiles >= 0), jnp.where(jnp.any(tiles < 0, axis=-1), jnp.nan, best)

    def _mask(self, w, scale=None):
        chosen, best = self._best(w)
        if self.connectivity is not None:
            keep = top_k_mask(best, kept_count(best.size, self.connectivity, scale))
            chosen = chosen & keep[..., None]
        return self._untile(chosen, w.shape)

    def _is_feasible(self, w):
        support = self._tiles(nonzero(w).astype(jnp.float32))
        pats = jnp.asarray(self.pattern_array.reshape(self.pattern_array.shape[0], -1))
        outside = support @ (~pats).T.astype(jnp.float32)  # nonzeros outside each pattern
        inside_some = jnp.any(outside == 0, axis=-1)
        ok = jnp.all(inside_some)
        if self.connectivity is not None:
            nonzero_tiles = jnp.sum(jnp.any(support > 0, axis=-1))
            ok = ok & (nonzero_tiles <= kept_count(support[..., 0].size, self.connectivity))
        return ok

    def groups(self, shape):
        ids = np.arange(self.count(shape), dtype=np.int32)[:, None]
        size = int(np.prod(self.tile_shape))
        flat = np.broadcast_to(ids, (ids.shape[0], size))
        with jax.ensure_compile_time_eval():  # host data, also when called while tracing
            return Groups(np.asarray(self._untile(jnp.asarray(flat), tuple(shape))), int(ids.shape[0]))


def mine_patterns(
    w,
    axes: tuple[int, ...],
    tile_shape: tuple[int, ...],
    nonzeros: int,
    count: int,
    always: tuple[tuple[int, ...], ...] = (),
) -> np.ndarray:
    """The ``count`` most frequent top-``nonzeros`` masks of the tiles of ``w`` (PatDNN, RT3).

    Each tile of shape ``tile_shape`` along ``axes`` (ragged edges are skipped: a partial tile
    has no full-size mask) keeps the positions in ``always`` (PatDNN: the centre ``(1, 1)``) plus
    its largest |w| up to ``nonzeros`` in all (ties: the lower position). Masks are counted over
    the tiles with a nonzero (RT3 mines the tiles that survived block pruning; an all-zero tile's
    top-n is only the tie rule); equally frequent masks are ordered by first occurrence. Returns a bool array
    (found, *tile_shape) with found <= count (fewer when fewer distinct masks occur). Host-side
    numpy: a pattern set is data prepared once, not part of a jitted step.
    """
    w = np.asarray(w, dtype=np.float64)
    size = int(np.prod(tile_shape))
    if not 0 < nonzeros <= size:
        raise ValueError(f"mine_patterns: nonzeros must be in [1, {size}], got {nonzeros}")
    if count <= 0:
        raise ValueError(f"mine_patterns: count must be positive, got {count}")
    axes = tuple(a % w.ndim for a in axes)
    crop = [slice(None)] * w.ndim
    for axis, extent in zip(axes, tile_shape):
        crop[axis] = slice(0, (w.shape[axis] // extent) * extent)
    w = w[tuple(crop)]
    if any(w.shape[a] == 0 for a in axes):
        raise ValueError(f"mine_patterns: no whole {tile_shape} tile fits along axes {axes} of {w.shape}")
    tiles = np.asarray(tile_view(jnp.asarray(np.abs(w)), axes, tuple(tile_shape))).reshape(-1, size)
    tiles = tiles[np.any(tiles != 0, axis=1)]
    if not len(tiles):
        raise ValueError(
            f"mine_patterns: every whole {tile_shape} tile along axes {axes} of {w.shape} is zero"
        )
    forced = np.zeros(size, bool)
    for position in always:
        forced[np.ravel_multi_index(position, tile_shape)] = True
    if forced.sum() > nonzeros:
        raise ValueError(f"mine_patterns: {int(forced.sum())} forced positions exceed nonzeros={nonzeros}")
    scores = np.where(forced, np.inf, np.nan_to_num(tiles, nan=-1.0))
    order = np.argsort(-scores, axis=1, kind="stable")[:, :nonzeros]
    masks = np.zeros_like(tiles, dtype=bool)
    np.put_along_axis(masks, order, True, axis=1)
    unique, first, counts = np.unique(masks, axis=0, return_index=True, return_counts=True)
    ranked = sorted(range(len(unique)), key=lambda i: (-counts[i], first[i]))[:count]
    return unique[ranked].reshape(-1, *tile_shape)

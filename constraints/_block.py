"""Block sparsity: at most k nonzero blocks; rows, columns, filters and b x b tiles are special cases."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ._base import (
    Constraint,
    Groups,
    check_float,
    check_ints,
    check_sparsity,
    energy_dtype,
    nonzero,
    normalize_axes,
)
from ._counting import kept_count
from ._topk import top_k_mask


def block_grid(shape, axes, block) -> tuple[int, ...]:
    """Number of blocks along each of ``axes`` (ragged edges count as partial blocks)."""
    return tuple(-(-shape[a] // b) for a, b in zip(axes, block))


def tile_view(x, axes, block, fill=0):
    """Pad ``x`` along ``axes`` to whole blocks and reshape to (grid..., rest..., block...).

    The leading dims index blocks, then come the axes outside ``axes`` (a block spans all of
    them), then the within-block offsets. ``untile_view`` inverts it.
    """
    grid = block_grid(x.shape, axes, block)
    pad = [(0, 0)] * x.ndim
    for a, b, g in zip(axes, block, grid):
        pad[a] = (0, g * b - x.shape[a])
    x = jnp.pad(x, pad, constant_values=fill)
    split = []
    for a in range(x.ndim):
        if a in axes:
            i = axes.index(a)
            split += [grid[i], block[i]]
        else:
            split += [x.shape[a]]
    x = x.reshape(split)
    # where each axis' split dims sit; grid and offset dims are then ordered as `axes` lists them
    pos, grid_pos, offset_pos, rest_dims = 0, {}, {}, []
    for a in range(len(pad)):
        if a in axes:
            grid_pos[a], offset_pos[a] = pos, pos + 1
            pos += 2
        else:
            rest_dims.append(pos)
            pos += 1
    grid_dims = [grid_pos[a] for a in axes]
    offset_dims = [offset_pos[a] for a in axes]
    return jnp.transpose(x, grid_dims + rest_dims + offset_dims)


def untile_view(tiles, shape, axes, block):
    """Inverse of ``tile_view``: back to ``shape``, padding cropped."""
    ndim = len(shape)
    grid = block_grid(shape, axes, block)
    n_grid = len(axes)
    rest = [a for a in range(ndim) if a not in axes]
    order = []  # for each split dim of the padded array, where it sits in `tiles`
    for a in range(ndim):
        if a in axes:
            i = axes.index(a)
            order += [i, n_grid + len(rest) + i]
        else:
            order += [n_grid + rest.index(a)]
    x = jnp.transpose(tiles, order)
    padded = [g * b for g, b in zip(grid, block)]
    full = [padded[axes.index(a)] if a in axes else shape[a] for a in range(ndim)]
    x = x.reshape(full)
    return x[tuple(slice(0, s) for s in shape)]


@dataclass(frozen=True)
class Block(Constraint):
    """At most ``k = blocks - floor(sparsity * blocks)`` nonzero blocks. A block has extent
    ``shape[i]`` along ``axes[i]`` and spans every other axis whole, so on a Dense kernel (in, out)
    ``Block((1,), axes=(0,))`` prunes rows, ``Block((1,), axes=(1,))`` columns and
    ``Block((16, 16), axes=(0, 1))`` 16x16 tiles; on a conv kernel (kh, kw, cin, cout)
    ``Block((1,), axes=(3,))`` prunes filters. Ragged edges are partial blocks. Exact: keep the k
    blocks of largest L2 norm (ties to the lower block index; a block holding NaN is never kept)."""

    shape: tuple[int, ...]
    sparsity: float
    axes: tuple[int, ...]

    def __post_init__(self):
        object.__setattr__(self, "shape", check_ints(self, self.shape, "block shape", positive=True))
        object.__setattr__(self, "sparsity", check_sparsity(self, self.sparsity))
        object.__setattr__(self, "axes", check_ints(self, self.axes, "axes"))
        if len(self.shape) != len(self.axes):
            raise ValueError(f"Block: shape {self.shape} and axes {self.axes} must have the same length")

    def check(self, shape, dtype, path="<array>"):
        check_float(self, shape, dtype, path)
        normalize_axes(self, self.axes, shape, path)

    def _axes(self, ndim):
        return tuple(a % ndim for a in self.axes)

    def count(self, shape) -> int:
        return int(np.prod(block_grid(shape, self._axes(len(shape)), self.shape), dtype=np.int64))

    def kept(self, shape, scale=None):
        return kept_count(self.count(shape), self.sparsity, scale)

    def scores(self, w):
        """Energy ||w_b||^2 of every block, shaped like the block grid."""
        axes = self._axes(w.ndim)
        tiles = tile_view(jnp.square(w.astype(energy_dtype(w.dtype))), axes, self.shape)
        return jnp.sum(tiles, axis=tuple(range(len(axes), tiles.ndim)))  # (grid..., rest..., block...)

    def expand(self, block_values, shape):
        """Broadcast one value per block back onto the leaf's shape."""
        axes = self._axes(len(shape))
        rest = [shape[a] for a in range(len(shape)) if a not in axes]
        tiles = jnp.broadcast_to(
            block_values.reshape(block_values.shape + (1,) * (len(rest) + len(axes))),
            block_values.shape + tuple(rest) + self.shape,
        )
        return untile_view(tiles, tuple(shape), axes, self.shape)

    def expand_flat(self, flat, shape):
        """``expand`` for one value per block in flat (row-major grid) order."""
        return self.expand(flat.reshape(block_grid(shape, self._axes(len(shape)), self.shape)), shape)

    def used(self, w):
        """Number of blocks holding a nonzero (NaN and denormals count; see ``nonzero``)."""
        return jnp.sum(self.scores(jnp.where(nonzero(w), 1.0, 0.0)) > 0)

    def _mask(self, w, scale=None):
        keep = top_k_mask(self.scores(w), self.kept(w.shape, scale))
        return self.expand(keep, w.shape)

    def _is_feasible(self, w):
        return self.used(w) <= self.kept(w.shape)

    def groups(self, shape):
        grid = block_grid(shape, self._axes(len(shape)), self.shape)
        ids = np.arange(int(np.prod(grid, dtype=np.int64)), dtype=np.int32).reshape(grid)
        with jax.ensure_compile_time_eval():  # host data, also when called while tracing
            return Groups(np.asarray(self.expand(jnp.asarray(ids), shape)), int(ids.size))

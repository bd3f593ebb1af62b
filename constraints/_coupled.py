"""Coupled groups: channels that span slices of several leaves and are kept or removed together
(docs/constraints.md, "Coupled groups").

A conv filter is more than its kernel's output slice: its BatchNorm scale and bias and the next
layer's input slice must go with it, or the model cannot be made smaller. A coupling names those
slices — ``(path, axis)`` or ``(path, axis, size)`` members, channel j of a member being its
slices j·size .. (j+1)·size − 1 along ``axis`` (size > 1: an attention head's d columns), every
member of a coupling holding the same number n of channels. A channel's energy is the sum of the
squared norms of its slices, e_j = Σ_m ||w_m[channel j]||², so ranking channels by e_j ranks them
by the L2 norm of the whole coupled group.

``Coupled`` is a spec rule over one or more couplings at one sparsity:

* per coupling (``shared=False``): each keeps its k_c = n_c − floor(s·n_c) most energetic channels;
* ``shared=True``: one budget k = N − floor(s·N) over all N channels of all couplings (the
  ``global_`` of coupled groups), optionally normalising each coupling's energies first;
* ``round_to`` r: kept widths come in chunks of r channels (hardware-friendly shapes): the set is
  Σ_c ⌈u_c / r⌉ ≤ ⌈k / r⌉ chunks (u_c: the channels coupling c uses; per coupling, ⌈u_c/r⌉ ≤
  ⌈k_c/r⌉), so a coupling keeps a multiple of r channels, or all n_c of them.

The projection is exact (the largest kept energy within the set, for ``normalize=None``): per
coupling the best u channels are its u most energetic, and with energies sorted the value of a
coupling's next chunk never grows, so one top-k over all chunk energies picks an optimal prefix of
chunks in every coupling. Ties go to the lower channel (and chunk) index; a channel with a NaN in
any slice is never kept (nor is a chunk holding one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ._base import Groups, check_sparsity, energy_dtype, nonzero
from ._block import Block
from ._counting import kept_count
from ._topk import top_k_mask

_NORMALIZE = (None, "rms", "max")


def _fail(where: str, message: str):
    raise ValueError(f"coupled {where}: {message}")


@dataclass(frozen=True)
class Coupled:
    """Spec rule: ``couplings`` is a tuple of ``(name, ((path, axis, size), ...))``; every member
    path is matched exactly (not as a regex) and belongs to one coupling only. See the module
    docstring for the set and its projection; build with ``constraints.coupled``."""

    couplings: tuple
    sparsity: float
    round_to: int = 1
    shared: bool = False
    normalize: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "sparsity", check_sparsity(self, self.sparsity))
        if not (isinstance(self.round_to, int | np.integer) and not isinstance(self.round_to, bool)):
            _fail("rule", f"round_to must be a positive int, got {self.round_to!r}")
        if self.round_to <= 0:
            _fail("rule", f"round_to must be a positive int, got {self.round_to!r}")
        if self.normalize not in _NORMALIZE:
            _fail("rule", f"normalize must be one of {_NORMALIZE}, got {self.normalize!r}")
        if self.normalize is not None and not self.shared:
            _fail("rule", "normalize only applies to a shared budget (shared=True)")
        couplings, owner = [], {}
        items = self.couplings.items() if isinstance(self.couplings, dict) else self.couplings
        for entry in items:
            if not (isinstance(entry, tuple | list) and len(entry) == 2 and isinstance(entry[0], str)):
                _fail("rule", f"a coupling is (name, [(path, axis[, size]), ...]), got {entry!r}")
            name, members = entry[0], tuple(tuple(m) for m in entry[1])
            if not members:
                _fail(f"group {name!r}", "has no members")
            members = tuple(m if len(m) != 2 else (*m, 1) for m in members)
            for member in members:
                if not (
                    len(member) == 3
                    and isinstance(member[0], str)
                    and all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in member[1:])
                    and member[2] > 0
                ):
                    _fail(
                        f"group {name!r}",
                        f"a member is (path, axis) or (path, axis, size > 0), got {member!r}",
                    )
                if member[0] in owner:
                    _fail(
                        f"group {name!r}",
                        f"leaf {member[0]!r} is also a member of group {owner[member[0]]!r}; "
                        "a leaf belongs to one coupled group",
                    )
                owner[member[0]] = name
            couplings.append((name, tuple((p, int(a), int(z)) for p, a, z in members)))
        if not couplings:
            _fail("rule", "needs at least one coupling")
        object.__setattr__(self, "couplings", tuple(couplings))

    @property
    def include(self) -> str:
        """A regex of the member paths (how a spec lists the rule)."""
        return "^(" + "|".join(re.escape(p) for p in self.paths) + ")$"

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(m[0] for _, members in self.couplings for m in members)

    def member_of(self, path: str) -> tuple[str, int, int]:
        """``(path, axis, size)`` of a member path."""
        return next(m for _, members in self.couplings for m in members if m[0] == path)

    def axis_of(self, path: str) -> int:
        return self.member_of(path)[1]

    def group_of(self, path: str) -> int:
        """The index of the coupling that ``path`` belongs to."""
        return next(i for i, (_, members) in enumerate(self.couplings) if path in {m[0] for m in members})

    def extent(self, coupling: int, leaves: dict) -> int:
        """The number of channels of coupling ``coupling``."""
        path, axis, size = self.couplings[coupling][1][0]
        return np.shape(leaves[path])[axis] // size

    # -- checks ---------------------------------------------------------------------------------
    def check(self, leaves: dict) -> None:
        """Every member present with a float dtype and an in-range axis, and the members of each
        coupling of one extent; ``leaves`` maps every member path to its leaf."""
        for name, members in self.couplings:
            extents = {}
            for path, axis, size in members:
                leaf = leaves[path]
                shape, dtype = np.shape(leaf), jnp.result_type(leaf)
                if not jnp.issubdtype(dtype, jnp.floating):
                    _fail(f"group {name!r}", f"leaf {path!r} {shape} has dtype {dtype.name}, not a float")
                if not -len(shape) <= axis < len(shape):
                    _fail(f"group {name!r}", f"axis {axis} is out of range for leaf {path!r} {shape}")
                if shape[axis] % size:
                    _fail(
                        f"group {name!r}",
                        f"leaf {path!r} {shape} has {shape[axis]} slices along axis {axis}, "
                        f"not a multiple of its channel size {size}",
                    )
                extents[path] = (shape, axis, shape[axis] // size)
            if len({n for _, _, n in extents.values()}) > 1:
                sizes = ", ".join(f"{p} {s} axis {a}: {n}" for p, (s, a, n) in extents.items())
                _fail(f"group {name!r}", f"its slices disagree in size (channels per leaf: {sizes})")

    def member(self, path: str, shape) -> Block:
        """The leaf's own view of the rule: its channels along the coupled axis, at the sparsity
        (what per-leaf consumers — reports, group lasso's groups — see)."""
        _, axis, size = self.member_of(path)
        return Block((size,), self.sparsity, axes=(axis % len(shape),))

    def leaf_groups(self, path: str, shape) -> Groups:
        """Group j = the leaf's channel j along the coupled axis (channel j of its coupling)."""
        _, axis, size = self.member_of(path)
        axis = axis % len(shape)
        ids = np.arange(shape[axis]).reshape([-1 if a == axis else 1 for a in range(len(shape))]) // size
        return Groups(np.ascontiguousarray(np.broadcast_to(ids, shape)), int(shape[axis] // size))

    # -- the set and its projection ----------------------------------------------------------------
    def energies(self, leaves: dict) -> list:
        """Per coupling, (n,) float32: the summed squared norm of each channel's slices."""
        out = []
        for _, members in self.couplings:
            total = 0.0
            for path, axis, size in members:
                w = jnp.asarray(leaves[path])
                total = total + _per_channel(jnp.square(w.astype(energy_dtype(w.dtype))), axis, size, jnp.sum)
            out.append(jnp.asarray(total, jnp.float32))
        return out

    def _chunks(self, count):
        """Kept channels -> kept chunks of ``round_to`` (traced or not)."""
        return (count + self.round_to - 1) // self.round_to

    def kept_channels(self, n: int, scale=None):
        """One coupling's own budget: k_c rounded up to whole chunks, at most n (an int, or a
        traced int32 under ``scale``)."""
        chunked = self._chunks(kept_count(n, self.sparsity, scale)) * self.round_to
        return min(chunked, n) if scale is None else jnp.minimum(chunked, n)

    def channel_masks(self, leaves: dict, scale=None) -> list:
        """Per coupling, the (n,) bool mask of its kept channels."""
        energies = self.energies(leaves)
        if not self.shared:
            return [top_k_mask(e, self.kept_channels(e.shape[0], scale)) for e in energies]
        if self.normalize is not None:
            energies = [self._normalized(e) for e in energies]
        total = sum(e.shape[0] for e in energies)
        chunks, ranks = [], []
        r = self.round_to
        for e in energies:
            n = e.shape[0]
            order = jnp.argsort(jnp.where(jnp.isnan(e), jnp.inf, -e), stable=True)  # descending, NaN last
            ranks.append(jnp.zeros(n, jnp.int32).at[order].set(jnp.arange(n, dtype=jnp.int32)))
            padded = jnp.zeros(-(-n // r) * r, e.dtype).at[:n].set(e[order])
            chunks.append(padded.reshape(-1, r).sum(axis=1))
        keep = top_k_mask(jnp.concatenate(chunks), self._chunks(kept_count(total, self.sparsity, scale)))
        out, start = [], 0
        for e, c, rank in zip(energies, chunks, ranks):
            kept_chunks = jnp.sum(keep[start : start + c.shape[0]], dtype=jnp.int32)
            out.append((rank < kept_chunks * r) & ~jnp.isnan(e))
            start += c.shape[0]
        return out

    def _normalized(self, e):
        finite = jnp.isfinite(e)
        values = jnp.where(finite, e, 0)
        if self.normalize == "max":
            norm = jnp.max(values, initial=0)
        else:  # energies are squared norms: their mean is the squared rms of the group norms
            norm = jnp.sum(values) / jnp.maximum(jnp.sum(finite), 1)
        return e / (norm + 1e-30)

    def masks(self, leaves: dict, scale=None) -> dict:
        """{member path: bool mask of its shape}: every slice of a kept channel, nothing else."""
        out = {}
        for (_, members), keep in zip(self.couplings, self.channel_masks(leaves, scale)):
            for path, axis, size in members:
                shape = np.shape(leaves[path])
                axis = axis % len(shape)
                out[path] = jnp.broadcast_to(
                    jnp.repeat(keep, size).reshape([-1 if a == axis else 1 for a in range(len(shape))]), shape
                )
        return out

    def used(self, leaves: dict) -> list:
        """Per coupling, how many channels have a nonzero in some slice."""
        out = []
        for _, members in self.couplings:
            alive = False
            for path, axis, size in members:
                alive = alive | nonzero_slices(leaves[path], axis, size)
            out.append(jnp.sum(alive, dtype=jnp.int32))
        return out

    def is_feasible(self, leaves: dict):
        used = self.used(leaves)
        extents = [self.extent(c, leaves) for c in range(len(self.couplings))]
        if self.shared:
            return sum(self._chunks(u) for u in used) <= self._chunks(kept_count(sum(extents), self.sparsity))
        ok = jnp.asarray(True)
        for u, n in zip(used, extents):
            ok = ok & (u <= self.kept_channels(n))
        return ok

    def describe(self) -> str:
        options = [f"round_to={self.round_to}"] * (self.round_to > 1) + ["shared"] * self.shared
        options += [f"normalize={self.normalize}"] * (self.normalize is not None)
        return f"coupled({self.sparsity:g}{''.join(', ' + o for o in options)})"


def _per_channel(x, axis: int, size: int, reduce):
    """``reduce`` over each channel (``size`` consecutive slices along ``axis``): shape (n,)."""
    x = jnp.moveaxis(x, axis % x.ndim, 0)
    return reduce(x.reshape(x.shape[0] // size, -1), axis=1)


def nonzero_slices(w, axis: int, size: int = 1) -> jax.Array:
    """(channels,) bool: which channels (``size`` slices along ``axis``) hold a nonzero
    (denormals and NaN count)."""
    return _per_channel(nonzero(jnp.asarray(w)), axis, size, jnp.any)


def coupled(sparsity: float, couplings, round_to: int = 1, shared: bool = False, normalize=None) -> Coupled:
    """A spec rule keeping or removing whole coupled channels (see ``Coupled``). ``couplings``:
    ``{name: [(path, axis) or (path, axis, size), ...]}`` or a sequence of ``(name, members)``."""
    return Coupled(couplings, sparsity, round_to, shared, normalize)

"""Coupled groups: channels that span slices of several leaves and are kept or removed together
(docs/constraints.md, "Coupled groups").

A conv filter is more than its kernel's output slice: its BatchNorm scale and bias and the next
layer's input slice must go with it, or the model cannot be made smaller. A coupling names those
slices — ``(path, axis)`` members whose extent along ``axis`` is the same n — and channel j of
the coupling is slice j of every member. Its energy is the sum of the squared norms of its slices,
e_j = Σ_m ||take(w_m, j, axis_m)||², so ranking channels by e_j ranks them by the L2 norm of the
whole coupled group.

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
    """Spec rule: ``couplings`` is a tuple of ``(name, ((path, axis), ...))``; every member path is
    matched exactly (not as a regex) and belongs to one coupling only. See the module docstring
    for the set and its projection; build with ``constraints.coupled``."""

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
                _fail("rule", f"a coupling is (name, [(path, axis), ...]), got {entry!r}")
            name, members = entry[0], tuple(tuple(m) for m in entry[1])
            if not members:
                _fail(f"group {name!r}", "has no members")
            for member in members:
                if not (
                    len(member) == 2
                    and isinstance(member[0], str)
                    and isinstance(member[1], int | np.integer)
                    and not isinstance(member[1], bool)
                ):
                    _fail(f"group {name!r}", f"a member is (path, axis), got {member!r}")
                if member[0] in owner:
                    _fail(
                        f"group {name!r}",
                        f"leaf {member[0]!r} is also a member of group {owner[member[0]]!r}; "
                        "a leaf belongs to one coupled group",
                    )
                owner[member[0]] = name
            couplings.append((name, tuple((p, int(a)) for p, a in members)))
        if not couplings:
            _fail("rule", "needs at least one coupling")
        object.__setattr__(self, "couplings", tuple(couplings))

    @property
    def include(self) -> str:
        """A regex of the member paths (how a spec lists the rule)."""
        return "^(" + "|".join(re.escape(p) for p in self.paths) + ")$"

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(p for _, members in self.couplings for p, _ in members)

    def axis_of(self, path: str) -> int:
        return next(a for _, members in self.couplings for p, a in members if p == path)

    def group_of(self, path: str) -> int:
        """The index of the coupling that ``path`` belongs to."""
        return next(i for i, (_, members) in enumerate(self.couplings) if path in dict(members))

    # -- checks ---------------------------------------------------------------------------------
    def check(self, leaves: dict) -> None:
        """Every member present with a float dtype and an in-range axis, and the members of each
        coupling of one extent; ``leaves`` maps every member path to its leaf."""
        for name, members in self.couplings:
            extents = {}
            for path, axis in members:
                leaf = leaves[path]
                shape, dtype = np.shape(leaf), jnp.result_type(leaf)
                if not jnp.issubdtype(dtype, jnp.floating):
                    _fail(f"group {name!r}", f"leaf {path!r} {shape} has dtype {dtype.name}, not a float")
                if not -len(shape) <= axis < len(shape):
                    _fail(f"group {name!r}", f"axis {axis} is out of range for leaf {path!r} {shape}")
                extents[path] = (shape, shape[axis])
            if len({n for _, n in extents.values()}) > 1:
                sizes = ", ".join(f"{p} {s} axis {dict(members)[p]}: {n}" for p, (s, n) in extents.items())
                _fail(f"group {name!r}", f"its slices disagree in size ({sizes})")

    def member(self, path: str, shape) -> Block:
        """The leaf's own view of the rule: its slices along the coupled axis, at the sparsity
        (what per-leaf consumers — reports, group lasso's groups — see)."""
        return Block((1,), self.sparsity, axes=(self.axis_of(path) % len(shape),))

    def leaf_groups(self, path: str, shape) -> Groups:
        """Group j = the leaf's slice j along the coupled axis (channel j of its coupling)."""
        axis = self.axis_of(path) % len(shape)
        ids = np.broadcast_to(
            np.arange(shape[axis]).reshape([-1 if a == axis else 1 for a in range(len(shape))]), shape
        )
        return Groups(np.ascontiguousarray(ids), int(shape[axis]))

    # -- the set and its projection ----------------------------------------------------------------
    def energies(self, leaves: dict) -> list:
        """Per coupling, (n,) float32: the summed squared norm of each channel's slices."""
        out = []
        for _, members in self.couplings:
            total = 0.0
            for path, axis in members:
                w = jnp.asarray(leaves[path])
                axis = axis % w.ndim
                rest = tuple(a for a in range(w.ndim) if a != axis)
                total = total + jnp.sum(jnp.square(w.astype(energy_dtype(w.dtype))), axis=rest)
            out.append(jnp.asarray(total, jnp.float32))
        return out

    def _chunks(self, count):
        """Kept channels -> kept chunks of ``round_to`` (traced or not)."""
        return (count + self.round_to - 1) // self.round_to

    def _kept_channels(self, n: int, scale=None):
        """One coupling's own budget: k_c rounded up to whole chunks, at most n (an int, or a
        traced int32 under ``scale``)."""
        chunked = self._chunks(kept_count(n, self.sparsity, scale)) * self.round_to
        return min(chunked, n) if scale is None else jnp.minimum(chunked, n)

    def channel_masks(self, leaves: dict, scale=None) -> list:
        """Per coupling, the (n,) bool mask of its kept channels."""
        energies = self.energies(leaves)
        if not self.shared:
            return [top_k_mask(e, self._kept_channels(e.shape[0], scale)) for e in energies]
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
            for path, axis in members:
                shape = np.shape(leaves[path])
                axis = axis % len(shape)
                out[path] = jnp.broadcast_to(
                    keep.reshape([-1 if a == axis else 1 for a in range(len(shape))]), shape
                )
        return out

    def used(self, leaves: dict) -> list:
        """Per coupling, how many channels have a nonzero in some slice."""
        out = []
        for _, members in self.couplings:
            alive = False
            for path, axis in members:
                w = jnp.asarray(leaves[path])
                axis = axis % w.ndim
                alive = alive | jnp.any(nonzero(w), axis=tuple(a for a in range(w.ndim) if a != axis))
            out.append(jnp.sum(alive, dtype=jnp.int32))
        return out

    def is_feasible(self, leaves: dict):
        used = self.used(leaves)
        extents = [np.shape(leaves[members[0][0]])[members[0][1]] for _, members in self.couplings]
        if self.shared:
            return sum(self._chunks(u) for u in used) <= self._chunks(kept_count(sum(extents), self.sparsity))
        ok = jnp.asarray(True)
        for u, n in zip(used, extents):
            ok = ok & (u <= self._kept_channels(n))
        return ok

    def describe(self) -> str:
        options = [f"round_to={self.round_to}"] * (self.round_to > 1) + ["shared"] * self.shared
        options += [f"normalize={self.normalize}"] * (self.normalize is not None)
        return f"coupled({self.sparsity:g}{''.join(', ' + o for o in options)})"


def coupled(sparsity: float, couplings, round_to: int = 1, shared: bool = False, normalize=None) -> Coupled:
    """A spec rule keeping or removing whole coupled channels (see ``Coupled``). ``couplings``:
    ``{name: [(path, axis), ...]}`` or a sequence of ``(name, members)``."""
    return Coupled(couplings, sparsity, round_to, shared, normalize)

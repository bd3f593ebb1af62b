"""Coupled groups: channels that span slices of several leaves and are kept or removed together
(docs/constraints.md, "Coupled groups").

A conv filter is more than its kernel's output slice: its BatchNorm scale and bias and the next
layer's input slice must go with it, or the model cannot be made smaller. A coupling names those
slices as members ``(path, axis[, size[, start]])``: channel j of a member is its slices
start + j·size .. start + (j+1)·size − 1 along ``axis`` (size > 1: an attention head's d columns;
``start``: where the range begins when the member covers part of the axis only, as one input of a
concatenation). Members without a ``start`` cover their whole axis and fix the coupling's number
of channels n. A channel's energy is the sum of the squared norms of its slices,
e_j = Σ_m ||w_m[channel j]||², so ranking channels by e_j ranks them by the L2 norm of the whole
coupled group.

``Coupled`` is a spec rule over one or more couplings at one sparsity:

* per coupling (``shared=False``): each keeps its k_c = n_c − floor(s·n_c) most energetic channels;
* ``shared=True``: one budget k = N − floor(s·N) over all N channels of all couplings (the
  ``global_`` of coupled groups), optionally normalising each coupling's energies first;
* ``round_to`` r: kept widths come in chunks of r channels (hardware-friendly shapes): the set is
  Σ_c ⌈u_c / r⌉ ≤ ⌈k / r⌉ chunks (u_c: the channels coupling c uses; per coupling, ⌈u_c/r⌉ ≤
  ⌈k_c/r⌉), so a coupling keeps a multiple of r channels, or all n_c of them.

When no leaf is in two couplings the projection is exact (the largest kept energy within the set,
for ``normalize=None``): per coupling the best u channels are its u most energetic, and with
energies sorted the value of a coupling's next chunk never grows, so one top-k over all chunk
energies picks an optimal prefix of chunks in every coupling. A leaf may also be in several
couplings along different axes (a conv's input channels belong to the layer before it, its
filters to itself) or over disjoint ranges of one axis (also twice in one coupling: the real and
imaginary halves of a concatenation); then each coupling ranks its channels by
the energies of the given weights and a leaf's mask is the intersection of its couplings' masks —
feasible, but no longer the exact projection (``exact`` is False). Ties go to the lower channel
(and chunk) index; a channel with a NaN in any slice is never kept (nor is a chunk holding one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ._base import check_sparsity, energy_dtype, nonzero
from ._block import Block
from ._counting import kept_count
from ._topk import top_k_mask

_NORMALIZE = (None, "rms", "max")


def _fail(where: str, message: str):
    raise ValueError(f"coupled {where}: {message}")


def _is_int(v) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


def _member(name: str, raw) -> tuple[str, int, int, int | None]:
    """``(path, axis, size, start)`` from ``(path, axis[, size[, start]])``."""
    member = tuple(raw) if isinstance(raw, tuple | list) else ()
    member = member + (1, None)[len(member) - 2 :] if 2 <= len(member) <= 4 else ()
    if not (
        member
        and isinstance(member[0], str)
        and _is_int(member[1])
        and _is_int(member[2])
        and member[2] > 0
        and (member[3] is None or (_is_int(member[3]) and member[3] >= 0))
    ):
        _fail(f"group {name!r}", f"a member is (path, axis[, size > 0[, start >= 0]]), got {raw!r}")
    path, axis, size, start = member
    return path, int(axis), int(size), None if start is None else int(start)


@dataclass(frozen=True)
class Coupled:
    """Spec rule: ``couplings`` is a tuple of ``(name, ((path, axis, size, start), ...))``; member
    paths are matched exactly (not as regexes). See the module docstring for the set and its
    projection; build with ``constraints.coupled``."""

    couplings: tuple
    sparsity: float
    round_to: int = 1
    shared: bool = False
    normalize: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "sparsity", check_sparsity(self, self.sparsity))
        if not (_is_int(self.round_to) and self.round_to > 0):
            _fail("rule", f"round_to must be a positive int, got {self.round_to!r}")
        if self.normalize not in _NORMALIZE:
            _fail("rule", f"normalize must be one of {_NORMALIZE}, got {self.normalize!r}")
        if self.normalize is not None and not self.shared:
            _fail("rule", "normalize only applies to a shared budget (shared=True)")
        couplings = []
        items = self.couplings.items() if isinstance(self.couplings, dict) else self.couplings
        for entry in items:
            if not (isinstance(entry, tuple | list) and len(entry) == 2 and isinstance(entry[0], str)):
                _fail("rule", f"a coupling is (name, [(path, axis[, size[, start]]), ...]), got {entry!r}")
            name = entry[0]
            members = tuple(_member(name, m) for m in entry[1])
            if not members:
                _fail(f"group {name!r}", "has no members")
            if all(m[3] is not None for m in members):
                _fail(f"group {name!r}", "needs a member without start (one that covers its whole axis)")
            couplings.append((name, members))
        if not couplings:
            _fail("rule", "needs at least one coupling")
        if len({name for name, _ in couplings}) < len(couplings):
            _fail("rule", f"group names repeat: {[name for name, _ in couplings]}")
        object.__setattr__(self, "couplings", tuple(couplings))

    @property
    def include(self) -> str:
        """A regex of the member paths (how a spec lists the rule)."""
        return "^(" + "|".join(re.escape(p) for p in self.paths) + ")$"

    @property
    def paths(self) -> tuple[str, ...]:
        """Every member path once, in order of first appearance."""
        return tuple(dict.fromkeys(m[0] for _, members in self.couplings for m in members))

    @property
    def exact(self) -> bool:
        """Whether the projection is exact: no leaf in two couplings."""
        return len(self.paths) == sum(len(members) for _, members in self.couplings)

    def memberships(self, path: str) -> list[tuple[int, tuple]]:
        """``(coupling index, member)`` of every coupling that ``path`` is in."""
        return [(c, m) for c, (_, members) in enumerate(self.couplings) for m in members if m[0] == path]

    def group_of(self, path: str) -> int:
        """The index of the first coupling that ``path`` is in."""
        return self.memberships(path)[0][0]

    def axis_of(self, path: str) -> int:
        return self.memberships(path)[0][1][1]

    def extent(self, coupling: int, leaves: dict) -> int:
        """The number of channels of coupling ``coupling`` (from its first whole-axis member)."""
        path, axis, size, _ = next(m for m in self.couplings[coupling][1] if m[3] is None)
        return np.shape(leaves[path])[axis] // size

    # -- checks ---------------------------------------------------------------------------------
    def check(self, leaves: dict) -> None:
        """Every member a float leaf with an in-range axis; the members of each coupling hold the
        same number of channels; no two couplings claim the same slices of a leaf. ``leaves``
        maps every member path to its leaf."""
        ranges = {}  # (path, axis) -> [(first, stop, group)]
        for name, members in self.couplings:
            channels = {}
            for path, axis, size, start in members:
                shape, dtype = np.shape(leaves[path]), jnp.result_type(leaves[path])
                if not jnp.issubdtype(dtype, jnp.floating):
                    _fail(f"group {name!r}", f"leaf {path!r} {shape} has dtype {dtype.name}, not a float")
                if not -len(shape) <= axis < len(shape):
                    _fail(f"group {name!r}", f"axis {axis} is out of range for leaf {path!r} {shape}")
                if start is None and shape[axis] % size:
                    _fail(
                        f"group {name!r}",
                        f"leaf {path!r} {shape} has {shape[axis]} slices along axis {axis}, "
                        f"not a multiple of its channel size {size}",
                    )
                if start is None:
                    channels[path] = (shape, axis, shape[axis] // size)
            if len({n for _, _, n in channels.values()}) > 1:
                sizes = ", ".join(f"{p} {s} axis {a}: {n}" for p, (s, a, n) in channels.items())
                _fail(f"group {name!r}", f"its slices disagree in size (channels per leaf: {sizes})")
            n = next(iter(channels.values()))[2]
            for path, axis, size, start in members:
                shape = np.shape(leaves[path])
                first = start or 0
                if first + n * size > shape[axis]:
                    _fail(
                        f"group {name!r}",
                        f"leaf {path!r} {shape}: {n} channels of {size} from slice {first} along axis "
                        f"{axis} do not fit in its {shape[axis]} slices",
                    )
                ranges.setdefault((path, axis % len(shape)), []).append((first, first + n * size, name))
        for (path, axis), spans in ranges.items():
            spans.sort()
            for (_, stop, one), (first, _, other) in zip(spans, spans[1:]):
                if first < stop:
                    _fail(
                        f"group {other!r}",
                        f"leaf {path!r} axis {axis} is also in group {one!r} over the same slices; "
                        "a slice belongs to one coupled group",
                    )

    def member(self, path: str, shape) -> Block:
        """The leaf's own view of the rule: the channels of its first coupling along that
        coupling's axis, at the sparsity (what per-leaf consumers — reports, groups — see)."""
        _, (_, axis, size, _) = self.memberships(path)[0]
        return Block((size,), self.sparsity, axes=(axis % len(shape),))

    # -- the set and its projection ----------------------------------------------------------------
    def energies(self, leaves: dict) -> list:
        """Per coupling, (n,) float32: the summed squared norm of each channel's slices."""
        out = []
        for c, (_, members) in enumerate(self.couplings):
            n, total = self.extent(c, leaves), 0.0
            for path, axis, size, start in members:
                w = jnp.asarray(leaves[path])
                squares = jnp.square(w.astype(energy_dtype(w.dtype)))
                total = total + channel_reduce(squares, axis, size, start, n, jnp.sum)
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
        """{member path: bool mask of its shape}: False on the slices of every dropped channel of
        each of its couplings, True elsewhere."""
        out = {p: jnp.ones(np.shape(leaves[p]), bool) for p in self.paths}
        for (_, members), keep in zip(self.couplings, self.channel_masks(leaves, scale)):
            for path, axis, size, start in members:
                out[path] = out[path] & spread_channels(keep, np.shape(leaves[path]), axis, size, start, True)
        return out

    def used(self, leaves: dict) -> list:
        """Per coupling, how many channels have a nonzero in some slice."""
        out = []
        for c, (_, members) in enumerate(self.couplings):
            n, alive = self.extent(c, leaves), False
            for path, axis, size, start in members:
                alive = alive | nonzero_slices(leaves[path], axis, size, start, n)
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


def channel_reduce(x, axis: int, size: int, start: int | None, n: int | None, reduce):
    """``reduce`` over each of the n channels of a member (``size`` consecutive slices along
    ``axis`` from ``start``; the whole axis when ``start`` is None): shape (n,). NumPy in, NumPy
    out (nothing to compile), else JAX."""
    x = (np if isinstance(x, np.ndarray) else jnp).moveaxis(x, axis % x.ndim, 0)
    if start is not None:
        x = x[start : start + n * size]
    return reduce(x.reshape(x.shape[0] // size, -1), axis=1)


def spread_channels(values, shape, axis: int, size: int, start: int | None, fill):
    """One value per channel of a member, repeated over its slices and broadcast onto the leaf's
    ``shape``; slices outside the member's range get ``fill``."""
    axis = axis % len(shape)
    per_slice = jnp.repeat(values, size)
    if start is not None:
        per_slice = (
            jnp.full(shape[axis], fill, per_slice.dtype).at[start : start + per_slice.shape[0]].set(per_slice)
        )
    return jnp.broadcast_to(per_slice.reshape([-1 if a == axis else 1 for a in range(len(shape))]), shape)


def nonzero_slices(w, axis: int, size: int = 1, start: int | None = None, n: int | None = None) -> jax.Array:
    """(channels,) bool: which channels of a member (see ``channel_reduce``) hold a nonzero
    (denormals and NaN count)."""
    return channel_reduce(nonzero(jnp.asarray(w)), axis, size, start, n, jnp.any)


def coupled(sparsity: float, couplings, round_to: int = 1, shared: bool = False, normalize=None) -> Coupled:
    """A spec rule keeping or removing whole coupled channels (see ``Coupled``). ``couplings``:
    ``{name: [(path, axis[, size[, start]]), ...]}`` or a sequence of ``(name, members)``."""
    return Coupled(couplings, sparsity, round_to, shared, normalize)

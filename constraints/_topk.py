"""The exact top-k selection kernel every projection uses (docs/constraints.md, "The top-k kernel").

``top_k_mask(scores, k)`` marks the k largest scores of an array of any shape; ``top_k_masks``
ranks several arrays together (a global budget) and ``keep_top_k`` returns the projection itself.
The kept set is exactly the first k entries of a stable sort by (score descending, flat index
ascending; several arrays count as their flattenings concatenated), where:

* scores may be any reals; NaN ranks below every number and is never kept (fewer than k entries
  are kept only when fewer than k scores are numbers);
* +inf ranks above every finite score and -inf below;
* scores with ``|score| <= TINY = 2**-100`` rank as ties of 0 (they are kept or dropped by index,
  never by value); no float32 weight that small carries energy a float32 sum could see.

Algorithm (no sort on large arrays; on XLA:CPU a sort or ``lax.top_k`` costs 100-2000 read passes):
a counting search on non-negative keys. ``G(u) = #(score > u)`` is one fused pass summing the
indicator ``min(max(score - u, 0) * 2**(103 + p), 1)`` (p mantissa bits; 2**126 in float32): exact
for u >= TINY, and 4x faster than summing a boolean on XLA:CPU; float32 sums of at most 2**24
elements stay exact. A strided grid sample gives the first probe (its estimate of the k-th score)
and a Newton step (its local density); then secant steps aimed just past the target, safeguarded
by regula falsi and bisection on the float bits, narrow a bracket (lo, hi] with G(hi) < k <= G(lo)
until G(lo) == k (the kept set is ``score > lo``) or (lo, hi] holds one tied value, whose ties are
cut by flat index: the same search on the key ``n - index`` of the ties, or peeling for one or two.
A probe in an empty gap is followed by a snap pass onto the data. NaN, inf and negative scores
take a materialised key (``_signed_keys``); they are seen by the first probe's pass for magnitudes
(each term carries ``x * 0``, NaN unless x is finite) and by a check pass for signed scores.
Typically 3-11 passes at 1e7 entries; at most ``sort_below`` entries use a stable argsort instead.

Every pass is a reduction over the arrays in their own shapes (never flattened), so on arrays
sharded across devices XLA runs each pass on the local shards and adds the counts across devices:
no array is gathered whole (docs/constraints.md, "Sharded leaves").
"""

from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

TINY = 2.0**-100
SORT_BELOW = 4096
_SAMPLE = 16384
_COUNT_SLICE = 2**24  # the most elements a float32 count sums exactly
_MAX_STEPS = 96
_SAMPLE_WHOLE_AXIS = 8  # axes this short (a 3x3 kernel's) are sampled whole, not strided


def _work_dtype(dtype) -> jnp.dtype:
    return jnp.float64 if dtype == jnp.float64 else jnp.float32


def _indicator_greater(x, u):
    """1.0 where x > u, else 0.0, without a boolean (exact for u >= TINY or x - u >= TINY).

    For x > u >= TINY, x - u is at least one ulp of TINY, 2**-(100 + p) with p mantissa bits, so
    the scale 2**(103 + p) lifts every positive difference to at least 8 (float32: 2**126).
    """
    big = jnp.asarray(2.0 ** (103 + jnp.finfo(x.dtype).nmant), x.dtype)
    return jnp.minimum(jnp.maximum(x - u, 0) * big, 1)


def _exact_sums(terms) -> jax.Array:
    """Float sums of 0/1 ``terms`` (one array in its own shape), each exact: one sum when it has at
    most 2**24 elements (float64: always), else sums over the trailing axes or over 2**24-long
    slices of the flattening."""
    if terms.dtype == jnp.float64 or terms.size <= _COUNT_SLICE:
        return jnp.sum(terms)[None]
    if terms.ndim >= 2 and math.prod(terms.shape[1:]) <= _COUNT_SLICE:
        return jnp.sum(terms, axis=tuple(range(1, terms.ndim)))
    flat = terms.reshape(-1)
    return jnp.stack([jnp.sum(flat[i : i + _COUNT_SLICE]) for i in range(0, flat.shape[0], _COUNT_SLICE)])


def _as_count(sums) -> jax.Array:
    return jnp.sum(sums.astype(jnp.int32), dtype=jnp.int32)


def _count_greater(keys, u) -> jax.Array:
    """``G(u) = #(key > u)`` over every array as int32, exact for u >= TINY: ``keys`` are functions
    returning the key arrays, called inside the pass so that each key is computed in the
    reduction's fusion, never materialised."""
    return sum(_as_count(_exact_sums(_indicator_greater(key(), u))) for key in keys)


def _checked_count(keys, u) -> tuple[jax.Array, jax.Array]:
    """``(G(u), special)`` in one pass, ``special`` true when a key is NaN or infinite: each term
    of the sums carries ``x * 0``, which is 0 for finite x and NaN otherwise."""
    count, special = jnp.int32(0), jnp.asarray(False)
    for key in keys:
        x = key()
        sums = _exact_sums(_indicator_greater(x, u) + x * 0)
        count, special = count + _as_count(sums), special | jnp.isnan(jnp.sum(sums))
    return count, special


def _next_up(x):
    return jnp.nextafter(x, jnp.asarray(jnp.inf, x.dtype))


def _bits(x):
    """The bit pattern of a float32/float64 as int32/int64 (ordered like x for x >= 0)."""
    return lax.bitcast_convert_type(x, jnp.int64 if x.dtype == jnp.float64 else jnp.int32)


def _bits_midpoint(lo, hi):
    """The float whose bit pattern lies halfway between those of two non-negative floats."""
    a, b = _bits(lo), _bits(hi)
    return lax.bitcast_convert_type(a + (b - a) // 2, lo.dtype)


def _grid_sample(x, m: int):
    """About ``m`` entries of ``x`` on a strided grid, flattened. The stride is spread over the
    axes (longest first, short ones whole) so that the grid sees many rows and many columns: a
    per-channel scale must not bias the sample."""
    stride = max(x.size / max(m, 1), 1.0)
    steps = [1] * x.ndim
    strided = sorted((d for d in range(x.ndim) if x.shape[d] > _SAMPLE_WHOLE_AXIS), key=lambda d: -x.shape[d])
    for left, d in enumerate(strided):
        step = min(x.shape[d], max(1, round(stride ** (1 / (len(strided) - left)))))
        steps[d], stride = step, stride / step
    return x[tuple(slice(None, None, s) for s in steps)].reshape(-1)


def _sample_estimate(keys, sizes, k, dtype):
    """From a strided sample of every array (in proportion to its size): an estimate of the k-th
    largest key and the local density of keys around it (elements per unit of key), for a first
    probe and a Newton step."""
    n = sum(sizes)
    m = min(n, _SAMPLE, max(256, 4 * math.isqrt(n)))
    sample = jnp.concatenate([_grid_sample(key(), -(-m * size // n)) for key, size in zip(keys, sizes)])
    m = sample.shape[0]
    sample = jnp.sort(sample)[::-1]
    rank = k.astype(dtype) * (m / n)
    spread = jnp.maximum(3.0 * jnp.sqrt(rank * jnp.maximum(1.0 - rank / m, 0.0)), 2.0)

    def at(r):
        return sample[jnp.clip(jnp.round(r), 0, m - 1).astype(jnp.int32)]

    upper, lower = at(rank - spread), at(rank + spread)
    density = (2 * spread * (n / m)) / jnp.maximum(upper - lower, jnp.finfo(dtype).tiny)
    return at(rank), density


def _max_at_most(keys, hi):
    """max{key <= hi} for hi >= TINY (or inf), in one arithmetic pass."""
    peaks = []
    for key in keys:
        x = key()
        big = jnp.asarray(jnp.finfo(x.dtype).max, x.dtype)
        peaks.append(jnp.max(jnp.minimum(x, hi) - _indicator_greater(x, hi) * big))
    return jnp.max(jnp.stack(peaks))


def _min_above(keys, lo):
    """min{key > lo} for lo == -1 or lo >= TINY, in one arithmetic pass."""
    floors = []
    for key in keys:
        x = key()
        big = jnp.asarray(jnp.finfo(x.dtype).max, x.dtype)
        floors.append(jnp.min(jnp.maximum(x, lo) + (1 - _indicator_greater(x, lo)) * big))
    return jnp.min(jnp.stack(floors))


class _Bracket(NamedTuple):
    lo: jax.Array  # G(lo) = c_lo >= k
    hi: jax.Array  # G(hi) = c_hi < k
    c_lo: jax.Array
    c_hi: jax.Array
    f_lo: jax.Array  # Illinois-weighted residuals of f(u) = G(u) - k + 1/2 at the ends
    f_hi: jax.Array
    last_side: jax.Array  # +1: the last probe moved hi, -1: it moved lo
    width_1: jax.Array  # bracket counts one, two and three probes ago, to detect stalls
    width_2: jax.Array
    width_3: jax.Array
    u_1: jax.Array  # the last two probes and their f, for secant steps
    f_1: jax.Array
    u_2: jax.Array
    f_2: jax.Array
    forced: jax.Array  # the next probe when not NaN (set by a snap)
    snap: jax.Array  # the last probe fell into an empty gap: move an end onto the data next
    step: jax.Array
    special: jax.Array  # a checked first probe saw a NaN or infinite key: stop, the bracket is void


def _lowest_split(lo, tiny):
    return jnp.maximum(_next_up(lo), tiny)


def _probe(b: _Bracket, keys, k, estimate, density, checked: bool) -> _Bracket:
    """One counting pass at the next probe u (estimate, Newton, secant, falsi or bisection);
    ``checked``: the first pass also looks for NaN and infinite keys (``_checked_count``)."""
    dtype = b.lo.dtype
    tiny = jnp.asarray(TINY, dtype)
    width = b.c_lo - b.c_hi
    base = jnp.maximum(b.lo, 0)
    aim = -jnp.sign(b.f_1) * jnp.maximum(jnp.sqrt(jnp.abs(b.f_1)) - 1, 0)
    secant = b.u_1 + (b.u_1 - b.u_2) * ((b.f_1 - aim) / (b.f_2 - b.f_1))
    falsi = base + (b.hi - base) * (b.f_lo / (b.f_lo - b.f_hi))
    interpolated = jnp.where((secant > b.lo) & (secant < b.hi), secant, falsi)
    # bisection only inside a bracket both of whose ends came from probes
    stalled = (2 * width > b.width_3) & jnp.isfinite(b.hi) & (b.lo >= 0)
    bisected = _bits_midpoint(jnp.maximum(b.lo, tiny), b.hi)
    u = jnp.where(jnp.isfinite(interpolated) & ~stalled, interpolated, bisected)
    newton = b.u_1 + (b.f_1 - aim) / density
    u = jnp.where(b.step == 0, estimate, jnp.where(b.step == 1, newton, u))
    u = jnp.where(jnp.isnan(b.forced), u, b.forced)
    u = jnp.clip(u, _lowest_split(b.lo, tiny), jnp.nextafter(b.hi, b.lo))
    special = jnp.asarray(False)
    if checked:
        unchecked = lambda: (_count_greater(keys, u), special)  # noqa: E731
        count, special = lax.cond(b.step == 0, lambda: _checked_count(keys, u), unchecked)
    else:
        count = _count_greater(keys, u)
    f_u = (count - k).astype(dtype) + 0.5
    moves_hi = count < k
    again = jnp.where(moves_hi, 1, -1) == b.last_side
    return _Bracket(
        lo=jnp.where(moves_hi, b.lo, u),
        hi=jnp.where(moves_hi, u, b.hi),
        c_lo=jnp.where(moves_hi, b.c_lo, count),
        c_hi=jnp.where(moves_hi, count, b.c_hi),
        f_lo=jnp.where(moves_hi, jnp.where(again, b.f_lo / 2, b.f_lo), f_u),
        f_hi=jnp.where(moves_hi, f_u, jnp.where(again, b.f_hi / 2, b.f_hi)),
        last_side=jnp.where(moves_hi, 1, -1).astype(jnp.int32),
        width_1=width,
        width_2=b.width_1,
        width_3=b.width_2,
        u_1=u,
        f_1=f_u,
        u_2=b.u_1,
        f_2=b.f_1,
        forced=jnp.asarray(jnp.nan, dtype),
        snap=(count == b.c_lo) | (count == b.c_hi),
        step=b.step + 1,
        special=special,
    )


def _snap(b: _Bracket, keys, k) -> _Bracket:
    """After a probe in an empty gap: move the nearer end onto the data, and force the next
    probe to split that value off."""
    tiny = jnp.asarray(TINY, b.lo.dtype)

    def onto_top():  # no data in (top, hi], so G(top) == c_hi; then split top off
        top = _max_at_most(keys, b.hi)
        return b._replace(hi=top, forced=jnp.nextafter(top, b.lo))

    def onto_bottom():  # no data in (lo, bottom), so G(prev(bottom)) == c_lo
        bottom = _min_above(keys, b.lo)
        # lo stays -1 or >= TINY, where counts and snaps are exact; (0, TINY] is one tie group
        above_tiny = bottom > tiny
        lo = jnp.where(above_tiny, jnp.nextafter(bottom, b.lo), b.lo)
        return b._replace(lo=lo, forced=jnp.maximum(bottom, tiny))

    nearer_top = (k - b.c_hi <= b.c_lo - k + 1) & jnp.isfinite(b.hi)
    moved = lax.cond(nearer_top, onto_top, onto_bottom)
    return moved._replace(snap=jnp.asarray(False), step=b.step + 1)


def _start(k, valid, dtype) -> _Bracket:
    """The bracket (-1, inf] with G(-1) == valid and G(inf) == 0."""
    big = jnp.int32(2**31 - 1)
    nan = jnp.asarray(jnp.nan, dtype)
    return _Bracket(
        lo=jnp.asarray(-1.0, dtype),
        hi=jnp.asarray(jnp.inf, dtype),
        c_lo=valid,
        c_hi=jnp.int32(0),
        f_lo=(valid - k).astype(dtype) + 0.5,
        f_hi=(-k).astype(dtype) + 0.5,
        last_side=jnp.int32(0),
        width_1=big,
        width_2=big,
        width_3=big,
        u_1=nan,
        f_1=nan,
        u_2=nan,
        f_2=nan,
        forced=nan,
        snap=jnp.asarray(False),
        step=jnp.int32(0),
        special=jnp.asarray(False),
    )


def _search(keys, sizes, k, valid, dtype, prior=None, checked: bool = False) -> _Bracket:
    """Bracket (lo, hi] with G(hi) < k <= G(lo) and either G(lo) == k or one tie value inside.

    ``keys`` (functions returning the key arrays; ``sizes`` their sizes) are non-negative except
    -1 for excluded entries (NaN); ``k`` is int32 in [1, valid] and ``valid`` the number of
    non-excluded keys, so the search starts from G(-1) == valid and G(inf) == 0. Each iteration is
    one pass: a probe (``_probe``: the estimate, a Newton step, then secants aimed past the target
    by about their own error, sqrt of the residual, so that probes alternate sides; Illinois regula
    falsi outside the bracket; bit bisection when three probes shrank it less than 2x) or, after a
    probe in an empty gap, a snap (``_snap``) of the nearer end onto the data, so that a tie group
    costs two passes. ``prior``: (estimate, density) instead of the sample's. ``checked``: the
    first pass also checks the keys, and the search stops with ``special`` set if one is NaN or
    infinite (the check costs no pass of its own).
    """
    tiny = jnp.asarray(TINY, dtype)
    estimate, density = _sample_estimate(keys, sizes, k, dtype) if prior is None else prior

    def cond(b):
        going = (b.c_lo != k) & (_lowest_split(b.lo, tiny) < b.hi) & (b.step < _MAX_STEPS)
        return going & ~b.special

    def body(b):  # one pass per iteration, in its own branch: two passes over one key in one
        # computation make XLA:CPU materialise the key (an array write), and a loop nested here
        # has the key hoisted out of it, materialised too
        probe = partial(_probe, b, keys, k, estimate, density, checked)
        return lax.cond(b.snap, lambda: _snap(b, keys, k), probe)

    return lax.while_loop(cond, body, _start(k, valid, dtype))


def _flat_index(shape, offset: int, dtype):
    """``offset`` plus the C-order flat index of every entry of an array of ``shape``, in the float
    ``dtype`` (exact below 2**(mantissa bits + 1)). Built from float iotas per axis, so a sharded
    array's index is computed on its shards; integer iotas cost about four times as much on XLA:CPU."""
    index = jnp.full(shape, offset, dtype)
    stride = 1
    for axis in reversed(range(len(shape))):
        index = index + lax.broadcasted_iota(dtype, shape, axis) * stride
        stride *= shape[axis]
    return index


_PEEL_AT_MOST = 2  # a peel costs one pass per tie; the search on the index about six in all


def _first_ties_by_index(keys, shapes, lo, hi, wanted, ties, dtype):
    """Per array, the mask of the first ``wanted`` of the ``ties`` entries (flat order over all
    arrays) with lo < key <= hi, for n entries in all with n exact in ``dtype``.

    The ties' key ``n - index`` takes distinct integer values in [1, n] (-1 off the ties), so its
    top ``wanted`` is found exactly: by peeling the largest key ``wanted`` times (one max pass
    each), or by the counting search with the prior that ties spread evenly over the indices.
    """
    sizes = [math.prod(s) for s in shapes]
    n = sum(sizes)
    offsets = np.cumsum([0, *sizes[:-1]])

    def index_key(key, shape, offset):
        x = key()
        tie = (x > lo) & (x <= hi)
        return jnp.where(tie, n - _flat_index(shape, int(offset), dtype), jnp.asarray(-1, dtype))

    order = [partial(index_key, key, shape, offset) for key, shape, offset in zip(keys, shapes, offsets)]

    def peel():
        largest_below = lambda _, last: _max_at_most(order, last - 0.5)  # noqa: E731
        return lax.fori_loop(0, wanted, largest_below, jnp.asarray(jnp.inf, dtype)) - 0.5

    def search():
        share = wanted.astype(dtype) / ties.astype(dtype)
        prior = (n * (1 - share), ties.astype(dtype) / n)
        return _search(order, sizes, wanted, ties, dtype, prior).lo

    cut = lax.cond(wanted <= _PEEL_AT_MOST, peel, search)
    return [key() > cut for key in order]


def _first_ties_by_chunks(scores, lo, hi, wanted):
    """Flat mask of the first ``wanted`` entries with lo < score <= hi of one flat array whose
    indices a float32 cannot hold exactly (more than 2**24): tie counts of 64 chunks, then a
    cumulative sum inside the chunk holding the cut (about 7 passes at 1e7)."""
    n = scores.shape[0]
    chunks = min(64, n)
    chunk = -(-n // chunks)
    ties = (scores > lo) & (scores <= hi)
    tie_rows = jnp.pad(ties, (0, chunks * chunk - n)).reshape(chunks, chunk).astype(jnp.float32)
    per_row = jnp.sum(tie_rows, axis=1).astype(jnp.int32)
    before = jnp.cumsum(per_row, dtype=jnp.int32) - per_row
    row = jnp.sum(before < wanted, dtype=jnp.int32) - 1
    local = jnp.cumsum(lax.dynamic_index_in_dim(tie_rows, row, keepdims=False), dtype=jnp.int32)
    offset = jnp.sum(local < wanted - before[row], dtype=jnp.int32)
    cutoff = row * chunk + offset + 1  # flat indices below the cutoff hold exactly `wanted` ties
    return ties & (lax.iota(jnp.int32, n) < cutoff)


def _split(flat, shapes):
    """A flat array cut into consecutive pieces of ``shapes``."""
    pieces, start = [], 0
    for shape in shapes:
        size = math.prod(shape)
        pieces.append(flat[start : start + size].reshape(shape))
        start += size
    return pieces


def _first_ties(keys, shapes, lo, hi, wanted, ties, dtype):
    """Per array, the mask of the first ``wanted`` ties (lo < key <= hi) in flat order."""
    n = sum(math.prod(s) for s in shapes)
    if dtype == jnp.float64 or n <= 2 ** (jnp.finfo(dtype).nmant + 1):
        return _first_ties_by_index(keys, shapes, lo, hi, wanted, ties, dtype)
    flat = jnp.concatenate([key().reshape(-1) for key in keys])
    return _split(_first_ties_by_chunks(flat, lo, hi, wanted), shapes)


def _mask_by_search(keys, shapes, k, valid, dtype, finish, on_special=None):
    """``finish`` of the per-array masks of the top k keys (non-negative except -1 for NaN).
    ``on_special``: the keys are not checked yet; the search's first pass checks them, and
    ``on_special()`` is the result if one is NaN or infinite."""
    b = _search(keys, [math.prod(s) for s in shapes], k, valid, dtype, checked=on_special is not None)

    def above_lo():
        return finish([key() > b.lo for key in keys])

    def with_tie_cut():
        chosen = _first_ties(keys, shapes, b.lo, b.hi, k - b.c_hi, b.c_lo - b.c_hi, dtype)
        return finish([(key() > b.hi) | tie for key, tie in zip(keys, chosen)])

    def found():
        return lax.cond(b.c_lo == k, above_lo, with_tie_cut)

    return found() if on_special is None else lax.cond(b.special, on_special, found)


@jax.jit  # one compile per size and dtype (k traced), not one per operation on every eager call
def _mask_by_sort(scores, k):
    """The rule itself: the first k of a stable descending sort of the tie-banded scores (NaN last)."""
    n = scores.shape[0]
    banded = jnp.where(jnp.abs(scores) <= TINY, jnp.zeros_like(scores), scores)
    order = jnp.argsort(-banded, stable=True)
    rank = jnp.zeros(n, jnp.int32).at[order].set(lax.iota(jnp.int32, n))
    return (rank < k) & ~jnp.isnan(scores)


def ranking_key(scores):
    """Non-negative or NaN scores to the search's order: NaN -> -1, scores at or below TINY -> 0."""
    scores = jnp.where(scores <= TINY, jnp.zeros_like(scores), scores)
    return jnp.where(jnp.isnan(scores), -jnp.ones_like(scores), scores)


def _signed_keys(scores, k):
    """(keys, valid): per array, keys in [0, inf] (NaN -> -1; ``valid`` of them >= 0 in all) whose
    top k are the top k of real ``scores``. Non-negative floats hold only half of the order, so the
    key depends on k: if k scores are >= -TINY, those below drop out like NaN (and [-TINY, 0) -> 0);
    else all those are kept (-> inf) and each x < -TINY competes by the float of bits
    bits(inf) - bits(|x|) + bits(TINY), which lies in [TINY, largest finite] (-inf -> TINY) and
    increases with x, exactly."""
    n = sum(s.size for s in scores)
    nans = [jnp.isnan(s) for s in scores]
    negatives = [s < -TINY for s in scores]
    nonnegative = n - sum(jnp.sum(a | b, dtype=jnp.int32) for a, b in zip(nans, negatives))
    enough = k <= nonnegative
    keys = []
    for s, nan, negative in zip(scores, nans, negatives):
        top, tiny = _bits(jnp.asarray(jnp.inf, s.dtype)), _bits(jnp.asarray(TINY, s.dtype))
        reflected = lax.bitcast_convert_type(top - _bits(jnp.abs(s)) + tiny, s.dtype)
        key = jnp.where(
            negative,
            jnp.where(enough, -jnp.ones_like(s), reflected),
            jnp.where(enough, jnp.maximum(s, 0), jnp.inf),
        )
        keys.append(jnp.where(nan, -jnp.ones_like(s), key))
    valid = jnp.where(enough, nonnegative, n - sum(jnp.sum(nan, dtype=jnp.int32) for nan in nans))
    return keys, valid


def _identity(x):
    return x


def _finisher(values):
    """Masks as they are, or with ``values`` the masked values (the projection in the same pass)."""

    def finish(keeps):
        if values is None:
            return tuple(keeps)
        return tuple(jnp.where(keep, v, jnp.zeros((), v.dtype)) for keep, v in zip(keeps, values))

    return finish


@partial(jax.jit, static_argnames=("magnitude", "static"))  # one compile per shapes, not one per call
def _select_by_search(parts, values, k, *, magnitude: bool, static: bool):
    """The counting search's top k over ``parts`` (arrays of one float dtype): a tuple of masks,
    or of ``values`` masked when given. ``static``: k is known to lie in (0, n), so the k <= 0 and
    k >= n branches are left out."""
    shapes = [p.shape for p in parts]
    n = sum(p.size for p in parts)
    dtype = parts[0].dtype
    score = jnp.abs if magnitude else _identity
    finish = _finisher(values)
    kk = jnp.clip(k, 0, n)

    def clean(on_special=None):
        keys = [partial(score, p) for p in parts]

        def search():
            return _mask_by_search(keys, shapes, kk, jnp.int32(n), dtype, finish, on_special)

        everything = lambda: finish([~jnp.isnan(p) for p in parts])  # noqa: E731
        return search() if static else lax.cond(kk >= n, everything, search)

    def with_special_values():  # NaN, inf or negative scores: rare, so the keys are materialised
        keys, valid = _signed_keys([score(p) for p in parts], kk)

        def search():
            return _mask_by_search(
                [partial(_identity, key) for key in keys], shapes, kk, valid, dtype, finish
            )

        return lax.cond(kk >= valid, lambda: finish([key >= 0 for key in keys]), search)

    def select():
        if magnitude:  # keys |x| >= 0: the search's first pass checks for NaN and inf itself
            return clean(on_special=with_special_values)
        # One read pass: x * 0 sums to NaN if x holds a NaN or an inf, and min(x, 0) below 0 if it
        # holds a score < -TINY (XLA:CPU's max reduction does not propagate NaN, so it cannot serve).
        plain = sum(jnp.sum(p * 0 + jnp.minimum(p, 0)) for p in parts) == 0
        return lax.cond(plain, clean, with_special_values)

    nothing = lambda: finish([jnp.zeros(s, bool) for s in shapes])  # noqa: E731
    return select() if static else lax.cond(kk <= 0, nothing, select)


def _top_k(scores, k, magnitude: bool, sort_below: int, values=None) -> list:
    """The top k over the arrays ``scores``: masks, or ``values`` masked when given."""
    scores = [jnp.asarray(s) for s in scores]
    empty = [i for i, s in enumerate(scores) if s.size == 0]
    if empty and len(empty) < len(scores):  # empty arrays hold no entry and shift no flat index
        kept = [i for i in range(len(scores)) if i not in empty]
        chosen = iter(
            _top_k(
                [scores[i] for i in kept],
                k,
                magnitude,
                sort_below,
                None if values is None else [values[i] for i in kept],
            )
        )
        blank = _finisher(None if values is None else [values[i] for i in empty])
        blanks = iter(blank([jnp.zeros(scores[i].shape, bool) for i in empty]))
        return [next(blanks) if i in empty else next(chosen) for i in range(len(scores))]
    shapes = [s.shape for s in scores]
    n = sum(s.size for s in scores)
    finish = _finisher(values)
    static = isinstance(k, (int, np.integer))
    if n == 0 or (static and k <= 0):
        return list(finish([jnp.zeros(shape, bool) for shape in shapes]))
    dtype = _work_dtype(jnp.result_type(*(s.dtype for s in scores)))
    parts = tuple(s.astype(dtype) for s in scores)
    score = jnp.abs if magnitude else _identity
    if static and k >= n:
        return list(finish([~jnp.isnan(p) for p in parts]))
    if n <= sort_below:
        flat = jnp.concatenate([score(p).reshape(-1) for p in parts])
        return list(finish(_split(_mask_by_sort(flat, k), shapes)))
    k = jnp.asarray(k, jnp.int32)
    return list(_select_by_search(parts, values, k, magnitude=magnitude, static=static))


def top_k_mask(scores: jax.Array, k, *, magnitude: bool = False, sort_below: int = SORT_BELOW):
    """Boolean mask of the k largest scores (of ``|scores|`` when ``magnitude``), same shape.

    ``k`` is an int, or a traced int scalar (gradual pruning changes it inside one compiled
    step); k <= 0 keeps nothing, k >= size keeps every non-NaN entry. Scores may be any reals:
    NaN is never kept, -inf < negatives < ties of 0 (``|score| <= TINY``) < positives < +inf. The
    module docstring gives the exact rule.
    """
    return _top_k([scores], k, magnitude, sort_below)[0]


def top_k_masks(scores, k, *, magnitude: bool = False, sort_below: int = SORT_BELOW) -> list:
    """``top_k_mask`` over several arrays ranked together, one mask per array: the k largest of
    all their scores, ties cut by the flat index of the concatenated flattenings. The arrays are
    never concatenated (each pass reduces each in place), so a sharded array stays sharded."""
    return _top_k(list(scores), k, magnitude, sort_below)


def keep_top_k(w: jax.Array, k, *, sort_below: int = SORT_BELOW) -> jax.Array:
    """``where(top_k_mask(w, k, magnitude=True), w, 0)``, the mask never materialised: the last
    pass of the search writes the kept values directly (the projection onto {at most k nonzeros})."""
    return _top_k([w], k, True, sort_below, values=[jnp.asarray(w)])[0]

"""The exact top-k selection kernel every projection uses (docs/constraints.md, "The top-k kernel").

``top_k_mask(scores, k)`` marks the k largest scores of an array of any shape. The kept set is
exactly the first k entries of a stable sort by (score descending, flat index ascending), where:

* scores may be any reals; NaN ranks below every number and is never kept (fewer than k entries
  are kept only when fewer than k scores are numbers);
* +inf ranks above every finite score and -inf below;
* scores with ``|score| <= TINY = 2**-100`` rank as ties of 0 (they are kept or dropped by index,
  never by value); no float32 weight that small carries energy a float32 sum could see.

Algorithm (no sort on large arrays; on XLA:CPU a sort or ``lax.top_k`` costs 100-2000 read passes):
a counting search on non-negative keys. ``G(u) = #(score > u)`` is one fused pass summing the
indicator ``min(max(score - u, 0) * 2**(103 + p), 1)`` (p mantissa bits; 2**126 in float32): exact
for u >= TINY, and 4x faster than summing a boolean on XLA:CPU; rows of at most 2**24 elements keep
float32 sums exact. A strided sample gives the first probe (its estimate of the k-th score) and a
Newton step (its local density); then secant steps aimed just past the target, safeguarded by
regula falsi and bisection on the float bits, narrow a bracket (lo, hi] with G(hi) < k <= G(lo)
until G(lo) == k (the kept set is ``score > lo``) or (lo, hi] holds one tied value, whose ties are
cut by flat index. A probe in an empty gap is followed by a snap pass onto the data. NaN, inf and
negative scores (seen by the finiteness pass) take a materialised key (``_signed_key``). Typically
6-10 passes at 1e7 entries; at most ``sort_below`` entries use a stable argsort instead.
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
_COUNT_SLICE = 2**24  # the longest row a float32 count sums (exact up to 2**24)
_MAX_STEPS = 96


def _work_dtype(dtype) -> jnp.dtype:
    return jnp.float64 if dtype == jnp.float64 else jnp.float32


def _indicator_greater(x, u):
    """1.0 where x > u, else 0.0, without a boolean (exact for u >= TINY or x - u >= TINY).

    For x > u >= TINY, x - u is at least one ulp of TINY, 2**-(100 + p) with p mantissa bits, so
    the scale 2**(103 + p) lifts every positive difference to at least 8 (float32: 2**126).
    """
    big = jnp.asarray(2.0 ** (103 + jnp.finfo(x.dtype).nmant), x.dtype)
    return jnp.minimum(jnp.maximum(x - u, 0) * big, 1)


def _as_rows(flat):
    """(R, C) view with C <= _COUNT_SLICE, zero-padded when R does not divide the size.

    Float32 sums of 0/1 are exact up to 2**24, so counts sum each row in float32 and add the row
    counts as int32. Zero padding is invisible to every count at u >= TINY, and sorts last.
    """
    n = flat.shape[0]
    rows = -(-n // _COUNT_SLICE) if flat.dtype != jnp.float64 else 1
    cols = -(-n // rows)
    if rows * cols != n:
        flat = jnp.pad(flat, (0, rows * cols - n))
    return flat.reshape(rows, cols)


def _count_greater(rows, u, score) -> jax.Array:
    """``#(score(rows) > u)`` as int32, exact for u >= TINY."""
    per_row = jnp.sum(_indicator_greater(score(rows), u), axis=1)
    return jnp.sum(per_row.astype(jnp.int32), dtype=jnp.int32)


def _next_up(x):
    return jnp.nextafter(x, jnp.asarray(jnp.inf, x.dtype))


def _bits(x):
    """The bit pattern of a float32/float64 as int32/int64 (ordered like x for x >= 0)."""
    return lax.bitcast_convert_type(x, jnp.int64 if x.dtype == jnp.float64 else jnp.int32)


def _bits_midpoint(lo, hi):
    """The float whose bit pattern lies halfway between those of two non-negative floats."""
    a, b = _bits(lo), _bits(hi)
    return lax.bitcast_convert_type(a + (b - a) // 2, lo.dtype)


def _sample_estimate(rows, k, score):
    """From a strided sample: an estimate of the k-th largest score and the local density of
    scores around it (elements per unit of score), for a first probe and a Newton step."""
    flat = rows.reshape(-1)
    n = flat.shape[0]
    m = min(n, _SAMPLE, max(256, 4 * math.isqrt(n)))
    sample = jnp.sort(score(flat[:: n // m][:m]))[::-1]
    rank = k.astype(sample.dtype) * (m / n)
    spread = jnp.maximum(3.0 * jnp.sqrt(rank * jnp.maximum(1.0 - rank / m, 0.0)), 2.0)

    def at(r):
        return sample[jnp.clip(jnp.round(r), 0, m - 1).astype(jnp.int32)]

    upper, lower = at(rank - spread), at(rank + spread)
    density = (2 * spread * (n / m)) / jnp.maximum(upper - lower, jnp.finfo(sample.dtype).tiny)
    return at(rank), density


def _max_at_most(values, hi, score):
    """max{score <= hi} for finite hi >= TINY, in one arithmetic pass."""
    x = score(values)
    big = jnp.asarray(jnp.finfo(x.dtype).max, x.dtype)
    return jnp.max(jnp.minimum(x, hi) - _indicator_greater(x, hi) * big)


def _min_above(values, lo, score):
    """min{score > lo} for lo == -1 or lo >= TINY, in one arithmetic pass."""
    x = score(values)
    big = jnp.asarray(jnp.finfo(x.dtype).max, x.dtype)
    return jnp.min(jnp.maximum(x, lo) + (1 - _indicator_greater(x, lo)) * big)


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


def _lowest_split(lo, tiny):
    return jnp.maximum(_next_up(lo), tiny)


def _probe(b: _Bracket, rows, k, score, estimate, density) -> _Bracket:
    """One counting pass at the next probe u (estimate, Newton, secant, falsi or bisection)."""
    dtype = rows.dtype
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
    count = _count_greater(rows, u, score)
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
    )


def _snap(b: _Bracket, rows, k, score) -> _Bracket:
    """After a probe in an empty gap: move the nearer end onto the data, and force the next
    probe to split that value off."""
    tiny = jnp.asarray(TINY, rows.dtype)

    def onto_top():  # no data in (top, hi], so G(top) == c_hi; then split top off
        top = _max_at_most(rows, b.hi, score)
        return b._replace(hi=top, forced=jnp.nextafter(top, b.lo))

    def onto_bottom():  # no data in (lo, bottom), so G(prev(bottom)) == c_lo
        bottom = _min_above(rows, b.lo, score)
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
    )


def _search(rows, k, valid, score):
    """Bracket (lo, hi] with G(hi) < k <= G(lo) and either G(lo) == k or one tie value inside.

    ``score(rows)`` ((R, C) from ``_as_rows``) is non-negative except -1 for NaN; ``k`` is int32
    in [1, valid] and ``valid`` the number of non-NaN scores, so the search starts from
    G(-1) == valid and G(inf) == 0. Each iteration is one pass: a probe (``_probe``: the sample's
    estimate, a Newton step, then secants aimed past the target by about their own error, sqrt of
    the residual, so that probes alternate sides; Illinois regula falsi outside the bracket; bit
    bisection when three probes shrank it less than 2x) or, after a probe in an empty gap, a snap
    (``_snap``) of the nearer end onto the data, so that a tie group costs two passes.
    """
    tiny = jnp.asarray(TINY, rows.dtype)
    estimate, density = _sample_estimate(rows, k, score)

    def cond(b):
        return (b.c_lo != k) & (_lowest_split(b.lo, tiny) < b.hi) & (b.step < _MAX_STEPS)

    def body(b):
        return lax.cond(
            b.snap, lambda: _snap(b, rows, k, score), lambda: _probe(b, rows, k, score, estimate, density)
        )

    b = lax.while_loop(cond, body, _start(k, valid, rows.dtype))
    return b.lo, b.hi, b.c_lo, b.c_hi


def _first_ties_by_chunks(scores, lo, hi, wanted):
    """Mask of the first ``wanted`` entries (flat order) with lo < score <= hi: tie counts of 64
    chunks, then a cumulative sum inside the chunk holding the cut (about 7 passes at 1e7)."""
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


def _first_ties_by_peeling(scores, lo, hi, wanted):
    """The same mask for few wanted ties and n <= 2**24 (a float32 index is exact): each pass
    finds the next tie's index as a min-reduction (about 3 read passes each)."""
    n = scores.shape[0]
    big = jnp.asarray(2.0**100, scores.dtype)
    index = lax.iota(scores.dtype, n)
    finite_hi = jnp.isfinite(hi)
    # 0/1 without booleans; (lo, inf] has nothing above inf, and hi = inf would make inf - inf
    tie = _indicator_greater(scores, lo) - _indicator_greater(scores, jnp.where(finite_hi, hi, 0)) * finite_hi

    def next_tie(_, last):  # the smallest tie index above `last`
        return jnp.min(index + (1 - tie) * big + jnp.maximum(last + 1 - index, 0) * big)

    last = lax.fori_loop(0, wanted, next_tie, jnp.asarray(-1, scores.dtype))
    return (scores > lo) & (scores <= hi) & (index <= last)


_PEEL_AT_MOST = 2  # peeling costs ~3 passes per tie, the chunked cut ~7 in all


def _first_ties(scores, lo, hi, wanted):
    """Mask of the first ``wanted`` entries (flat order) with lo < ``scores()`` <= hi (some
    exist). ``scores`` is a function, so that each branch computes it inside its own fusion."""
    if scores().shape[0] > _COUNT_SLICE or scores().dtype == jnp.float64:
        return _first_ties_by_chunks(scores(), lo, hi, wanted)
    return lax.cond(
        wanted <= _PEEL_AT_MOST,
        lambda: _first_ties_by_peeling(scores(), lo, hi, wanted),
        lambda: _first_ties_by_chunks(scores(), lo, hi, wanted),
    )


def _mask_by_search(values, k, valid, score):
    """Flat mask of the top k of ``score(values)`` (flat, non-negative except -1 for NaN)."""
    rows = _as_rows(values)
    lo, hi, c_lo, c_hi = _search(rows, k, valid, score)

    def scores():  # recomputed inside each branch, so |x| is never materialised
        return score(values)

    return lax.cond(
        c_lo == k,
        lambda: scores() > lo,
        lambda: (scores() > hi) | _first_ties(scores, lo, hi, k - c_hi),
    )


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


def _signed_key(scores, k):
    """(key, valid): keys in [0, inf] (NaN -> -1; ``valid`` of them >= 0) whose top k are the top
    k of real ``scores``. Non-negative floats hold only half of the order, so the key depends on k:
    if k scores are >= -TINY, those below drop out like NaN (and [-TINY, 0) -> 0); else all those
    are kept (-> inf) and each x < -TINY competes by the float of bits bits(inf) - bits(|x|) +
    bits(TINY), which lies in [TINY, largest finite] (-inf -> TINY) and increases with x, exactly."""
    nan = jnp.isnan(scores)
    negative = scores < -TINY
    nonnegative = scores.shape[0] - jnp.sum(nan | negative, dtype=jnp.int32)
    enough = k <= nonnegative
    top, tiny = _bits(jnp.asarray(jnp.inf, scores.dtype)), _bits(jnp.asarray(TINY, scores.dtype))
    reflected = lax.bitcast_convert_type(top - _bits(jnp.abs(scores)) + tiny, scores.dtype)
    key = jnp.where(
        negative,
        jnp.where(enough, -jnp.ones_like(scores), reflected),
        jnp.where(enough, jnp.maximum(scores, 0), jnp.inf),
    )
    valid = jnp.where(enough, nonnegative, scores.shape[0] - jnp.sum(nan, dtype=jnp.int32))
    return jnp.where(nan, -jnp.ones_like(scores), key), valid


def _identity(x):
    return x


@partial(jax.jit, static_argnames=("magnitude", "static"))  # one compile per size, not one per call
def _select_by_search(flat, k, *, magnitude: bool, static: bool):
    """The counting search's mask of the k largest of ``flat`` (``static``: k is known to lie in
    (0, n), so the k <= 0 and k >= n branches are left out)."""
    n = flat.shape[0]
    score = jnp.abs if magnitude else _identity
    kk = jnp.clip(k, 0, n)
    # One read pass: x * 0 sums to NaN if x holds a NaN or an inf, and min(x, 0) below 0 if it holds
    # a score < -TINY (XLA:CPU's max reduction does not propagate NaN, so it cannot serve).
    plain = jnp.sum(flat * 0 if magnitude else flat * 0 + jnp.minimum(flat, 0)) == 0

    def clean():
        def search():
            return _mask_by_search(flat, kk, jnp.int32(n), score)

        return search() if static else lax.cond(kk >= n, lambda: jnp.ones(n, bool), search)

    def with_special_values():  # NaN, inf or negative scores: rare, so the key is materialised
        key, valid = _signed_key(score(flat), kk)

        def search():
            return _mask_by_search(key, kk, valid, _identity)

        return lax.cond(kk >= valid, lambda: key >= 0, search)

    def select():
        return lax.cond(plain, clean, with_special_values)

    mask = select() if static else lax.cond(kk <= 0, lambda: jnp.zeros(n, bool), select)
    return mask


def top_k_mask(scores: jax.Array, k, *, magnitude: bool = False, sort_below: int = SORT_BELOW):
    """Boolean mask of the k largest scores (of ``|scores|`` when ``magnitude``), same shape.

    ``k`` is an int, or a traced int scalar (gradual pruning changes it inside one compiled
    step); k <= 0 keeps nothing, k >= size keeps every non-NaN entry. Scores may be any reals:
    NaN is never kept, -inf < negatives < ties of 0 (``|score| <= TINY``) < positives < +inf. The
    module docstring gives the exact rule.
    """
    shape = scores.shape
    n = math.prod(shape)
    static = isinstance(k, (int, np.integer))
    if n == 0 or (static and k <= 0):
        return jnp.zeros(shape, bool)
    flat = scores.reshape(-1).astype(_work_dtype(scores.dtype))
    score = jnp.abs if magnitude else _identity
    if static and k >= n:
        return ~jnp.isnan(flat).reshape(shape)
    if n <= sort_below:
        return _mask_by_sort(score(flat), k).reshape(shape)
    return _select_by_search(flat, jnp.asarray(k, jnp.int32), magnitude=magnitude, static=static).reshape(
        shape
    )

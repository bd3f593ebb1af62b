"""Fuzz suite: every constraint, global budget and spec against NumPy transcriptions of the
documented rules (README "Conventions worth knowing", docs/constraints.md).

Arrays are drawn over shapes that include empty and 0-d ones, dtypes float16/bfloat16/float32
(and float64, with x64 on), and values that mix ties, signed zeros, denormals, scores at or below
TINY, NaN and +-inf. Two kinds of values:

* ``exact`` draws from a palette whose squares and sums are exact in float32 (halves, small
  integers, denormals that square to 0 or exactly), so block, fragment and pattern energies are
  order-independent and a NumPy transcription must give the very same mask;
* ``wild`` adds arbitrary floats, for the laws that hold whatever the rounding (feasibility,
  idempotence, kept counts, the top-k rule on the constraint's own scores).

Shapes come from a few small extents, so JAX compiles each shape once and the suite stays fast.
"""

from __future__ import annotations

import math
from fractions import Fraction

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prunax.constraints import (
    NM,
    TINY,
    Block,
    ColumnSign,
    Pattern,
    Unstructured,
    global_,
    spec,
    top_k_mask,
)
from tests.constraints.helpers import stable_top_k

fuzz = settings(max_examples=20, deadline=None)

DTYPES = {
    "float16": np.float16,
    "bfloat16": ml_dtypes.bfloat16,
    "float32": np.float32,
    "float64": np.float64,
}
SPARSITIES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99)
# A few shapes, so each compiles once per dtype: 0-d, empty, ragged against blocks of 2 and 3.
SHAPES = ((), (0,), (1,), (5,), (0, 3), (2, 3), (4, 5), (3, 1, 2), (2, 3, 4))


def _palette(dtype) -> list[float]:
    """Values whose squares and sums of squares are exact in float32 (or float64)."""
    info = np.finfo(dtype)
    denormal = float(info.smallest_subnormal)
    small = [denormal, -denormal, 2.0**-110, -(2.0**-110)] if info.bits > 16 else [denormal, -denormal]
    return [0.0, -0.0, 0.5, -0.5, 1.0, -1.0, 1.5, -2.0, 3.0, -3.0, *small, math.nan, math.inf, -math.inf]


@st.composite
def arrays(draw, x64, shapes=SHAPES):
    """(array, wild): an array of one of ``shapes`` and a dtype allowed under ``x64``."""
    dtype = DTYPES[draw(st.sampled_from(sorted(DTYPES) if x64 else ["bfloat16", "float16", "float32"]))]
    shape = draw(st.sampled_from(shapes))
    wild = draw(st.booleans())
    element = st.sampled_from(_palette(dtype))
    if wild:
        largest = 6e4 if dtype == np.float16 else 1e18  # squares stay finite in float32
        element = element | st.floats(-largest, largest, allow_nan=False, allow_subnormal=True)
    size = math.prod(shape)
    flat = draw(st.lists(element, min_size=size, max_size=size))
    return np.asarray(flat, np.float64).astype(dtype).reshape(shape), wild


@st.composite
def cases(draw, min_ndim=0, max_ndim=3):
    """(x64, array, wild): x64 on or off, then an array for it."""
    x64 = draw(st.booleans())
    return (x64, *draw(arrays(x64, [s for s in SHAPES if min_ndim <= len(s) <= max_ndim])))


def _energy_dtype(dtype):
    return np.float64 if dtype == np.float64 else np.float32


def _key(scores):
    """The documented ranking key of non-negative scores: at or below TINY ties with 0."""
    return np.where(scores <= TINY, 0.0, scores)


def _kept(n: int, sparsity: float) -> int:
    return n - math.floor(Fraction(str(sparsity)) * n)


def _sum_by(ids, values, count, dtype):
    """Per-id sums accumulated in ``dtype`` (the precision the library scores in)."""
    out = np.zeros(count, dtype)
    np.add.at(out, ids.reshape(-1), values.reshape(-1).astype(dtype))
    return out


def _block_ids(shape, axes, block):
    """Row-major index over the block grid (in ``axes`` order) of every entry."""
    grid = tuple(-(-shape[a] // b) for a, b in zip(axes, block))
    coords = np.indices(shape)
    return np.ravel_multi_index(tuple(coords[a] // b for a, b in zip(axes, block)), grid), math.prod(grid)


def _flushed(x):
    """As NumPy with denormals as zeros: XLA:CPU may flush them in any operation, a select too."""
    x = np.asarray(x)
    return np.where(np.abs(x) < np.finfo(x.dtype).tiny, np.zeros((), x.dtype), x)


def _laws(constraint, w):
    """Projection laws that hold whatever the rounding; returns the mask as NumPy."""
    mask = constraint.mask(w)
    assert mask.shape == w.shape and mask.dtype == jnp.bool_
    projected = constraint.project(w)
    np.testing.assert_array_equal(_flushed(projected), _flushed(jnp.where(mask, w, 0)))
    assert projected.dtype == w.dtype
    assert bool(constraint.is_feasible(projected)), f"{constraint!r}: projection infeasible"
    nan = np.isnan(np.asarray(w, np.float64))
    if not nan.any():  # a NaN group projects to zeros, which may then win a tie of 0 by index
        np.testing.assert_array_equal(_flushed(constraint.project(projected)), _flushed(projected))
    mask = np.asarray(mask)
    assert not mask[nan].any(), "a NaN entry was kept"
    return mask


@fuzz
@given(cases(), st.sampled_from(SPARSITIES))
def test_unstructured(case, sparsity):
    x64, w, _ = case
    with jax.enable_x64(x64):
        x = jnp.asarray(w)
        c = Unstructured(sparsity)
        mask = _laws(c, x)
        magnitudes = np.abs(w.astype(np.float64))
        np.testing.assert_array_equal(mask, stable_top_k(magnitudes, _kept(w.size, sparsity)))
        numbers = int(np.sum(~np.isnan(magnitudes)))
        assert mask.sum() == min(_kept(w.size, sparsity), numbers)
        nonzeros = int(np.sum(w.astype(np.float64) != 0))  # NaN counts as a nonzero
        assert bool(c.is_feasible(x)) == (nonzeros <= _kept(w.size, sparsity))


@fuzz
@given(cases(min_ndim=1), st.sampled_from(SPARSITIES), st.data())
def test_block(case, sparsity, data):
    x64, w, wild = case
    ndim = w.ndim
    axes = tuple(data.draw(st.permutations(range(ndim)))[: data.draw(st.integers(1, ndim))])
    block = tuple(data.draw(st.sampled_from((1, 2, 3))) for _ in axes)
    with jax.enable_x64(x64):
        x = jnp.asarray(w)
        c = Block(block, sparsity, axes)
        mask = _laws(c, x)
        ids, count = _block_ids(w.shape, axes, block)
        wide = w.astype(_energy_dtype(w.dtype))
        energies = _sum_by(ids, np.square(wide), count, _energy_dtype(w.dtype))
        scores = np.asarray(c.scores(x)).reshape(-1)
        if wild:  # summation order may round differently; NaN and inf must agree exactly
            np.testing.assert_allclose(scores, energies, rtol=1e-5, atol=0)
        else:
            np.testing.assert_array_equal(scores, energies)
        keep = stable_top_k(scores, _kept(count, sparsity))
        np.testing.assert_array_equal(mask, keep[ids] if count else mask)
        assert keep.sum() == min(_kept(count, sparsity), int(np.sum(~np.isnan(scores))))


def test_block_on_a_0d_leaf_names_the_axis():
    with pytest.raises(ValueError, match=r"on leaf 'b' with shape \(\): axis 0 is out of range for 0-d"):
        Block((1,), 0.5, (0,)).mask(jnp.asarray(1.0), "b")


def _nm_oracle(w, n, m, axis):
    magnitudes = np.moveaxis(np.abs(w.astype(np.float64)), axis, -1)
    keep = np.zeros(magnitudes.shape, bool)
    for line in np.ndindex(magnitudes.shape[:-1]):
        for start in range(0, magnitudes.shape[-1], m):
            run = magnitudes[line][start : start + m]
            keep[line][start : start + m] = stable_top_k(run, n)
    return np.moveaxis(keep, -1, axis)


@fuzz
@given(cases(min_ndim=1), st.integers(1, 5), st.data())
def test_nm(case, m, data):
    x64, w, _ = case
    n = data.draw(st.integers(0, m))
    axis = data.draw(st.integers(-w.ndim, w.ndim - 1))
    with jax.enable_x64(x64):
        mask = _laws(NM(n, m, axis), jnp.asarray(w))
        np.testing.assert_array_equal(mask, _nm_oracle(w, n, m, axis % w.ndim))


def _column_sign_oracle(w, fragment, axis):
    """Per fragment keep the positive entries if their energy is at least the negative one's."""
    rows = math.prod(w.shape[: axis + 1])
    matrix = w.astype(_energy_dtype(w.dtype)).reshape(rows, math.prod(w.shape[axis + 1 :]))
    matrix = np.where(np.isnan(matrix), 0, matrix)
    ids = np.broadcast_to(np.arange(rows)[:, None] // fragment, matrix.shape)
    count = -(-rows // fragment)
    keep = np.zeros(matrix.shape, bool)
    for column in range(matrix.shape[1]):
        values, frag = matrix[:, column], ids[:, column]
        positive = _sum_by(frag, np.square(np.maximum(values, 0)), count, matrix.dtype)
        negative = _sum_by(frag, np.square(np.minimum(values, 0)), count, matrix.dtype)
        keep[:, column] = np.where((positive >= negative)[frag], values > 0, values < 0)
    return keep.reshape(w.shape)


@fuzz
@given(cases(min_ndim=2), st.integers(1, 4), st.data())
def test_column_sign(case, fragment, data):
    x64, w, wild = case
    axis = data.draw(st.integers(0, w.ndim - 2))
    with jax.enable_x64(x64):
        mask = _laws(ColumnSign(fragment, axis), jnp.asarray(w))
        if not wild:
            np.testing.assert_array_equal(mask, _column_sign_oracle(w, fragment, axis))


PATTERN_SETS = (
    np.array([[1, 0], [0, 1], [1, 1]], bool),  # tiles of 2 along one axis
    np.array([[[1, 0], [0, 1]], [[1, 1], [0, 0]], [[0, 0], [1, 1]], [[0, 1], [0, 1]]], bool),
)


def _pattern_oracle(w, patterns, axes, connectivity):
    """Per tile the pattern keeping the most infinite entries, then the most finite energy (lower
    pattern index on ties; NaN entries never kept); then with ``connectivity`` the top-k tiles by
    kept energy (a tile holding NaN never kept; lower tile index on ties)."""
    tile = patterns.shape[1:]
    rest = [a for a in range(w.ndim) if a not in axes]
    coords = np.indices(w.shape)
    grid = tuple(-(-w.shape[a] // t) for a, t in zip(axes, tile))
    tile_of = np.ravel_multi_index(
        tuple(coords[a] // t for a, t in zip(axes, tile)) + tuple(coords[a] for a in rest),
        grid + tuple(w.shape[a] for a in rest),
    )
    offset = np.ravel_multi_index(tuple(coords[a] % t for a, t in zip(axes, tile)), tile)
    energy = _key(np.square(w.astype(_energy_dtype(w.dtype))))
    nan = np.isnan(energy)
    flat_patterns = patterns.reshape(len(patterns), -1)
    count = math.prod(grid) * math.prod(w.shape[a] for a in rest)
    keep = np.zeros(w.shape, bool)
    best = np.zeros(count, np.float64)
    for t in range(count):
        here = tile_of == t
        inside = flat_patterns[:, offset[here]]  # (patterns, entries of the tile)
        e = energy[here]
        infinite = inside.astype(int) @ np.isinf(e).astype(int)
        finite = inside.astype(energy.dtype) @ np.where(np.isinf(e) | np.isnan(e), 0, e).astype(energy.dtype)
        choice = max(range(len(patterns)), key=lambda p: (infinite[p], finite[p], -p))
        keep[here] = inside[choice] & ~nan[here]
        best[t] = math.nan if nan[here].any() else math.inf if infinite[choice] else finite[choice]
    if connectivity is not None:
        kept_tiles = stable_top_k(best, _kept(count, connectivity))
        keep &= kept_tiles[tile_of]
    return keep


@fuzz
@given(cases(min_ndim=1), st.sampled_from((None, 0.0, 0.5, 0.9)), st.sampled_from(PATTERN_SETS), st.data())
def test_pattern_tiles(case, connectivity, patterns, data):
    x64, w, wild = case
    if w.ndim < patterns.ndim - 1:
        w = w.reshape(w.shape + (1,) * (patterns.ndim - 1 - w.ndim))
    axes = tuple(data.draw(st.permutations(range(w.ndim)))[: patterns.ndim - 1])
    with jax.enable_x64(x64):
        c = Pattern(patterns, axes=axes, connectivity=connectivity, tiles=True)
        mask = _laws(c, jnp.asarray(w))
        if not wild:
            np.testing.assert_array_equal(mask, _pattern_oracle(w, patterns, axes, connectivity))


@fuzz
@given(cases(min_ndim=2), st.sampled_from(SPARSITIES), st.integers(1, 3))
def test_intersection_masks_part_by_part(case, sparsity, fragment):
    """Polarity then a count: each part's mask on the array the earlier parts masked."""
    x64, w, wild = case
    with jax.enable_x64(x64):
        x = jnp.asarray(w)
        parts = (ColumnSign(fragment, 0), Unstructured(sparsity))
        mask = _laws(parts[0] & parts[1], x)
        for part in parts:
            assert bool(part.is_feasible(jnp.where(mask, x, 0))), part
        if not wild:
            signs = _column_sign_oracle(w, fragment, 0)
            first = np.where(signs, w.astype(np.float64), 0)
            np.testing.assert_array_equal(mask, signs & stable_top_k(np.abs(first), _kept(w.size, sparsity)))


def _normalised(scores, normalize):
    """A leaf's flat scores divided by the rms or max of its finite scores."""
    finite = np.isfinite(scores)
    values = np.where(finite, scores, 0)
    if normalize is None:
        return scores
    if normalize == "max":
        norm = np.max(values, initial=0)
    else:
        norm = np.sqrt(np.sum(np.square(values)) / max(int(finite.sum()), 1))
    return scores / (norm + np.asarray(1e-30, scores.dtype))


@st.composite
def trees(draw):
    """(x64, {path: array}, wild): two or three kernels (dtypes may differ) and one bias."""
    x64 = draw(st.booleans())
    leaves = draw(st.lists(arrays(x64, [s for s in SHAPES if 1 <= len(s) <= 2]), min_size=2, max_size=3))
    tree = {f"layer{i}/kernel": w for i, (w, _) in enumerate(leaves)}
    tree["layer0/bias"] = leaves[0][0]
    return x64, tree, any(wild for _, wild in leaves)


@fuzz
@given(trees(), st.sampled_from(SPARSITIES), st.sampled_from((None, "rms", "max")), st.booleans())
def test_global_budget_over_leaves(tree, sparsity, normalize, blocks):
    """One top-k over every kernel's (normalised) scores; the bias is left alone."""
    x64, arrays, wild = tree
    kernels = sorted(k for k in arrays if k.endswith("kernel"))
    with jax.enable_x64(x64):
        inner = Block((2,), sparsity, (0,)) if blocks else Unstructured(sparsity)
        s = spec([global_(inner, include=r"kernel$", normalize=normalize)])
        params = {k: jnp.asarray(v) for k, v in arrays.items()}
        masks = {k: np.asarray(m) for k, m in s.mask(params).items()}
        projected = s.project(params)
        assert bool(s.is_feasible(projected))
        np.testing.assert_array_equal(np.asarray(projected["layer0/bias"]), arrays["layer0/bias"])
        for name in kernels:
            assert not masks[name][np.isnan(arrays[name].astype(np.float64))].any(), "a NaN entry was kept"
        if wild:  # rms and block sums may round in another order; the exact palette checks the rule
            return
        scores, ids = [], []
        for name in kernels:
            wide = arrays[name].astype(_energy_dtype(arrays[name].dtype))
            if blocks:
                leaf_ids, count = _block_ids(wide.shape, (0,), (2,))
                raw = _sum_by(leaf_ids, np.square(wide), count, wide.dtype)
            else:
                leaf_ids, raw = np.arange(wide.size).reshape(wide.shape), np.abs(wide).reshape(-1)
            scores.append(_normalised(raw, normalize))
            ids.append(leaf_ids)
        everything = np.concatenate(scores)
        keep = np.split(
            stable_top_k(everything, _kept(everything.size, sparsity)),
            np.cumsum([len(x) for x in scores])[:-1],
        )
        for name, leaf_ids, mine in zip(kernels, ids, keep):
            np.testing.assert_array_equal(masks[name], mine[leaf_ids] if mine.size else masks[name])


_SEARCH = {  # built once: a new jitted lambda per example would compile per example
    magnitude: jax.jit(lambda x, k, magnitude=magnitude: top_k_mask(x, k, magnitude=magnitude, sort_below=1))
    for magnitude in (False, True)
}


@fuzz
@given(
    st.booleans().flatmap(lambda x64: st.tuples(st.just(x64), arrays(x64, [(7,)]))),
    st.integers(-3, 9),
    st.booleans(),
)
def test_top_k_search_path(case, k, magnitude):
    """The counting search (forced with sort_below=1) against the stable sort, signed or not. The
    search runs in float32 (float64 for float64 scores), so the array is cast first, as
    ``top_k_mask`` does: one compile per work dtype."""
    x64, (w, _) = case
    with jax.enable_x64(x64):
        got = np.asarray(_SEARCH[magnitude](jnp.asarray(w.astype(_energy_dtype(w.dtype))), jnp.int32(k)))
        wide = w.astype(np.float64)
        scores = np.abs(wide) if magnitude else wide
        np.testing.assert_array_equal(got, stable_top_k(scores, k))

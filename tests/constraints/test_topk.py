"""The top-k kernel against a stable sort, on both of its paths, all dtypes and odd values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from prunax.constraints import Unstructured
from prunax.constraints import _topk as topk
from prunax.constraints._topk import top_k_mask
from tests.constraints.helpers import stable_top_k

N = 700
KS = (1, 7, 350, 699)


@pytest.fixture(scope="module")
def search():
    """The counting-search path, forced on small arrays; one compile per k."""
    fns = {k: jax.jit(lambda x, k=k: top_k_mask(x, k, magnitude=True, sort_below=1)) for k in KS}
    return lambda x, k: np.asarray(fns[k](jnp.asarray(x)))


@pytest.fixture(scope="module")
def signed_search():
    """The counting-search path on the scores themselves (no magnitude)."""
    fns = {k: jax.jit(lambda x, k=k: top_k_mask(x, k, sort_below=1)) for k in KS}
    return lambda x, k: np.asarray(fns[k](jnp.asarray(x)))


def _values(kind: str, rng) -> np.ndarray:
    if kind == "gauss":
        return rng.standard_normal(N)
    if kind == "integers":  # heavy ties
        return rng.integers(-3, 4, N).astype(float)
    if kind == "lognormal":
        return rng.lognormal(0, 4, N) * rng.choice([-1, 1], N)
    if kind == "sparse":
        return np.where(rng.random(N) < 0.7, 0.0, rng.standard_normal(N))
    if kind == "nan_inf":
        x = rng.standard_normal(N)
        x[rng.random(N) < 0.2] = np.nan
        x[rng.random(N) < 0.05] = np.inf
        x[rng.random(N) < 0.05] = -np.inf
        return x
    if kind == "tiny":  # below TINY everything ties with 0
        return rng.standard_normal(N) * 1e-32
    if kind == "around_tiny":  # magnitudes from 1e-40 (denormal) to 1e-20, across TINY ~ 7.9e-31
        return 10.0 ** rng.uniform(-40, -20, N) * np.where(rng.random(N) < 0.3, 0, 1)
    if kind == "bf16":
        return np.asarray(jnp.asarray(rng.standard_normal(N), jnp.bfloat16).astype(jnp.float32))
    raise AssertionError(kind)


KINDS = ("gauss", "integers", "lognormal", "sparse", "nan_inf", "tiny", "around_tiny", "bf16")


@given(kind=st.sampled_from(KINDS), k=st.sampled_from(KS), seed=st.integers(0, 2**31))
def test_search_path_equals_stable_sort(search, kind, k, seed):
    x = _values(kind, np.random.default_rng(seed)).astype(np.float32)
    np.testing.assert_array_equal(search(x, k), stable_top_k(np.abs(x), k))


@given(
    x=hnp.arrays(
        np.float32, (5, 7), elements=st.floats(-4, 4, width=32) | st.sampled_from([0.0, 1.0, np.nan, np.inf])
    ),
    k=st.integers(-1, 36),
)
def test_sort_path_equals_stable_sort(x, k):
    np.testing.assert_array_equal(
        np.asarray(top_k_mask(jnp.asarray(x), k, magnitude=True)), stable_top_k(np.abs(x), k)
    )


@given(
    kind=st.sampled_from(KINDS),
    k=st.sampled_from(KS),
    seed=st.integers(0, 2**31),
    shift=st.sampled_from([0.0, -2.0]),
)
def test_signed_scores_rank_below_zero(signed_search, kind, k, seed, shift):
    """Any real scores: -inf < negatives < ties of 0 (|score| <= TINY) < positives < +inf, NaN never
    kept, on both paths. (Negative scores used to tie with 0, or drop out below -1.)"""
    rng = np.random.default_rng(seed)
    x = (_values(kind, rng) * rng.choice([-1.0, 1.0], N) + shift).astype(np.float32)
    expected = stable_top_k(x, k)
    np.testing.assert_array_equal(signed_search(x, k), expected)
    np.testing.assert_array_equal(np.asarray(top_k_mask(jnp.asarray(x), k)), expected)


def test_negative_scores_in_order():
    x = np.array([-3.0, -1.0, np.nan, -np.inf, -2.0, 0.5, -(2.0**-101), 0.0], np.float32)
    order = [5, 6, 7, 1, 4, 0, 3]  # 0.5, the ties of 0 by index (-2**-101 is one), -1, -2, -3, -inf
    for sort_below in (1, 4096):
        masked = jax.jit(lambda x, k, sort_below=sort_below: top_k_mask(x, k, sort_below=sort_below))
        for k in range(1, 9):
            mask = np.asarray(masked(jnp.asarray(x), jnp.int32(k)))
            np.testing.assert_array_equal(mask, np.isin(np.arange(8), order[:k]), err_msg=f"k={k}")


def test_kept_count_is_exact_with_ties(search):
    x = np.ones(N, np.float32)  # every entry ties
    for k in KS:
        mask = search(x, k)
        assert mask.sum() == k and mask[:k].all()  # lower index wins


@pytest.mark.parametrize("wanted", [1, 2, 3])  # peeling cuts 1-2 ties, chunks more
def test_tie_cut_at_the_kth_value(search, wanted):
    rng = np.random.default_rng(wanted)
    x = rng.uniform(0, 4, N).astype(np.float32)  # below the tie value
    tie_at = [10, 400, 650, 690]
    above = [i for i in range(N) if i not in tie_at][: 350 - wanted]
    x[above] = rng.uniform(6, 9, len(above))
    x[tie_at] = 5.0
    mask = search(x, 350)
    assert mask.sum() == 350 and mask[tie_at].tolist() == [True] * wanted + [False] * (4 - wanted)
    np.testing.assert_array_equal(mask, stable_top_k(x, 350))


def test_nan_ranks_lowest_and_is_never_kept(search):
    x = np.full(N, np.nan, np.float32)
    x[:5] = [3, -2, 0, 1, np.inf]
    assert search(x, 7).sum() == 5  # fewer numbers than k: all numbers, no NaN
    assert search(x, 1)[4]  # +inf ranks above every finite score
    np.testing.assert_array_equal(search(x, 350), ~np.isnan(x))


@pytest.mark.parametrize("special", [np.nan, np.inf, -np.inf])
def test_special_values_off_the_sample_are_seen(special):
    """Two NaNs or infs where the strided sample does not look (no separate check pass on the
    magnitude path: the first probe's pass must see them) rank as the rule says."""
    x = np.random.default_rng(2).standard_normal((300, 301)).astype(np.float32)
    at = ([151, 299], [150, 151])  # the grid sample takes every few rows and columns from index 0
    x[at] = special
    sampled = np.asarray(topk._grid_sample(jnp.arange(x.size).reshape(x.shape), 12_000))
    assert not np.isin(np.ravel_multi_index(at, x.shape), sampled).any()
    for k in (1, 9_000, x.size - 1):
        got = np.asarray(jax.jit(lambda x, k=k: topk.keep_top_k(x, k))(jnp.asarray(x)))
        expected = np.where(stable_top_k(np.abs(x).reshape(-1), k).reshape(x.shape), x, 0)
        np.testing.assert_array_equal(got, expected, err_msg=f"k={k}")
    _, special = topk._checked_count([lambda: jnp.abs(jnp.asarray(x))], jnp.float32(1.0))
    assert bool(special)  # (the count is then meaningless)
    clean = np.where(np.isfinite(x), x, 0)
    count, special = topk._checked_count([lambda: jnp.abs(jnp.asarray(clean))], jnp.float32(1.0))
    assert not bool(special) and int(count) == int((np.abs(clean) > 1).sum())


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16, jnp.float32])
def test_dtypes(search, dtype):
    x = jnp.asarray(np.random.default_rng(1).standard_normal(N), dtype)
    reference = stable_top_k(np.abs(np.asarray(x.astype(jnp.float32))), 350)
    np.testing.assert_array_equal(search(x, 350), reference)
    small = x[:40]
    expected = stable_top_k(np.abs(np.asarray(small.astype(jnp.float32))), 9)
    np.testing.assert_array_equal(np.asarray(top_k_mask(small, 9, magnitude=True)), expected)


def test_float64(search):
    with jax.enable_x64(True):
        rng = np.random.default_rng(2)
        x = 1.0 + rng.random(N) * 1e-12  # distinct in float64, ties in float32
        mask = np.asarray(top_k_mask(jnp.asarray(x), 350, magnitude=True, sort_below=1))
        np.testing.assert_array_equal(mask, stable_top_k(x, 350))


@pytest.mark.parametrize("exponent", [-76, -99])
def test_float64_counts_stay_exact_for_tiny_scores(exponent):
    """Float64 scores 2**-99 apart an ulp (about 2**-149) used to give the indicator
    (x - u) * 2**126 < 1: fractional counts, too many kept, an infeasible projection."""
    rng = np.random.default_rng(5)
    x = 2.0**exponent * (1 + rng.integers(0, 1000, N) * 2.0**-50) * rng.choice([-1.0, 1.0], N)
    with jax.enable_x64(True):
        for magnitude in (True, False):
            mask = top_k_mask(jnp.asarray(x), 350, magnitude=magnitude, sort_below=1)
            np.testing.assert_array_equal(np.asarray(mask), stable_top_k(np.abs(x) if magnitude else x, 350))
        big = jnp.asarray(np.tile(x, 20))  # past SORT_BELOW: the default path of a projection
        assert big.dtype == jnp.float64
        assert bool(Unstructured(0.5).is_feasible(Unstructured(0.5).project(big)))


def test_counts_stay_exact_across_count_slices(monkeypatch):
    """Above 2**24 elements the float32 count runs per slice; exercise that with small slices."""
    monkeypatch.setattr(topk, "_COUNT_SLICE", 97)
    jax.clear_caches()  # the search is jitted: a compile cached at the real slice would ignore the patch
    x = np.random.default_rng(3).standard_normal(N).astype(np.float32)
    mask = np.asarray(top_k_mask(jnp.asarray(x), 123, magnitude=True, sort_below=1))
    jax.clear_caches()  # and later tests must not reuse the compile made with the patched slice
    np.testing.assert_array_equal(mask, stable_top_k(np.abs(x), 123))


def test_large_array_exact(search):
    """A size where the strided sample and the chunked tie cut both matter."""
    rng = np.random.default_rng(4)
    x = np.round(rng.standard_normal(200_003), 2).astype(np.float32)  # many ties
    for k in (1, 99_999, 200_002):
        mask = np.asarray(top_k_mask(jnp.asarray(x), k, magnitude=True))
        np.testing.assert_array_equal(mask, stable_top_k(np.abs(x), k))


def test_edge_sizes():
    assert top_k_mask(jnp.zeros((0,)), 3).shape == (0,)
    assert bool(top_k_mask(jnp.asarray(2.0), 1)) and not bool(top_k_mask(jnp.asarray(2.0), 0))


@pytest.mark.parametrize(
    ("kind", "magnitude"),
    [("gauss", True), ("integers", True), ("nan_inf", True), ("nan_inf", False)],  # signed: -inf, NaN
)
@pytest.mark.parametrize("sort_below", [1, 4096])
def test_traced_k_matches_static_k_in_one_compile(kind, magnitude, sort_below):
    x = jnp.asarray(_values(kind, np.random.default_rng(3)))
    traced = jax.jit(lambda x, k: top_k_mask(x, k, magnitude=magnitude, sort_below=sort_below))
    for k in (-2, 0, 1, 7, 350, 699, N, N + 5):
        expected = top_k_mask(x, k, magnitude=magnitude, sort_below=sort_below)
        got = traced(x, jnp.int32(k))
        np.testing.assert_array_equal(np.asarray(got), np.asarray(expected), err_msg=f"k={k}")
    assert traced._cache_size() == 1


SHAPES = ((30, 40), (7,), (3, 3, 5, 11), (0, 4))  # ranked together: 1200 + 7 + 495 + 0 entries


@given(kind=st.sampled_from(KINDS), k=st.sampled_from((1, 9, 851, 1701)), seed=st.integers(0, 2**31))
def test_several_arrays_rank_as_their_concatenation(kind, k, seed):
    rng = np.random.default_rng(seed)
    parts = [_values(kind, rng).reshape(-1)[: int(np.prod(s))].astype(np.float32) for s in SHAPES]
    parts = [np.resize(p, s) if p.size else np.zeros(s, np.float32) for p, s in zip(parts, SHAPES)]
    expected = stable_top_k(np.abs(np.concatenate([p.reshape(-1) for p in parts])), k)
    masks = _several(tuple(jnp.asarray(p) for p in parts), jnp.int32(k))
    np.testing.assert_array_equal(np.concatenate([np.asarray(m).reshape(-1) for m in masks]), expected)
    assert [m.shape for m in masks] == list(SHAPES)


@jax.jit
def _several(parts, k):
    return topk.top_k_masks(parts, k, magnitude=True, sort_below=1)


@pytest.mark.parametrize("kind", ["gauss", "integers", "sparse", "nan_inf", "bf16"])
@pytest.mark.parametrize("sort_below", [1, 4096])
def test_keep_top_k_is_the_masked_leaf(kind, sort_below):
    x = jnp.asarray(
        _values(kind, np.random.default_rng(8)).reshape(28, 25), jnp.bfloat16 if kind == "bf16" else None
    )
    for k in (0, 1, 350, 700):
        mask = top_k_mask(x, k, magnitude=True, sort_below=sort_below)
        kept = topk.keep_top_k(x, k, sort_below=sort_below)
        assert kept.dtype == x.dtype and kept.shape == x.shape
        np.testing.assert_array_equal(np.asarray(kept), np.asarray(jnp.where(mask, x, 0)), err_msg=f"k={k}")


def test_grid_sample_sees_every_axis():
    """The strided sample of a (rows, columns) leaf spans many rows and many columns, and a short
    axis (a 3x3 kernel's) whole."""
    rows = np.asarray(topk._grid_sample(jnp.arange(1000 * 1000.0).reshape(1000, 1000), 10_000))
    assert 5_000 <= rows.size <= 20_000
    assert len(np.unique(rows // 1000)) >= 50 and len(np.unique(rows % 1000)) >= 50
    taps = np.asarray(topk._grid_sample(jnp.arange(9 * 64 * 64.0).reshape(3, 3, 64, 64), 500))
    assert len(np.unique(taps // (64 * 64))) == 9

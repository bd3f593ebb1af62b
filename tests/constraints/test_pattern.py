import itertools

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from prunax.constraints import Pattern, kept_count, mine_patterns
from tests.constraints.helpers import DTYPES, check_projection_laws, energy

values = st.floats(-8, 8, width=32) | st.integers(-2, 2).map(float)

# PatDNN-style: 4 of 9 kept, always the centre
CROSS = np.array([[0, 1, 0], [1, 1, 1], [0, 0, 0]])
PATS = np.stack([CROSS, CROSS[::-1], CROSS.T, CROSS.T[:, ::-1], np.eye(3, dtype=int)])


def _tile_options(tile, patterns):
    """(kept energy per pattern) for one flat tile."""
    return [float(np.sum(np.where(p.reshape(-1), tile, 0.0) ** 2)) for p in patterns]


@given(hnp.arrays(np.float32, (3, 3, 2, 3), elements=values), st.sampled_from([None, 0.0, 0.5, 0.9]))
def test_kernel_patterns_laws_and_connectivity(w, connectivity):
    c = Pattern(PATS, axes=(0, 1), connectivity=connectivity)
    mask = check_projection_laws(c, w)
    kernels = mask.reshape(9, 6).T  # 6 kernels of 9 entries
    for kernel in kernels:
        assert not kernel.any() or any((kernel <= p.reshape(-1).astype(bool)).all() for p in PATS)
    if connectivity is not None:
        assert kernels.any(1).sum() <= kept_count(6, connectivity)


@given(hnp.arrays(np.float32, (3, 3, 1, 3), elements=values))
def test_optimal_against_brute_force(w):
    """Brute force over every pattern choice per kernel and every kept kernel subset."""
    c = Pattern(PATS, axes=(0, 1), connectivity=0.5)  # 3 kernels, keep 2
    tiles = np.asarray(w, np.float64).reshape(9, 3).T
    best = 0.0
    for keep in itertools.product((0, 1), repeat=3):
        if sum(keep) > kept_count(3, 0.5):
            continue
        best = max(best, sum(max(_tile_options(t, PATS)) for t, k in zip(tiles, keep) if k))
    assert energy(w, np.asarray(c.mask(jnp.asarray(w)))) == pytest.approx(best, rel=1e-6, abs=1e-6)


@given(hnp.arrays(np.float32, (5, 6), elements=values))
def test_rt3_tiles_with_ragged_edges(w):
    tile_patterns = np.array([[[1, 0], [0, 1]], [[1, 1], [0, 0]], [[0, 0], [1, 1]]])
    c = Pattern(tile_patterns, axes=(0, 1), tiles=True, connectivity=0.3)
    mask = check_projection_laws(c, w)
    for i in range(0, 5, 2):
        for j in range(0, 6, 2):
            tile = mask[i : i + 2, j : j + 2]
            fits = [(tile <= p[: tile.shape[0], : tile.shape[1]].astype(bool)).all() for p in tile_patterns]
            assert not tile.any() or any(fits)


@given(
    hnp.arrays(np.float32, (3, 3, 1, 3), elements=values | st.sampled_from([np.inf, -np.inf])),
    st.sampled_from([None, 0.5]),
)
def test_infinite_weights_are_the_largest_magnitudes(w, connectivity):
    """Every tile keeps as many infinite entries as a pattern can hold, and connectivity keeps the
    tiles holding one first. (inf * 0 made the pattern energies NaN: the inf was dropped, and
    under connectivity its whole tile.)"""
    c = Pattern(PATS, axes=(0, 1), connectivity=connectivity)
    mask = check_projection_laws(c, w)
    tiles, kept = np.asarray(w).reshape(9, 3).T, mask.reshape(9, 3).T
    infinite = np.isinf(tiles)
    most = (infinite[:, None, :] & PATS.reshape(1, 5, 9).astype(bool)).sum(-1).max(1)
    kept_tiles = kept.any(1)
    np.testing.assert_array_equal((kept & infinite).sum(1)[kept_tiles], most[kept_tiles])
    kept_tiles_with_inf = min(
        int((most > 0).sum()), 3 if connectivity is None else kept_count(3, connectivity)
    )
    assert (kept_tiles & (most > 0)).sum() == kept_tiles_with_inf


def test_infinite_weight_picks_its_pattern_then_finite_energy():
    w = np.ones((3, 3, 1, 2), np.float32)
    w[..., 1] *= 10  # the larger finite tile
    w[0, 0, 0, 0] = np.inf  # only the diagonal pattern (index 4) holds (0, 0)
    mask = np.asarray(Pattern(PATS, axes=(0, 1)).mask(jnp.asarray(w)))
    np.testing.assert_array_equal(mask[:, :, 0, 0], np.eye(3, dtype=bool))
    np.testing.assert_array_equal(mask[:, :, 0, 1], CROSS.astype(bool))  # finite: first of the ties
    connected = np.asarray(Pattern(PATS, axes=(0, 1), connectivity=0.5).mask(jnp.asarray(w)))
    assert connected[..., 0].any() and not connected[..., 1].any()  # the infinite tile ranks first
    # two infinite entries both kept by patterns 0 and 1: then the larger finite energy decides
    w = np.ones((3, 3, 1, 1), np.float32)
    w[1, 0], w[1, 2], w[2, 1] = -np.inf, np.inf, 5.0
    mask = np.asarray(Pattern(PATS, axes=(0, 1)).mask(jnp.asarray(w)))
    np.testing.assert_array_equal(mask[:, :, 0, 0], CROSS[::-1].astype(bool))


def test_first_pattern_wins_ties_and_nan_is_dropped():
    w = jnp.ones((3, 3, 1, 1))
    mask = np.asarray(Pattern(PATS, axes=(0, 1)).mask(w))
    np.testing.assert_array_equal(mask[:, :, 0, 0], CROSS.astype(bool))
    w = w.at[1, 1, 0, 0].set(jnp.nan)
    assert not np.asarray(Pattern(PATS, axes=(0, 1)).mask(w))[1, 1, 0, 0]


@pytest.mark.parametrize("dtype", DTYPES)
def test_dtypes(dtype):
    w = jnp.asarray(np.random.default_rng(0).standard_normal((3, 3, 4, 4)), dtype)
    check_projection_laws(Pattern(PATS, axes=(0, 1), connectivity=0.5), w)


def test_wrong_pattern_size_is_an_error():
    with pytest.raises(
        ValueError,
        match=r"leaf 'conv/kernel' with shape \(5, 5, 2, 2\): axes \(0, 1\) have extent \(5, 5\) "
        r"but the patterns are \(3, 3\)",
    ):
        Pattern(PATS, axes=(0, 1)).mask(jnp.ones((5, 5, 2, 2)), "conv/kernel")
    with pytest.raises(ValueError, match="need 2 axes"):
        Pattern(PATS, axes=(0,))
    with pytest.raises(ValueError, match="only 0 and 1"):
        Pattern(PATS * 2, axes=(0, 1))
    with pytest.raises(ValueError, match="non-empty"):
        Pattern(np.zeros((0, 3, 3)), axes=(0, 1))
    with pytest.raises(ValueError, match="connectivity"):
        Pattern(PATS, axes=(0, 1), connectivity=1.2)


def test_ragged_and_empty_tile_patterns_are_clear_errors():
    """Numpy's "inhomogeneous shape" error, and a ZeroDivisionError at the first mask, before."""
    with pytest.raises(
        ValueError,
        match=r"Pattern: patterns must be a stack \(count, \*tile_shape\) of equally shaped tiles, "
        r"got the ragged \[\[\[1, 0\]\], \[\[1\]\]\]",
    ):
        Pattern([[[1, 0]], [[1]]], axes=(0, 1))
    with pytest.raises(
        ValueError, match=r"Pattern: patterns must have a tile shape without zero extents, got \(0, 3\)"
    ):
        Pattern(np.ones((2, 0, 3)), axes=(0, 1), tiles=True)


def test_repr_names_the_pattern_set():
    """Run fingerprints use reprs: two pattern sets used to print alike (only count and shape)."""
    c = Pattern(PATS, axes=(0, 1), connectivity=0.5)
    same = Pattern(PATS.astype(bool).tolist(), axes=[0, 1], connectivity=np.float32(0.5))
    assert c == same and repr(c) == repr(same)
    flipped = PATS.copy()
    flipped[0, 0, 0] = 1
    others = [
        Pattern(PATS[::-1], axes=(0, 1), connectivity=0.5),  # same set, other tie order
        Pattern(flipped, axes=(0, 1), connectivity=0.5),
        Pattern(PATS.reshape(5, 1, 9), axes=(0, 1), connectivity=0.5),  # same entries, other shape
    ]
    assert len({repr(p) for p in [c, *others]}) == 4
    assert repr(c).startswith("Pattern(5 patterns of (3, 3) sha256:") and "connectivity=0.5" in repr(c)


@given(
    hnp.arrays(bool, st.tuples(st.integers(1, 3), st.just(2), st.just(2))),
    hnp.arrays(bool, st.tuples(st.integers(1, 3), st.just(2), st.just(2))),
)
def test_equal_reprs_iff_equal_pattern_sets(p, q):
    a, b = Pattern(p, axes=(0, 1), tiles=True), Pattern(q, axes=(0, 1), tiles=True)
    assert (a == b) == (repr(a) == repr(b)) == (p.shape == q.shape and bool((p == q).all()))


def test_mining_finds_planted_patterns():
    rng = np.random.default_rng(0)
    planted = PATS[[0, 2]]
    choice = rng.integers(0, 2, 64)
    w = rng.uniform(0.5, 1.0, (64, 3, 3)) * planted[choice] + rng.uniform(0, 0.1, (64, 3, 3))
    w = np.moveaxis(w, 0, -1)[:, :, None, :]  # (3, 3, 1, 64)
    mined = mine_patterns(w, axes=(0, 1), tile_shape=(3, 3), nonzeros=4, count=3, always=((1, 1),))
    assert len(mined) == 2  # only two distinct masks occur
    assert {m.tobytes() for m in mined} == {p.astype(bool).tobytes() for p in planted}
    assert mined[0].sum() == 4 and all(m[1, 1] for m in mined)
    c = Pattern(mined, axes=(0, 1))
    expected = np.moveaxis(planted[choice], 0, -1)[:, :, None, :] > 0
    np.testing.assert_array_equal(np.asarray(c.mask(jnp.asarray(w, jnp.float32))), expected)


def test_mining_skips_all_zero_tiles():
    # 3 of 4 tiles are zero (block pruned): their top-2 would be the tie rule's first positions
    w = np.zeros((4, 4))
    w[2:, 2:] = [[0.1, 0.9], [0.8, 0.2]]
    mined = mine_patterns(w, axes=(0, 1), tile_shape=(2, 2), nonzeros=2, count=4)
    np.testing.assert_array_equal(mined, [[[False, True], [True, False]]])
    with pytest.raises(ValueError, match="is zero"):
        mine_patterns(np.zeros((4, 4)), (0, 1), (2, 2), nonzeros=2, count=1)


def test_mining_errors():
    with pytest.raises(ValueError, match="nonzeros"):
        mine_patterns(np.ones((3, 3)), (0, 1), (3, 3), nonzeros=10, count=2)
    with pytest.raises(ValueError, match="forced"):
        mine_patterns(np.ones((3, 3)), (0, 1), (3, 3), nonzeros=1, count=2, always=((0, 0), (1, 1)))


def test_groups_are_tiles():
    g = Pattern(PATS, axes=(0, 1)).groups((3, 3, 2, 2))
    assert g.count == 4 and (g.ids[:, :, 1, 0] == g.ids[0, 0, 1, 0]).all()

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from prunax.constraints import NM
from tests.constraints.helpers import DTYPES, brute_force_best, check_projection_laws, energy, stable_top_k

values = st.floats(-8, 8, width=32) | st.integers(-2, 2).map(float)


def _runs(support, n, m, axis):
    moved = np.moveaxis(support, axis, -1)
    counts = [moved[..., i : i + m].sum(-1) for i in range(0, moved.shape[-1], m)]
    return all((c <= n).all() for c in counts)


@given(
    hnp.arrays(np.float32, (4, 10), elements=values),
    st.sampled_from([(2, 4, 1), (1, 3, 0), (2, 4, 0), (3, 3, 1)]),
)
def test_laws_and_per_run_counts(w, nma):
    n, m, axis = nma
    c = NM(n, m, axis)
    mask = check_projection_laws(c, w)
    moved = np.moveaxis(mask, axis, -1)
    wm = np.moveaxis(np.abs(w), axis, -1)
    for line in range(moved.shape[0]):
        for start in range(0, moved.shape[1], m):  # ragged last run: a partial group
            run = slice(start, start + m)
            expected = stable_top_k(wm[line, run], n)
            np.testing.assert_array_equal(moved[line, run], expected)


@given(hnp.arrays(np.float32, (2, 5), elements=values))
def test_optimal_against_brute_force(w):
    c = NM(2, 3, axis=1)  # runs of 3 and a ragged run of 2
    best = brute_force_best(w, lambda s: _runs(s, 2, 3, 1))
    assert energy(w, np.asarray(c.mask(jnp.asarray(w)))) == pytest.approx(best, rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dtypes(dtype):
    w = jnp.asarray(np.random.default_rng(0).standard_normal((4, 8)), dtype)
    assert check_projection_laws(NM(2, 4, axis=1), w).sum() == 16


def test_nan_never_kept():
    w = jnp.asarray([[np.nan, np.nan, np.nan, 1.0]])
    np.testing.assert_array_equal(np.asarray(NM(2, 4, axis=1).mask(w)), [[False, False, False, True]])


@pytest.mark.parametrize(("n", "m"), [(5, 4), (1, 0), (-1, 4), (2.0, 4)])
def test_bad_n_m(n, m):
    with pytest.raises(ValueError, match="NM"):
        NM(n, m, axis=0)


def test_axis_out_of_range_and_scalars():
    with pytest.raises(ValueError, match=r"leaf 'w' with shape \(4, 4\): axis 2 is out of range"):
        NM(2, 4, axis=2).mask(jnp.ones((4, 4)), "w")
    with pytest.raises(ValueError, match="0-d"):
        NM(2, 4, axis=0).mask(jnp.asarray(1.0))
    assert NM(2, 4, axis=0).project(jnp.zeros((0, 3))).shape == (0, 3)


def test_groups_follow_runs():
    g = NM(2, 4, axis=1).groups((2, 6))
    assert g.count == 4
    np.testing.assert_array_equal(g.ids, [[0, 0, 0, 0, 1, 1], [2, 2, 2, 2, 3, 3]])
    g0 = NM(1, 2, axis=0).groups((3, 2))
    np.testing.assert_array_equal(g0.ids, [[0, 2], [0, 2], [1, 3]])

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from prunax.constraints import ColumnSign
from tests.constraints.helpers import DTYPES, check_projection_laws, energy

values = st.floats(-8, 8, width=32) | st.integers(-2, 2).map(float)


def _fragments(matrix, f):
    return [matrix[i : i + f] for i in range(0, matrix.shape[0], f)]


def _single_signed(matrix, f):
    return all(not ((fr > 0).any(0) & (fr < 0).any(0)).any() for fr in _fragments(matrix, f))


@given(hnp.arrays(np.float32, (2, 3, 5), elements=values), st.sampled_from([1, 2, 4, 8]))
def test_laws_and_polarity(w, f):
    c = ColumnSign(f, axis=1)  # rows: 2*3 = 6, columns: 5
    mask = check_projection_laws(c, w)
    projected = np.where(mask, w, 0).reshape(6, 5)
    assert _single_signed(projected, f)


@given(hnp.arrays(np.float32, (5, 2), elements=values))
def test_optimal_against_brute_force_over_sign_choices(w):
    """Every fragment chooses + or -; the best choice over all 2**(fragments*columns) is the oracle."""
    c = ColumnSign(2, axis=0)  # fragments of 2 rows: 3 per column (the last ragged)
    frag = np.arange(5) // 2
    best = 0.0
    for signs in itertools.product((1, -1), repeat=3 * 2):
        s = np.array(signs).reshape(3, 2)[frag]  # (5, 2) sign per entry's fragment
        best = max(best, energy(w, w * s > 0))
    assert energy(w, np.asarray(c.mask(jnp.asarray(w)))) == pytest.approx(best, rel=1e-6, abs=1e-6)


def test_ties_keep_the_positive_side_and_nan_is_dropped():
    w = jnp.asarray([[1.0], [-1.0], [np.nan], [2.0]])
    np.testing.assert_array_equal(
        np.asarray(ColumnSign(2, axis=0).mask(w)), [[True], [False], [False], [True]]
    )


def test_conv_kernel_rows_are_kh_kw_cin():
    w = jnp.asarray(np.random.default_rng(0).standard_normal((3, 3, 4, 6)), jnp.float32)
    projected = np.asarray(ColumnSign(8, axis=2).project(w)).reshape(36, 6)
    assert _single_signed(projected, 8)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dtypes(dtype):
    w = jnp.asarray(np.random.default_rng(1).standard_normal((16, 4)), dtype)
    check_projection_laws(ColumnSign(4, axis=0), w)


def test_errors():
    with pytest.raises(ValueError, match="fragment"):
        ColumnSign(0, axis=0)
    with pytest.raises(ValueError, match=r"leaf 'b' with shape \(4,\): a crossbar needs"):
        ColumnSign(4, axis=0).mask(jnp.ones(4), "b")
    with pytest.raises(ValueError, match="last axis"):
        ColumnSign(4, axis=1).mask(jnp.ones((4, 4)))
    with pytest.raises(ValueError, match="out of range"):
        ColumnSign(4, axis=3).mask(jnp.ones((4, 4)))
    assert ColumnSign(4, axis=0).project(jnp.zeros((0, 4))).shape == (0, 4)
    assert ColumnSign(4, axis=0).groups((4, 4)) is None


def test_denormals_have_a_sign():
    """Read from the bits (XLA:CPU compares denormals as 0, also under jit): a fragment holding a
    positive and a negative denormal is mixed, and its projection keeps one side."""
    denormal = float(np.finfo(np.float32).smallest_subnormal)
    w = jnp.asarray([[denormal], [-denormal], [0.0]], jnp.float32)
    c = ColumnSign(3, axis=0)
    assert not bool(c.is_feasible(w)) and not bool(jax.jit(c.is_feasible)(w))
    for mask in (c.mask(w), jax.jit(c.mask)(w)):
        np.testing.assert_array_equal(np.asarray(mask)[:, 0], [True, False, False])

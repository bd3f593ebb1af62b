import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from prunax.constraints import Unstructured, kept_count
from tests.constraints.helpers import DTYPES, brute_force_best, check_projection_laws, energy, stable_top_k

floats = st.floats(-8, 8, width=32)
ties = st.integers(-3, 3).map(float)


@given(hnp.arrays(np.float32, (6, 5), elements=floats | ties), st.sampled_from([0.0, 0.3, 0.5, 0.9, 0.99]))
def test_laws_exact_count_and_tie_rule(w, s):
    c = Unstructured(s)
    mask = check_projection_laws(c, w)
    assert mask.sum() == kept_count(w.size, s)
    np.testing.assert_array_equal(mask, stable_top_k(np.abs(w), kept_count(w.size, s)))


@given(hnp.arrays(np.float32, (2, 4), elements=floats | ties), st.sampled_from([0.25, 0.5, 0.75]))
def test_optimal_against_brute_force(w, s):
    c = Unstructured(s)
    k = kept_count(w.size, s)
    best = brute_force_best(w, lambda support: support.sum() <= k)
    assert energy(w, np.asarray(c.mask(jnp.asarray(w)))) == pytest.approx(best, rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dtypes(dtype):
    w = jnp.asarray(np.random.default_rng(0).standard_normal((8, 8)), dtype)
    mask = check_projection_laws(Unstructured(0.75), w)
    assert mask.sum() == 16
    assert Unstructured(0.75).project(w).dtype == dtype


def test_nan_is_pruned_and_inf_kept():
    w = jnp.asarray([np.nan, 1.0, -np.inf, 0.5, 2.0, np.nan])
    expected = [False, True, True, False, True, False]  # k = 3: inf, 2, 1
    np.testing.assert_array_equal(np.asarray(Unstructured(0.5).mask(w)), expected)
    assert not bool(Unstructured(0.5).is_feasible(w))  # NaN counts as a nonzero


def test_scalars_and_empty_leaves():
    assert Unstructured(0.5).project(jnp.asarray(3.0)) == 3.0  # n=1 keeps 1 - floor(0.5) = 1
    assert Unstructured(0.5).project(jnp.zeros((0, 4))).shape == (0, 4)
    assert bool(Unstructured(0.5).is_feasible(jnp.zeros((0,))))


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan"), "0.5"])
def test_bad_sparsity(bad):
    with pytest.raises(ValueError, match="sparsity"):
        Unstructured(bad)


def test_integer_leaf_is_an_error_naming_path_shape_and_constraint():
    with pytest.raises(
        ValueError,
        match=r"Unstructured\(sparsity=0.5\) on leaf 'dense/kernel' with shape \(3,\): dtype int32",
    ):
        Unstructured(0.5).mask(jnp.arange(3), "dense/kernel")


def test_groups_are_entries():
    g = Unstructured(0.5).groups((2, 3))
    assert g.count == 6 and sorted(g.ids.reshape(-1)) == list(range(6))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_denormals_count_as_nonzeros(dtype):
    """XLA:CPU compares denormals as 0, so `w != 0` called [0.5, denormal] feasible at k = 1."""
    denormal = float(np.finfo(np.dtype(dtype)).smallest_subnormal)
    w = jnp.asarray([0.5, denormal, 0.0, -0.0], dtype)
    for is_feasible in (Unstructured(0.75).is_feasible, jax.jit(Unstructured(0.75).is_feasible)):
        assert not bool(is_feasible(w))
    assert bool(Unstructured(0.5).is_feasible(w))

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from prunax.constraints import Block, kept_count
from tests.constraints.helpers import DTYPES, brute_force_best, check_projection_laws, energy, stable_top_k

values = st.floats(-8, 8, width=32) | st.integers(-2, 2).map(float)


def _block_energies(w, block, axes):
    """Reference block energies by explicit loops over the block grid."""
    grid = [-(-w.shape[a] // b) for a, b in zip(axes, block)]
    out = np.zeros(grid)
    for index in np.ndindex(*grid):
        sl = [slice(None)] * w.ndim
        for a, b, i in zip(axes, block, index):
            sl[a] = slice(i * b, (i + 1) * b)
        out[index] = np.sum(np.asarray(w, np.float64)[tuple(sl)] ** 2)
    return out


CASES = [((2, 2), (0, 1)), ((1,), (0,)), ((1,), (1,)), ((3, 2), (1, 0)), ((4,), (1,))]


@given(
    hnp.arrays(np.float32, (5, 7), elements=values), st.sampled_from(CASES), st.sampled_from([0.0, 0.5, 0.8])
)
def test_laws_and_kept_blocks(w, case, s):
    block, axes = case
    c = Block(block, s, axes)
    mask = check_projection_laws(c, w)
    energies = _block_energies(w, block, axes)
    keep = stable_top_k(energies, kept_count(energies.size, s))
    expected = np.asarray(c.expand(jnp.asarray(keep), w.shape))
    np.testing.assert_array_equal(mask, expected)
    assert _block_energies(mask, block, axes).astype(bool).sum() <= kept_count(energies.size, s)


@given(hnp.arrays(np.float32, (3, 4), elements=values))
def test_optimal_against_brute_force(w):
    c = Block((2, 2), 0.5, (0, 1))  # a 2x2 grid of tiles, the bottom row ragged
    best = brute_force_best(w, lambda s: (_block_energies(s, (2, 2), (0, 1)) > 0).sum() <= 2)
    assert energy(w, np.asarray(c.mask(jnp.asarray(w)))) == pytest.approx(best, rel=1e-6, abs=1e-6)


def test_filters_of_a_conv_kernel():
    w = jnp.asarray(np.random.default_rng(0).standard_normal((3, 3, 4, 8)), jnp.float32)
    mask = check_projection_laws(Block((1,), 0.75, axes=(3,)), w)
    filters = mask.reshape(-1, 8)
    assert (filters.all(0) | ~filters.any(0)).all() and filters.all(0).sum() == 2


@pytest.mark.parametrize("dtype", DTYPES)
def test_dtypes(dtype):
    w = jnp.asarray(np.random.default_rng(1).standard_normal((8, 8)) * 100, dtype)  # f16 squares overflow
    mask = check_projection_laws(Block((2, 2), 0.5, (0, 1)), w)
    assert mask.sum() == 32


def test_block_with_nan_is_never_kept():
    w = jnp.asarray([[np.nan, 1.0], [5.0, 5.0]])
    np.testing.assert_array_equal(np.asarray(Block((1,), 0.5, (0,)).mask(w)), [[False, False], [True, True]])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(shape=(0,), sparsity=0.5, axes=(0,)), "block shape"),
        (dict(shape=(-2, 2), sparsity=0.5, axes=(0, 1)), "block shape"),
        (dict(shape=(2,), sparsity=1.0, axes=(0,)), "sparsity"),
        (dict(shape=(2, 2), sparsity=0.5, axes=(0,)), "same length"),
    ],
)
def test_bad_configuration(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Block(**kwargs)


def test_axes_errors_name_the_leaf():
    with pytest.raises(ValueError, match=r"on leaf 'fc/kernel' with shape \(4, 4\): axis 5 is out of range"):
        Block((2,), 0.5, (5,)).project(jnp.ones((4, 4)), "fc/kernel")
    with pytest.raises(ValueError, match="repeat"):
        Block((2, 2), 0.5, (0, -2)).project(jnp.ones((4, 4)))
    assert Block((2,), 0.5, (0,)).project(jnp.zeros((0, 3))).shape == (0, 3)


def test_groups_match_the_hard_prune():
    c = Block((2, 2), 0.5, (0, 1))
    g = c.groups((3, 4))
    np.testing.assert_array_equal(g.ids, [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3]])
    w = jnp.asarray(np.random.default_rng(2).standard_normal((3, 4)), jnp.float32)
    norms = np.asarray(g.norms(w))
    np.testing.assert_allclose(norms**2, _block_energies(w, (2, 2), (0, 1)).reshape(-1), rtol=1e-5)


def test_denormals_count_and_empty_leaves_score():
    denormal = float(np.finfo(np.float32).smallest_subnormal)
    w = jnp.asarray([[1.0, 0.0], [0.0, denormal]])
    assert not bool(Block((1,), 0.5, (0,)).is_feasible(w))  # both rows hold a nonzero
    assert Block((2,), 0.5, (0,)).scores(jnp.zeros((0, 3))).shape == (0,)

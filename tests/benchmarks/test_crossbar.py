"""The FORMS crossbar cost model: the worked example of docs/benchmarks.md, "FORMS crossbar cost",
brute-force cycle counts, zero polarity violations after the ColumnSign projection, and clear
errors."""

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prunax import constraints as C
from prunax.benchmarks.hardware import crossbar as cb


def _worked_example():
    """3×3×64×128, half the filters and half the matrix rows pruned; ReLU(N(−0.3, 1)) inputs."""
    rng = np.random.default_rng(0)
    kernel = rng.standard_normal((3, 3, 64, 128))
    kernel[..., rng.permutation(128)[:64]] = 0
    matrix = kernel.reshape(576, 128)
    matrix[rng.permutation(576)[:288]] = 0
    return matrix.reshape(3, 3, 64, 128), np.maximum(rng.normal(-0.3, 1, (256, 576)), 0)


def test_the_reference_worked_example():
    kernel, inputs = _worked_example()
    cost = cb.layer_cost(kernel, inputs)
    assert (cost["rows"], cost["columns"]) == (288, 64)
    assert cost["crossbars_FORMS"] == cost["crossbars_ISAAC"] == 6 and cost["crossbars_PRIME"] == 12
    assert cost["dense_crossbars_FORMS"] == 20 and cb.crossbars(576, 128, cb.Hardware(), "PRIME") == 40
    assert cost["sign_bits"] == 288 // 8 * 64
    expected = {"bitplane": [2.21, 1.49, 1.20, 1.11, 1.05], "leading-zero": [1.56, 1.26, 1.15, 1.10, 1.05]}
    for mode, speedups in expected.items():
        got = [
            cb.layer_cost(kernel, inputs, cb.Hardware(fragment=f), mode)["speedup"]
            for f in (4, 8, 16, 32, 128)
        ]
        np.testing.assert_allclose(got, speedups, atol=0.006)


def _cycles_loop(levels, fragment, mode):
    out = np.zeros((levels.shape[0], -(-levels.shape[1] // fragment)), int)
    for w in range(levels.shape[0]):
        for g in range(out.shape[1]):
            values = [int(v) for v in levels[w, g * fragment : (g + 1) * fragment]]
            if mode == "bitplane":
                out[w, g] = sum(any(v >> b & 1 for v in values) for b in range(32))
            else:
                out[w, g] = max(values).bit_length()
    return out


@settings(max_examples=30)
@given(
    seed=st.integers(0, 2**31 - 1),
    fragment=st.sampled_from([1, 2, 3, 4, 8]),
    mode=st.sampled_from(cb.SKIPPING),
)
def test_fragment_cycles_match_a_loop(seed, fragment, mode):
    rng = np.random.default_rng(seed)
    levels = rng.integers(0, 256, (5, 13)) * (rng.random((5, 13)) < 0.5)
    np.testing.assert_array_equal(
        cb.fragment_cycles(levels, fragment, mode), _cycles_loop(levels, fragment, mode)
    )


@pytest.mark.parametrize("fragment", [4, 8, 16])
def test_no_polarity_violations_after_the_column_sign_projection(fragment):
    rng = np.random.default_rng(fragment)
    kernel = jnp.asarray(rng.standard_normal((3, 3, 16, 32)), jnp.float32)
    assert cb.layer_cost(np.asarray(kernel), hw=cb.Hardware(fragment=fragment))["violations"] > 0
    projected = (C.Unstructured(0.5) & C.ColumnSign(fragment, axis=2)).project(kernel)
    assert cb.layer_cost(np.asarray(projected), hw=cb.Hardware(fragment=fragment))["violations"] == 0


def test_all_zero_rows_and_columns_are_dropped_and_skipping_costs_nothing_for_zero_inputs():
    matrix = np.zeros((300, 40))
    matrix[:130, :10] = 1.0
    cost = cb.layer_cost(matrix, np.zeros((4, 300)))
    assert (cost["rows"], cost["columns"], cost["crossbars_FORMS"]) == (130, 10, 2 * 1)
    assert cost["ops_executed"] == 0 and cost["skipped_fraction"] == 1.0
    assert cb.layer_cost(np.zeros((8, 8)))["crossbars_PRIME"] == 0


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="fragment 12 must divide the crossbar rows 128"):
        cb.Hardware(fragment=12)
    with pytest.raises(ValueError, match="positive integers"):
        cb.Hardware(cell_bits=0)
    with pytest.raises(ValueError, match="Dense .* or conv"):
        cb.layer_matrix(np.zeros((3, 3, 3)))
    with pytest.raises(ValueError, match="non-negative"):
        cb.layer_cost(np.ones((4, 2)), -np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"\(windows, 4\)"):
        cb.layer_cost(np.ones((4, 2)), np.ones((3, 5)))
    with pytest.raises(ValueError, match="design"):
        cb.crossbars(4, 4, cb.Hardware(), "RRAM")
    with pytest.raises(ValueError, match="mode"):
        cb.fragment_cycles(np.ones((1, 4), int), 2, "lzc")

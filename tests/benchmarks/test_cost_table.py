"""The per-layer cost table: the block-sparse kernel computes the pruned product, FLOP counts,
and latency tables of the right shape (no wall-time assertions)."""

import jax.numpy as jnp
import numpy as np
import pytest

from prunax import constraints as C
from prunax.benchmarks.hardware import cost_table as ct


@pytest.mark.parametrize("sparsity", [0.25, 0.5, 0.9])
def test_block_sparse_matmul_equals_the_masked_dense_product(sparsity):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 96)).astype(np.float32)
    x = rng.standard_normal((10, 64)).astype(np.float32)
    blocks, rows, cols = ct.kept_blocks(w, 16, sparsity)
    assert len(blocks) == C.Block((16, 16), sparsity, axes=(0, 1)).kept((64, 96))
    got = ct.block_sparse_matmul(jnp.asarray(x), jnp.asarray(blocks), jnp.asarray(rows), jnp.asarray(cols), 6)
    pruned = np.asarray(C.Block((16, 16), sparsity, axes=(0, 1)).project(jnp.asarray(w)))
    np.testing.assert_allclose(np.asarray(got), x @ pruned, atol=1e-4)


def test_flops_and_latency_tables():
    assert ct.conv_flops((3, 3, 16, 32), (8, 8)) == 2 * 9 * 16 * 32 * 64
    rng = np.random.default_rng(1)
    times = ct.filter_latency(
        rng.standard_normal((2, 8, 8, 4)), rng.standard_normal((3, 3, 4, 8)), (1, 1), (0.0, 0.5), repeats=2
    )
    assert times.shape == (2,) and np.all(times > 0)
    times = ct.block_latency(rng.standard_normal((32, 32)), 8, 16, (0.0, 0.5), repeats=2)
    assert times.shape == (2,) and np.all(times > 0)
    with pytest.raises(ValueError, match="divide by 16"):
        ct.block_latency(np.ones((30, 32)), 8, 16, (0.0,))

"""Per-layer cost table (the compiler-aware idea of CANAO): parameters and FLOPs analytically, and
the measured latency of each layer's jitted forward on this machine, dense and pruned.

What "pruned" runs is the structure's real kernel: a conv pruned by whole filters is a smaller
dense conv (cout·(1 − s) filters); a Dense kernel pruned by b×b blocks is a block-sparse matmul
that multiplies only the kept blocks (gathered input blocks × kept blocks, scattered into the
output blocks). Latency is the median of ``repeats`` timed calls after a warm-up (compile) call.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from prunax.constraints import Block

from ..harness import median_ms


def _seconds(fn, *args, repeats: int) -> float:
    """Median wall seconds of ``fn(*args)`` after one warm-up (compile) call."""
    (ms,), _ = median_ms(partial(fn, *args), repeats=repeats)
    return ms / 1e3


def conv_flops(kernel_shape, output_hw) -> int:
    """Multiply-adds × 2 of one example through a conv: 2·kh·kw·cin·cout·H_out·W_out."""
    kh, kw, cin, cout = kernel_shape
    return 2 * kh * kw * cin * cout * int(np.prod(output_hw))


def filter_latency(x, kernel, strides, grid, repeats: int = 20) -> np.ndarray:
    """Seconds of the jitted 'SAME' conv of input ``x`` keeping ⌈cout·(1 − s)⌉ filters, per s."""
    conv = jax.jit(
        lambda x, k: jax.lax.conv_general_dilated(
            x, k, strides, "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
    )
    cout = kernel.shape[-1]
    out = []
    for s in grid:
        kept = max(int(np.ceil(cout * (1 - s) - 1e-9)), 1)
        out.append(_seconds(conv, jnp.asarray(x), jnp.asarray(kernel[..., :kept]), repeats=repeats))
    return np.asarray(out)


def block_sparse_matmul(x, blocks, rows, cols, out_blocks: int):
    """x (T, in) @ W for W given by its kept b×b ``blocks`` (k, b, b) at block rows/cols (k,):
    gather x's row blocks, multiply each by its block, add into the output column blocks."""
    b = blocks.shape[-1]
    tokens = x.shape[0]
    pieces = jnp.einsum("tkr,krc->tkc", x.reshape(tokens, -1, b)[:, rows], blocks)
    return jnp.zeros((tokens, out_blocks, b), x.dtype).at[:, cols].add(pieces).reshape(tokens, -1)


def kept_blocks(w: np.ndarray, block: int, sparsity: float):
    """The kept (blocks, block rows, block cols) of ``Block((b, b), sparsity)`` on a Dense kernel."""
    w = np.asarray(w)
    mask = np.asarray(Block((block, block), sparsity, axes=(0, 1)).mask(jnp.asarray(w)))
    grid = (w.shape[0] // block, w.shape[1] // block)
    tiles = w.reshape(grid[0], block, grid[1], block).transpose(0, 2, 1, 3)
    alive = mask.reshape(grid[0], block, grid[1], block).any(axis=(1, 3))
    rows, cols = np.nonzero(alive)
    return tiles[rows, cols], rows, cols


def block_latency(w, tokens: int, block: int, grid, repeats: int = 20, seed: int = 0) -> np.ndarray:
    """Seconds of the jitted block-sparse matmul of ``tokens`` random rows with ``w`` pruned to
    ``Block((b, b), s)``, per s (s = 0: the dense matmul)."""
    w = np.asarray(w, np.float32)
    if w.ndim != 2 or w.shape[0] % block or w.shape[1] % block:
        raise ValueError(f"block latency needs a Dense kernel whose sides divide by {block}, got {w.shape}")
    x = jax.random.normal(jax.random.key(seed), (tokens, w.shape[0]))
    dense = jax.jit(jnp.matmul)
    sparse = jax.jit(block_sparse_matmul, static_argnums=4)
    out = []
    for s in grid:
        if s == 0:
            out.append(_seconds(dense, x, jnp.asarray(w), repeats=repeats))
            continue
        blocks, rows, cols = kept_blocks(w, block, s)
        args = (x, jnp.asarray(blocks), jnp.asarray(rows), jnp.asarray(cols), w.shape[1] // block)
        out.append(_seconds(sparse, *args, repeats=repeats))
    return np.asarray(out)


def column_latency(w, tokens: int, grid, repeats: int = 20, seed: int = 0) -> np.ndarray:
    """Seconds of the jitted matmul of ``tokens`` random rows with a Dense kernel keeping
    ⌈out·(1 − s)⌉ output columns (pruned columns are a narrower dense matmul), per s."""
    w = np.asarray(w, np.float32)
    x = jax.random.normal(jax.random.key(seed), (tokens, w.shape[0]))
    matmul = jax.jit(jnp.matmul)
    out = []
    for s in grid:
        kept = max(int(np.ceil(w.shape[1] * (1 - s) - 1e-9)), 1)
        out.append(_seconds(matmul, x, jnp.asarray(w[:, :kept]), repeats=repeats))
    return np.asarray(out)

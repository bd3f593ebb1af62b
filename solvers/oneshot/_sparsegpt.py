"""SparseGPT (Frantar & Alistarh, ICML 2023): an optimal-brain-surgeon sweep over the input columns
(docs/oneshot.md, "SparseGPT").

In the layout of the paper (W: outputs × inputs, so W = kernelᵀ) with U the upper Cholesky factor
of the damped H⁻¹, columns are visited in blocks of B. For column i of a block, q is w_i with its
pruned entries zeroed, err = (w_i − q)/U_ii, and the block's later columns take W_{:,i:} −= err ·
U_{i,i:}; after the block, the accumulated errors reach every later column through U_{block, later}.
The mask is chosen lazily by the saliency w²/U_ii²:

* ``Unstructured(s)``: per block (as the paper), the floor(s·rows·B) smallest saliencies of the
  block's current weights; a final projection makes the leaf's count exact (the per-block floors
  can leave a few more than n − floor(s·n));
* ``NM(n, m)`` along the kernel's input axis (m dividing B and the input width): at every m-th
  column of a block, each output keeps its n largest saliencies of the next m columns (ties: the
  lower column, as ``NM``);
* every other constraint: the mask is the constraint's projection of the saliencies before the
  sweep (W scaled by 1/U_ii per input, so sign rules see W's signs), then the same sweep with that
  mask, then the constraint's projection (which leaves a feasible result unchanged; for polarity it
  removes entries whose sign the updates flipped).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

from prunax.constraints import NM, Constraint, Unstructured, kept_count, top_k_mask

from ._calibration import Gram, as_matrix, damped


def inverse_cholesky(h: jax.Array) -> jax.Array:
    """The upper Cholesky factor U of H⁻¹ (H⁻¹ = UᵀU)."""
    lower = jnp.linalg.cholesky(h)
    eye = jnp.eye(h.shape[0], dtype=h.dtype)
    inverse_lower = jax.scipy.linalg.solve_triangular(lower, eye, lower=True)
    inverse = inverse_lower.T @ inverse_lower
    return jnp.linalg.cholesky(inverse).T


def _keep_top_per_row(scores: jax.Array, n: int) -> jax.Array:
    """Per row the n largest scores, ties to the lower column."""
    a, b = scores[:, :, None], scores[:, None, :]
    position = jnp.arange(scores.shape[1])
    earlier = position[None, :] < position[:, None]
    rank = jnp.sum((b > a) | ((b == a) & earlier), axis=-1)
    return rank < n


@partial(jax.jit, static_argnames=("block", "mode", "sparsity", "n", "m"))
def _sweep(weights, u, fixed_keep, *, block: int, mode: str, sparsity: float, n: int, m: int):
    """The column sweep on W (outputs, inputs); ``mode`` is "unstructured" (each block keeps
    ``kept_count(rows·B, sparsity)``), "nm" (n of every m) or "fixed" (``fixed_keep`` is the mask)."""
    rows, columns = weights.shape
    for start in range(0, columns, block):
        stop = min(start + block, columns)
        count = stop - start
        w1 = weights[:, start:stop]
        u1 = u[start:stop, start:stop]
        diag = jnp.diag(u1)
        if mode == "unstructured":
            saliency = jnp.square(w1) / jnp.square(diag)[None, :]
            keep1 = top_k_mask(saliency, kept_count(rows * count, sparsity))
        else:
            keep1 = fixed_keep[:, start:stop]

        def column(i, carry, diag=diag, u1=u1):
            w1, q1, err1, keep1 = carry
            if mode == "nm":
                group = lax.dynamic_slice_in_dim(w1, i, m, axis=1)
                group_diag = lax.dynamic_slice_in_dim(diag, i, m)
                chosen = _keep_top_per_row(jnp.square(group) / jnp.square(group_diag)[None, :], n)
                updated = lax.dynamic_update_slice_in_dim(keep1, chosen, i, axis=1)
                keep1 = jnp.where(i % m == 0, updated, keep1)
            w = w1[:, i]
            q = jnp.where(keep1[:, i], w, 0)
            err = (w - q) / diag[i]
            w1 = w1 - err[:, None] * u1[i][None, :]  # u1 is upper triangular: columns < i unchanged
            return w1, q1.at[:, i].set(q), err1.at[:, i].set(err), keep1

        zeros = jnp.zeros_like(w1)
        _, q1, err1, _ = lax.fori_loop(0, count, column, (w1, zeros, zeros, keep1))
        weights = weights.at[:, start:stop].set(q1)
        weights = weights.at[:, stop:].add(-err1 @ u[start:stop, stop:])
    return weights


def prepared(w, gram: Gram, path: str, damping: float):
    """(the (outputs, inputs) weights, U) of the sweep: inputs never active (H_jj = 0) have their
    weights dropped and a unit diagonal in the damped H, so that its Cholesky factor exists."""
    matrix = as_matrix(w, gram, path).astype(jnp.float32)
    h = damped(gram, damping, path)
    dead = jnp.diag(gram.matrix) == 0  # inputs never active: their weights do not matter, drop them
    h = jnp.where(jnp.diag(dead), 1.0, h)
    return jnp.where(dead[None, :], 0.0, matrix.T), inverse_cholesky(h)


def saliency(weights, u, shape) -> jax.Array:
    """W scaled by 1/U_jj per input j, in the kernel's ``shape``: its squares are the saliencies
    w²/U_jj² and its signs W's."""
    return (weights / jnp.diag(u)[None, :]).T.reshape(shape)


def sweep_with_mask(weights, u, keep, block: int) -> jax.Array:
    """The sweep with a fixed (outputs, inputs) ``keep`` mask."""
    return _sweep(weights, u, keep, block=block, mode="fixed", sparsity=0.0, n=0, m=1)


def check_block(path: str, block) -> None:
    if not (isinstance(block, int) and block >= 1):
        raise ValueError(f"layer {path!r}: sparsegpt block must be an int >= 1, got {block!r}")


def sparsegpt(
    w,
    gram: Gram,
    constraint: Constraint,
    path: str = "<layer>",
    damping: float = 0.01,
    block: int = 128,
) -> jax.Array:
    """SparseGPT's pruned kernel for any constraint (see the module docstring), same dtype as ``w``."""
    w = jnp.asarray(w)
    as_matrix(w, gram, path)
    constraint.check(w.shape, w.dtype, path)
    check_block(path, block)
    weights, u = prepared(w, gram, path, damping)
    native_nm = (
        isinstance(constraint, NM)
        and constraint.axis % w.ndim == w.ndim - 2
        and block % constraint.m == 0
        and w.shape[-2] % constraint.m == 0
    )
    if isinstance(constraint, Unstructured):
        swept = _sweep(
            weights, u, None, block=block, mode="unstructured", sparsity=constraint.sparsity, n=0, m=1
        )
    elif native_nm:
        fixed = jnp.zeros_like(weights, bool)
        swept = _sweep(
            weights, u, fixed, block=block, mode="nm", sparsity=0.0, n=constraint.n, m=constraint.m
        )
    else:
        fixed = constraint.mask(saliency(weights, u, w.shape), path).reshape(weights.shape[1], -1).T
        swept = sweep_with_mask(weights, u, fixed, block)
    return constraint.project(swept.T.reshape(w.shape).astype(w.dtype), path)

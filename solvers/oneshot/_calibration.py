"""The layer problem of one-shot pruning: min over Ŵ in a set of ||X W − X Ŵ||²_F, seen through the
Gram matrix H = XᵀX of the layer's calibration inputs (docs/oneshot.md, "The layer problem").

H is accumulated batch by batch (never the concatenated activations): every row of a batch
``(..., d)`` is one input vector of the layer (a token, or an im2col patch of a convolution).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Gram(NamedTuple):
    """H = Σ xᵀx over the calibration rows seen so far (float32, (d, d)) and their number."""

    matrix: jax.Array
    rows: int

    @property
    def width(self) -> int:
        return int(self.matrix.shape[0])


@jax.jit
def _add_rows(matrix, x):
    x = x.reshape(-1, x.shape[-1]).astype(jnp.float32)
    return matrix + x.T @ x


def empty_gram(width: int) -> Gram:
    """The Gram matrix of no rows, for inputs of ``width`` features."""
    if not (isinstance(width, (int, np.integer)) and width >= 1):
        raise ValueError(f"empty_gram: width must be an int >= 1, got {width!r}")
    return Gram(jnp.zeros((int(width), int(width)), jnp.float32), 0)


def accumulate(gram: Gram, x, path: str = "<layer>") -> Gram:
    """``gram`` plus the rows of ``x``, an array (..., width) of the layer's inputs."""
    shape = np.shape(x)
    if len(shape) == 0 or shape[-1] != gram.width:
        raise ValueError(
            f"layer {path!r}: calibration batch of shape {tuple(shape)} has {shape[-1] if shape else 0} "
            f"input features, the layer takes {gram.width} (the kernel's input width)"
        )
    rows = int(np.prod(shape[:-1], dtype=np.int64))
    return Gram(_add_rows(gram.matrix, jnp.asarray(x)), gram.rows + rows)


def gram(batches, width: int, path: str = "<layer>") -> Gram:
    """H of every row of every batch in ``batches`` (an iterable of (..., width) arrays)."""
    total = empty_gram(width)
    for x in batches:
        total = accumulate(total, x, path)
    if total.rows == 0:
        raise ValueError(f"layer {path!r}: no calibration data (the batches held no rows)")
    return total


def damped(gram: Gram, damping: float, path: str = "<layer>") -> jax.Array:
    """H + λI with λ = damping · mean(diag H) (SparseGPT and ALPS use damping 0.01), so that the
    layer problem is strictly convex even where inputs are collinear or never active."""
    if not (isinstance(damping, (int, float, np.floating)) and np.isfinite(damping) and damping >= 0):
        raise ValueError(f"layer {path!r}: damping must be a finite number >= 0, got {damping!r}")
    if gram.rows == 0:
        raise ValueError(f"layer {path!r}: no calibration data (the Gram matrix holds no rows)")
    h = gram.matrix
    scale = jnp.mean(jnp.diag(h))
    return h + (damping * jnp.where(scale > 0, scale, 1.0)) * jnp.eye(gram.width, dtype=h.dtype)


def conv_patches(x, kernel_size, strides=1, padding="SAME", input_dilation=1, kernel_dilation=1):
    """The im2col patches of a channels-last convolution's input ``x`` (batch, *spatial, cin):
    one row (..., kh·kw·cin) per output position, ordered (kh, kw, cin) like the kernel's axes, so
    that patches @ kernel.reshape(-1, cout) is the convolution. ``padding`` is "SAME",
    "VALID" or explicit (low, high) pairs per spatial axis, as ``lax.conv_general_dilated`` takes."""
    n = len(kernel_size)
    x = jnp.asarray(x)

    def per_axis(v):
        return (v,) * n if isinstance(v, int) else tuple(v)

    layout = "N" + "HWD"[:n] if n <= 3 else None
    if layout is None:
        raise ValueError(f"conv_patches: {n} spatial axes; 1 to 3 are supported")
    spec = (layout + "C", layout[1:] + "IO", layout + "C")
    patches = jax.lax.conv_general_dilated_patches(
        x,
        tuple(kernel_size),
        per_axis(strides),
        padding,
        lhs_dilation=per_axis(input_dilation),
        rhs_dilation=per_axis(kernel_dilation),
        dimension_numbers=spec,
    )
    cin = x.shape[-1]
    grid = patches.shape[:-1]  # the patches' features come ordered (cin, *kernel_size)
    patches = patches.reshape(*grid, cin, int(np.prod(kernel_size)))
    return jnp.swapaxes(patches, -1, -2).reshape(*grid, -1)


def as_matrix(w, gram: Gram, path: str) -> jax.Array:
    """The kernel as the (inputs, outputs) matrix X multiplies: a Dense kernel (in, out) itself, a
    conv kernel (kh, kw, cin, cout) as (kh·kw·cin, cout), matching im2col patches in that order."""
    w = jnp.asarray(w)
    if w.ndim < 2:
        raise ValueError(f"layer {path!r}: kernel of shape {w.shape} needs input and output axes")
    if not jnp.issubdtype(w.dtype, jnp.floating):
        raise ValueError(f"layer {path!r}: kernel of shape {w.shape} has dtype {w.dtype}, not a float type")
    matrix = w.reshape(-1, w.shape[-1])
    if matrix.shape[0] != gram.width:
        raise ValueError(
            f"layer {path!r}: kernel of shape {w.shape} takes {matrix.shape[0]} inputs, the calibration "
            f"Gram matrix is {gram.width} x {gram.width}"
        )
    return matrix


def reconstruction_error(w, w_hat, gram: Gram) -> float:
    """||X(W − Ŵ)||_F / ||X W||_F from H (undamped): the relative output error of the layer."""
    matrix = as_matrix(w, gram, "<layer>").astype(jnp.float32)
    delta = matrix - as_matrix(w_hat, gram, "<layer>").astype(jnp.float32)
    h = gram.matrix
    num = jnp.sum(delta * (h @ delta))
    den = jnp.sum(matrix * (h @ matrix))
    return float(jnp.sqrt(jnp.maximum(num, 0) / jnp.maximum(den, jnp.finfo(jnp.float32).tiny)))

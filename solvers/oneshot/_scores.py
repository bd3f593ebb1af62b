"""Mask-only one-shot pruning: magnitude and Wanda (Sun et al., ICLR 2024) choose the support and
keep the surviving weights as they are (docs/oneshot.md, "Magnitude and Wanda")."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from prunax.constraints import Constraint, Unstructured, top_k_mask

from ._calibration import Gram, as_matrix


def magnitude(w, gram: Gram, constraint: Constraint, path: str = "<layer>") -> jax.Array:
    """The constraint's projection of W itself (``gram`` only checks the layer's width)."""
    as_matrix(w, gram, path)
    return constraint.project(jnp.asarray(w), path)


def input_scaled(w, gram: Gram, path: str) -> jax.Array:
    """W with input row j scaled by ||X_j||₂ = sqrt(H_jj): |entries| are Wanda's scores, and the
    signs are W's, so sign rules (polarity) see the same side energies, weighted by the inputs."""
    matrix = as_matrix(w, gram, path).astype(jnp.float32)
    norms = jnp.sqrt(jnp.maximum(jnp.diag(gram.matrix), 0))
    return (matrix * norms[:, None]).reshape(jnp.shape(w))


def wanda(w, gram: Gram, constraint: Constraint, path: str = "<layer>", per_output: bool = True) -> jax.Array:
    """Wanda: scores S_ij = |W_ij|·||X_j||₂, pruned by the constraint's own projection of them.

    For ``Unstructured`` with ``per_output`` (the paper's choice), every output (column of the
    (inputs, outputs) matrix) first keeps its own n − floor(s·n) largest scores; the constraint's
    projection of those kept scores then makes the whole leaf feasible (it drops at most a few
    more where the per-output counts sum above the leaf's count). N:M runs along the inputs are
    per output by construction; blocks, patterns and polarity rank the scores as the family does.
    """
    scaled = input_scaled(w, gram, path)
    if isinstance(constraint, Unstructured) and per_output:
        matrix = scaled.reshape(-1, scaled.shape[-1])
        keep = constraint.kept((matrix.shape[0],))
        per_column = jax.vmap(lambda s: top_k_mask(s, keep, magnitude=True), in_axes=1, out_axes=1)(matrix)
        scaled = jnp.where(per_column, matrix, 0).reshape(scaled.shape)
        mask = constraint.mask(scaled, path) & per_column.reshape(scaled.shape)
    else:
        mask = constraint.mask(scaled, path)
    w = jnp.asarray(w)
    return jnp.where(mask, w, jnp.zeros((), w.dtype))

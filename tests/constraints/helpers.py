"""Shared checks and brute-force oracles for the constraint tests."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np

DTYPES = (jnp.float16, jnp.bfloat16, jnp.float32)


def stable_top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Reference kept set: stable sort by (score desc, flat index asc) of any real scores; NaN
    lowest (numpy sorts it last) and never kept; scores with |score| <= 2**-100 tie with 0."""
    flat = np.asarray(scores, np.float64).reshape(-1)
    key = np.where(np.abs(flat) <= 2.0**-100, 0.0, flat)
    keep = np.zeros(flat.size, bool)
    keep[np.argsort(-key, kind="stable")[: max(k, 0)]] = True
    return (keep & ~np.isnan(flat)).reshape(np.shape(scores))


def energy(w, mask) -> float:
    w = np.asarray(w, np.float64)
    return float(np.sum(np.where(mask, w, 0.0) ** 2))


def check_projection_laws(constraint, w) -> np.ndarray:
    """Feasible, idempotent, == masking, jit == no-jit; returns the mask (numpy)."""
    w = jnp.asarray(w)
    mask = constraint.mask(w)
    projected = constraint.project(w)
    assert mask.shape == w.shape and mask.dtype == jnp.bool_
    np.testing.assert_array_equal(np.asarray(projected), np.asarray(jnp.where(mask, w, 0)))
    assert bool(constraint.is_feasible(projected)), f"{constraint!r}: projection infeasible"
    again = constraint.project(projected)
    np.testing.assert_array_equal(np.asarray(again), np.asarray(projected))  # feasible => fixed
    jitted = jax.jit(constraint.mask)(w)
    np.testing.assert_array_equal(np.asarray(jitted), np.asarray(mask))
    return np.asarray(mask)


def all_supports(size: int) -> np.ndarray:
    """Every boolean mask over ``size`` entries, as rows of a (2**size, size) array."""
    return np.array(list(itertools.product((False, True), repeat=size)), bool)


def brute_force_best(w, feasible_support) -> float:
    """Largest kept energy over all supports ``s`` (flat bool rows) with ``feasible_support(s)``:
    the oracle the exact projections are checked against on tiny arrays."""
    w = np.asarray(w, np.float64)
    supports = all_supports(w.size)
    ok = np.array([feasible_support(s.reshape(w.shape)) for s in supports])
    energies = supports.astype(np.float64) @ (w.reshape(-1) ** 2)
    return float(energies[ok].max())

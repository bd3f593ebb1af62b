"""The W = Z splitting that ADMM and SLR share: min f(W) + g(Z) s.t. W = Z, g the indicator of
the spec's set, trained through the scaled penalty (ρ/2)‖W − Z + U‖² (docs/solvers.md, "Splitting")."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from prunax.constraints import Spec

from ._leaves import Layout, all_finite, relative, square_norm


def project_pick(spec: Spec, layout: Layout, params, values: list) -> list:
    """Π applied to ``params`` with its constrained leaves replaced by ``values``."""
    return layout.pick(spec.project(layout.replace(params, values)))


def residuals(w: list, z: list) -> tuple[list, jax.Array]:
    """Per-leaf ‖W − Z‖/‖W‖ and the same over all constrained leaves."""
    diff = [square_norm(a - b) for a, b in zip(w, z)]
    norm = [square_norm(a) for a in w]
    return [relative(d, n) for d, n in zip(diff, norm)], relative(sum(diff), sum(norm))


def diagnostics(w: list, z_new: list, z: list) -> tuple[list, jax.Array, jax.Array]:
    """After a Z-update: per-leaf and total ‖W − Z⁺‖/‖W‖, and ‖Z⁺ − Z‖."""
    residual, total = residuals(w, z_new)
    return residual, total, jnp.sqrt(sum(square_norm(a - b) for a, b in zip(z_new, z)))


def penalty_gradient(g: list, w: list, z: list, u: list, rho) -> list:
    """g + ρ(W − Z + U): the loss gradient plus that of (ρ/2)‖W − Z + U‖²."""
    return [gi + jnp.asarray(rho).astype(gi.dtype) * (a - c + b) for gi, a, b, c in zip(g, w, u, z)]


def weights_finite(run: jax.Array, w: list) -> jax.Array:
    """Whether W is finite, read only on steps that will use it (``run``); True otherwise."""
    return lax.cond(run, lambda: all_finite(w), lambda: jnp.asarray(True))

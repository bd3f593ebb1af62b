"""The W = Z splitting that ADMM and SLR share: min f(W) + g(Z) s.t. W = Z, g the indicator of
the spec's set, trained through the scaled penalty (ρ/2)‖W − Z + U‖² (docs/solvers.md, "Splitting").

Two ways to take the W-step (docs/solvers.md, "Coupled and decoupled W-steps"):

* **coupled** (first link of a chain): the optimizer after it sees g + ρ(W − Z + U);
* **decoupled** (``decoupled``, wrapping an inner optimizer): the inner optimizer sees the raw
  loss gradient g and proposes a step δ; on the constrained leaves the step becomes
  δ − γ_j (W − Z + U), a fraction γ_j of the way to Z − U, as AdamW decouples weight decay from
  Adam. Adam normalises a coupled penalty to at most ≈ lr per coordinate and step whatever ρ is;
  the decoupled pull is not normalised, so W reaches the set.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

from prunax.constraints import Spec

from ._leaves import Layout, all_finite, check_range, relative, square_norm
from ._schedules import geometric

PULL_START = 0.03  # γ₀: the first Z-updates barely move W off the loss's path
PULL_END = 1.0  # γ_K: W = Z − U (plus the optimizer's step) at the end of the solve


class DecoupledState(NamedTuple):
    inner: Any  # the wrapped optimizer's state
    solver: Any  # ADMMState or SLRState


def pull_schedule(updates: int, start: float = PULL_START, end: float = PULL_END):
    """γ_j = min(end, start·q^j), q = (end/start)^(1/updates): the decoupled pull after j Z-updates,
    growing geometrically from ``start`` to ``end`` over the ``updates`` Z-updates of the solve
    budget, so that W − Z has closed by its end. A schedule of j (not of the step count)."""
    if not (isinstance(updates, int) and not isinstance(updates, bool) and updates >= 1):
        raise ValueError(
            f"pull_schedule: updates must be an int >= 1 (Z-updates in the budget), got {updates!r}"
        )
    check_range("pull_schedule", "start", start, low=0, high=1, high_open=False)
    check_range("pull_schedule", "end", end, low=start, high=1, low_open=False, high_open=False)
    return geometric(start, (end / start) ** (1.0 / updates), 1, maximum=end)


def resolve_pull(solver: str, updates, pull):
    """The pull schedule of a decoupled solver: ``pull`` (a number or a schedule of j), or
    ``pull_schedule(updates)``; exactly one of the two."""
    if (updates is None) == (pull is None):
        raise ValueError(
            f"{solver}: the decoupled form (inner=...) needs exactly one of updates= (the Z-updates in the "
            f"solve budget, for the default geometric pull) and pull= (a number or a schedule of the "
            f"Z-update index); got updates={updates!r}, pull={pull!r}"
        )
    if pull is None:
        return pull_schedule(updates)
    if not callable(pull):
        check_range(solver, "pull", pull, low=0, high=1, high_open=False)
    return pull


def decoupled(solver: str, spec: Spec, inner, splitting, pull) -> optax.GradientTransformationExtraArgs:
    """``inner`` with the decoupled pull of ``splitting`` (a coupled-form ADMM or SLR transform,
    whose update does the Z- and dual updates and returns the gradient unchanged when its coupling
    is 0): per step, the splitting's periodic work on (g, W), then δ = inner(g), then
    δ ← δ − γ_j (W − Z + U) on the constrained leaves, γ_j = ``pull`` at the splitting state's
    ``updates`` count. The state is ``DecoupledState(inner, solver)``."""
    inner = optax.with_extra_args_support(inner)

    def init(params):
        return DecoupledState(inner.init(params), splitting.init(params))

    def update(grads, state, params=None, **extra_args):
        _, solver_state = splitting.update(grads, state.solver, params, **extra_args)
        updates, inner_state = inner.update(grads, state.inner, params, **extra_args)
        layout = Layout.of(spec, params, solver)
        w, z, u = (layout.pick(t) for t in (params, solver_state.z, solver_state.u))
        gamma = jnp.asarray(pull(solver_state.updates) if callable(pull) else pull, jnp.float32)
        pulled = pull_step(layout.pick(updates), w, z, u, gamma)
        return layout.replace(updates, pulled), DecoupledState(inner_state, solver_state)

    return optax.GradientTransformationExtraArgs(init, update)


def pull_step(steps: list, w: list, z: list, u: list, gamma) -> list:
    """δ − γ(W − Z + U): the optimizer's proposed steps pulled a fraction γ towards Z − U."""
    return [d - gamma.astype(d.dtype) * (a - c + b) for d, a, b, c in zip(steps, w, u, z)]


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

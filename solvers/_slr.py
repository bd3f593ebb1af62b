"""SLR: surrogate Lagrangian relaxation pruning (Gurevin, Bragin, Ding et al., arXiv 2012.10079,
2304.04120) as an optax transform.

    L(W, Z, Λ) = f(W) + g(Z) + ⟨Λ, W − Z⟩ + (ρ/2)‖W − Z‖²  =  f + (ρ/2)‖W − Z + U‖² − (ρ/2)‖U‖²

with U = Λ/ρ, so the W-step is ADMM's: coupled, the transform adds ρ(W − Z + U) to the loss
gradient; decoupled (``inner`` given), the inner optimizer's step is pulled by γ_j(W − Z + U). At
each multiplier update k (the start of steps every, 2·every, ...), with f(W) the mean of the
``value=`` losses passed since the previous update:

1. SOC-1: L(Wᵏ, Zᵏ⁻¹, Λ) < L(Wᵏ⁻¹, Zᵏ⁻¹, Λ), or k = 1. If it holds,
   sᵏ = αᵏ sᵏ⁻¹ ‖Wᵏ⁻¹ − Zᵏ⁻¹‖/‖Wᵏ − Zᵏ⁻¹‖ and Λ ← Λ + s(Wᵏ − Zᵏ⁻¹); k ← k + 1.
2. Zᵏ = Π(Wᵏ + Λ/ρ). SOC-2: L(Wᵏ, Zᵏ, Λ) < L(Wᵏ, Zᵏ⁻¹, Λ), or k = 1. If it holds,
   s ← α s ‖Wᵏ − Zᵏ⁻¹‖/‖Wᵏ − Zᵏ‖ and Λ ← Λ + s(Wᵏ − Zᵏ); k ← k + 1.
3. αᵏ = 1 − 1/(M·k^(1 − 1/kʳ)) (Bragin et al., JOTA 2015), with k before its increment.

As in the authors' code: norms are Σ_i ‖·‖_F over the constrained leaves (one scalar step for all
layers); s changes only when both norms are nonzero; ρ is fixed. SOC-2 is exact by default (W is the
same on both sides, so only the penalty terms are compared); ``soc2="code"`` is the reference code's
variant, which also compares this period's mean loss with the previous period's, and so follows
the noise between periods. The previous iterate's terms (‖Wᵏ⁻¹ − Zᵏ⁻¹‖ and its penalty with the
current Λ) are kept as scalars, so the state holds no copy of W. Init: Z = Π(W⁰), Λ = 0 and the
true ‖W⁰ − Z⁰‖ for the first ratio (the code starts W_prev = Z_prev = 0, so its first half-step
adds s⁰·W to Λ and leaves s alone; we take Zᵏ⁻¹ = Z⁰ as the equations say).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

from prunax.constraints import Spec

from ._leaves import (
    Layout,
    check_every,
    check_range,
    due,
    hyper,
    inputs_finite,
    require_params,
    square_norm,
)
from ._splitting import (
    decoupled,
    diagnostics,
    penalty_gradient,
    project_pick,
    residuals,
    resolve_pull,
    weights_finite,
)

SOC2_MODES = ("exact", "code")


class SLRState(NamedTuple):
    count: jax.Array  # int32: steps taken
    z: Any  # Z, mirroring params (MaskedNode on unconstrained leaves)
    u: Any  # U = Λ/ρ
    step_size: jax.Array  # float32: s
    k: jax.Array  # int32: the α index, 1 + accepted half-steps
    updates: jax.Array  # int32: multiplier updates done
    loss_sum: jax.Array  # float32: sum of the losses passed since the last update
    loss_steps: jax.Array  # int32: how many
    loss_prev: jax.Array  # float32: mean loss of the previous period
    penalty_prev: jax.Array  # float32: (ρ/2)‖Wᵏ⁻¹ − Zᵏ⁻¹ + U‖² with the current U
    gap_prev: jax.Array  # float32: Σ_i ‖Wᵏ⁻¹ − Zᵏ⁻¹‖
    soc1: jax.Array  # bool: SOC-1 held at the last update
    soc2: jax.Array  # bool: SOC-2 held at the last update
    residual: Any  # per leaf ‖W − Z‖/‖W‖ after the last update
    residual_total: jax.Array
    z_change: jax.Array  # ‖Zᵏ − Zᵏ⁻¹‖
    nonfinite: jax.Array  # bool, sticky


def slr_alpha(k, M: float, r: float):
    """αᵏ = 1 − 1/(M·k^(1 − 1/kʳ)) (works on numbers and arrays)."""
    k = jnp.asarray(k, jnp.float32)
    return 1.0 - 1.0 / (M * k ** (1.0 - 1.0 / k**r))


def _gap(w, z) -> jax.Array:
    """Σ_i ‖W_i − Z_i‖_F (the authors' code sums the per-layer norms)."""
    return sum(jnp.sqrt(square_norm(a - b)) for a, b in zip(w, z))


def _penalty(w, z, u, rho) -> jax.Array:
    """(ρ/2)‖W − Z + U‖² over all constrained leaves (the −(ρ/2)‖U‖² term cancels in every test)."""
    return 0.5 * rho * sum(square_norm(a - c + b) for a, b, c in zip(w, u, z))


def _scaled_step(s, alpha, num, den):
    """s ← α s num/den, unchanged when either norm is 0."""
    ok = (num > 0) & (den > 0)
    return jnp.where(ok, alpha * s * num / jnp.where(ok, den, 1.0), s)


def _half_step(ok, s, u, w, z, rho):
    """Λ ← Λ + s(W − Z) where ``ok`` holds, written on U = Λ/ρ."""
    return [jnp.where(ok, b + (s / rho).astype(b.dtype) * (a - c), b) for a, b, c in zip(w, u, z)]


def _multiplier_update(state, project, w, z, u, rho, rho_next, M, r, soc2):
    """Steps 1–3 of the module docstring at one multiplier update with penalty ``rho``; returns
    the new (z, u, s, k) and the SOC flags, with the scalars the next update compares against. U
    leaves as Λ/``rho_next``, the penalty of the next period (the same ρ in the coupled form)."""
    loss = state.loss_sum / state.loss_steps.astype(jnp.float32)
    k, s = state.k, state.step_size
    # 1. SOC-1 and the first half-step, with Zᵏ⁻¹ = z.
    soc1 = (loss + _penalty(w, z, u, rho) < state.loss_prev + state.penalty_prev) | (k == 1)
    gap_mid = _gap(w, z)
    s = jnp.where(soc1, _scaled_step(s, slr_alpha(k, M, r), state.gap_prev, gap_mid), s)
    u1 = _half_step(soc1, s, u, w, z, rho)
    k = k + soc1.astype(jnp.int32)
    # 2. The Z-step, SOC-2 and the second half-step.
    z_new = project([a + b for a, b in zip(w, u1)])
    lower = _penalty(w, z_new, u1, rho) < _penalty(w, z, u1, rho)
    if soc2 == "code":
        lower = loss + _penalty(w, z_new, u1, rho) < state.loss_prev + _penalty(w, z, u1, rho)
    soc2_ok = lower | (k == 1)
    gap_new = _gap(w, z_new)
    s = jnp.where(soc2_ok, _scaled_step(s, slr_alpha(k, M, r), gap_mid, gap_new), s)
    u2 = _half_step(soc2_ok, s, u1, w, z_new, rho)
    k = k + soc2_ok.astype(jnp.int32)
    u2 = [b * (rho / rho_next).astype(b.dtype) for b in u2]
    prev = (loss, _penalty(w, z_new, u2, rho_next), gap_new)
    return z_new, u2, s, k, prev, soc1, soc2_ok


def _initial_state(spec: Spec, params, rho: float, s0: float) -> SLRState:
    """Z = Π(W⁰), Λ = 0, s = s⁰, and the true ‖W⁰ − Z⁰‖ for the first ratio."""
    layout = Layout.of(spec, params, "slr")
    w = layout.pick(params)
    z = project_pick(spec, layout, params, w)
    u = [jnp.zeros_like(x) for x in w]
    residual, total = residuals(w, z)
    return SLRState(
        count=jnp.int32(0),
        z=layout.build(z),
        u=layout.build(u),
        step_size=jnp.float32(s0),
        k=jnp.int32(1),
        updates=jnp.int32(0),
        loss_sum=jnp.float32(0),
        loss_steps=jnp.int32(0),
        loss_prev=jnp.float32(jnp.inf),
        penalty_prev=_penalty(w, z, u, jnp.float32(rho)),
        gap_prev=_gap(w, z),
        soc1=jnp.asarray(False),
        soc2=jnp.asarray(False),
        residual=layout.build(residual),
        residual_total=total,
        z_change=jnp.float32(0),
        nonfinite=jnp.asarray(False),
    )


def slr(
    spec: Spec,
    rho: float = 0.1,
    s0: float = 0.01,
    M: float = 300.0,
    r: float = 0.1,
    every: int = 1,
    soc2: str = "exact",
    *,
    inner: optax.GradientTransformation | None = None,
    updates: int | None = None,
    pull=None,
) -> optax.GradientTransformationExtraArgs:
    """SLR; ``update`` needs ``params`` and ``value=loss``. Decoupled: ``slr(spec, every=...,
    inner=optax.adam(1e-3), updates=K)`` is the whole optimizer, the W-step pulled towards Z − U
    by γ_j as in ``admm`` (K: the multiplier updates in the solve budget, or ``pull=`` a number or
    a schedule of the update index); ρ stays the Lagrangian's (U = Λ/ρ and the SOC tests).
    Coupled (``inner`` None): the first link of an optax chain. Defaults are the reference code's
    (ρ 0.1, s⁰ 0.01, M 300, r 0.1); ``every`` is the period of the multiplier updates in steps (the
    code: one epoch)."""
    check_range("slr", "rho", rho, low=0)
    check_range("slr", "s0", s0, low=0)
    check_range("slr", "M", M, low=1)
    check_range("slr", "r", r, low=0, high=1)
    check_every("slr", "every", every)
    if soc2 not in SOC2_MODES:
        raise ValueError(f"slr: soc2 must be one of {SOC2_MODES}, got {soc2!r}")

    if inner is None:
        penalty = lambda j: jnp.float32(rho)  # noqa: E731
    else:
        schedule = resolve_pull("slr", updates, pull)
        start = hyper(schedule, 0)
        penalty = lambda j: jnp.float32(rho) * hyper(schedule, j) / start  # noqa: E731

    def init(params):
        return _initial_state(spec, params, rho, s0)

    def update(grads, state, params=None, **extra_args):
        require_params("slr", params)
        if extra_args.get("value") is None:
            raise ValueError("slr: update needs the loss, tx.update(grads, state, params, value=loss)")
        layout = Layout.of(spec, params, "slr")
        w, g = layout.pick(params), layout.pick(grads)
        z, u = layout.pick(state.z), layout.pick(state.u)
        rho_ = penalty(state.updates)
        value = jnp.asarray(extra_args["value"], jnp.float32)
        ok = inputs_finite(g, extra_args)
        is_due = due(state.count, every)
        w_ok = weights_finite(is_due & ok, w)
        run = is_due & ok & w_ok & (state.loss_steps > 0)

        def multiplier_update():
            project = lambda v: project_pick(spec, layout, params, v)  # noqa: E731
            z_new, u_new, s, k, prev, soc1, soc2_ok = _multiplier_update(
                state, project, w, z, u, rho_, penalty(state.updates + 1), M, r, soc2
            )
            residual, total, change = diagnostics(w, z_new, z)
            return z_new, u_new, s, k, state.updates + 1, prev, soc1, soc2_ok, residual, total, change

        def keep():
            prev = (state.loss_prev, state.penalty_prev, state.gap_prev)
            residual = layout.pick(state.residual)
            flags = (state.soc1, state.soc2, residual, state.residual_total, state.z_change)
            return (z, u, state.step_size, state.k, state.updates, prev, *flags)

        z, u, s, k, updates, prev, soc1, soc2_ok, residual, total, change = lax.cond(
            run, multiplier_update, keep
        )
        # This step's loss opens the next period (or joins the current one).
        loss_sum = jnp.where(run, 0.0, state.loss_sum) + jnp.where(ok, value, 0.0)
        loss_steps = jnp.where(run, 0, state.loss_steps) + ok.astype(jnp.int32)
        coupled_gradient = penalty_gradient(g, w, z, u, penalty(updates))
        new_state = SLRState(
            count=state.count + 1,
            z=layout.build(z),
            u=layout.build(u),
            step_size=s,
            k=k,
            updates=updates,
            loss_sum=loss_sum,
            loss_steps=loss_steps,
            loss_prev=prev[0],
            penalty_prev=prev[1],
            gap_prev=prev[2],
            soc1=soc1,
            soc2=soc2_ok,
            residual=layout.build(residual),
            residual_total=total,
            z_change=change,
            nonfinite=state.nonfinite | ~ok | ~w_ok,
        )
        return layout.replace(grads, coupled_gradient), new_state

    coupled = optax.GradientTransformationExtraArgs(init, update)
    if inner is None:
        if updates is not None or pull is not None:
            raise ValueError("slr: updates= and pull= belong to the decoupled form; pass inner= as well")
        return coupled
    return decoupled("slr", spec, inner, coupled, schedule)

"""ADMM pruning (Zhang et al. 2018, ADMM-NN 2019; FORMS uses it for polarity) as an optax transform.

min f(W) + g(Z) s.t. W = Z, g the indicator of the spec's set, in scaled form (U = Λ/ρ):

    L_ρ(W, Z, U) = f(W) + g(Z) + (ρ/2)‖W − Z + U‖² − (ρ/2)‖U‖²

* every ``every`` steps (at the start of steps every, 2·every, ...): Z ← Π(W + U), U ← U + W − Z.
* init: Z⁰ = Π(W⁰), U⁰ = 0.
* W-step, decoupled (``inner`` given; docs/solvers.md, "Coupled and decoupled W-steps"): the inner
  optimizer's step δ on the raw loss gradient becomes δ − γ_j (W − Z + U) on the constrained
  leaves, γ_j the pull after j Z-updates (``pull_schedule(updates)`` by default: 0.03 → 1
  geometrically over the budget). The pull plays ρ's part, so U is rescaled by γ_j/γ_{j+1} when
  it grows (Boyd et al. §3.4.1); without that the dual outruns W.
* W-step, coupled (``inner`` None, first link of a chain): the chained optimizer trains on
  f + (ρ/2)‖W − Z + U‖², i.e. this transform adds ρ(W − Z + U) to the loss gradient (the ½
  convention: ρ here is twice the ρ of codes that write ρ‖·‖², e.g. kaiqzhan's PyTorch ADMM). ρ: a
  number or an optax schedule of the step count, read at each Z-update and multiplied by
  ``rho_growth`` per update done (×1.3 is common); with ``rescale_dual`` U ← U·ρ_old/ρ_new when ρ
  changes (public pruning codes omit it, so there the default is False).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

from prunax.constraints import Spec

from ._leaves import Layout, check_every, check_range, due, hyper, inputs_finite, require_params
from ._splitting import (
    decoupled,
    diagnostics,
    penalty_gradient,
    project_pick,
    residuals,
    resolve_pull,
    weights_finite,
)


class ADMMState(NamedTuple):
    count: jax.Array  # int32: steps taken
    z: Any  # Z, mirroring params (MaskedNode on unconstrained leaves)
    u: Any  # scaled dual U = Λ/ρ
    rho: jax.Array  # float32: the coupling in effect: ρ (coupled) or the pull γ_j (decoupled)
    updates: jax.Array  # int32: Z/U updates done
    residual: Any  # per leaf ‖W − Z‖/‖W‖ after the last Z-update
    residual_total: jax.Array  # the same over all constrained leaves
    z_change: jax.Array  # ‖Z⁺ − Z‖ over all leaves at the last Z-update
    nonfinite: jax.Array  # bool, sticky: a non-finite gradient, loss or weight was seen


def admm(
    spec: Spec,
    rho=None,
    every: int | None = None,
    rho_growth: float | None = None,
    rescale_dual: bool | None = None,
    *,
    inner: optax.GradientTransformation | None = None,
    updates: int | None = None,
    pull=None,
) -> optax.GradientTransformationExtraArgs:
    """ADMM, decoupled: ``admm(spec, every=steps_per_epoch // 4, inner=optax.adam(1e-3),
    updates=K)`` is the whole optimizer (K: the Z-updates in the solve budget; or ``pull=`` a
    number or a schedule of the Z-update index); the dual is rescaled unless
    ``rescale_dual=False``. Coupled: ``optax.chain(admm(spec, rho=1e-2, every=...),
    optax.adam(1e-3))``. ``update`` needs ``params``; a ``value=`` loss, when passed, is checked for
    finiteness. A non-finite gradient, loss or weight sets ``nonfinite`` and skips the Z/U update."""
    check_every("admm", "every", every)
    if inner is None:
        if rho is None:
            raise ValueError(
                "admm: give inner= (an optax optimizer: the decoupled form) or rho= (the coupled form's "
                "penalty, for a first link of a chain)"
            )
        if updates is not None or pull is not None:
            raise ValueError("admm: updates= and pull= belong to the decoupled form; pass inner= as well")
        check_range("admm", "rho", rho, low=0)
        growth = 1.0 if rho_growth is None else rho_growth
        check_range("admm", "rho_growth", growth, low=0)
        growth = jnp.float32(growth)
        return _admm(spec, every, lambda count, j: hyper(rho, count) * growth**j, bool(rescale_dual))
    if rho is not None or rho_growth is not None:
        raise ValueError(
            "admm: rho and rho_growth are the coupled form's; the decoupled form (inner=...) pulls with "
            "updates= or pull="
        )
    schedule = resolve_pull("admm", updates, pull)
    coupling = lambda count, j: hyper(schedule, j)  # noqa: E731
    splitting = _admm(spec, every, coupling, rescale_dual is None or rescale_dual)
    return decoupled("admm", spec, inner, splitting, schedule)


def _admm(spec: Spec, every: int, coupling, rescale_dual: bool) -> optax.GradientTransformationExtraArgs:
    """Coupled-form ADMM with the coupling weight ``coupling(count, j)`` after j Z-updates (ρ_j, or
    the decoupled form's γ_j)."""

    def init(params):
        layout = Layout.of(spec, params, "admm")
        w = layout.pick(params)
        z = project_pick(spec, layout, params, w)
        residual, total = residuals(w, z)
        return ADMMState(
            count=jnp.int32(0),
            z=layout.build(z),
            u=layout.build([jnp.zeros_like(x) for x in w]),
            rho=coupling(jnp.int32(0), jnp.int32(0)),
            updates=jnp.int32(0),
            residual=layout.build(residual),
            residual_total=total,
            z_change=jnp.float32(0),
            nonfinite=jnp.asarray(False),
        )

    def update(grads, state, params=None, **extra_args):
        require_params("admm", params)
        layout = Layout.of(spec, params, "admm")
        w, g = layout.pick(params), layout.pick(grads)
        z, u = layout.pick(state.z), layout.pick(state.u)
        ok = inputs_finite(g, extra_args)

        def z_update():
            z_new = project_pick(spec, layout, params, [a + b for a, b in zip(w, u)])
            u_new = [b + a - c for a, b, c in zip(w, u, z_new)]
            rho_new = coupling(state.count, state.updates + 1)
            if rescale_dual:
                u_new = [x * (state.rho / rho_new).astype(x.dtype) for x in u_new]
            residual, total, change = diagnostics(w, z_new, z)
            return z_new, u_new, rho_new, state.updates + 1, residual, total, change

        def keep():
            return (
                z,
                u,
                state.rho,
                state.updates,
                layout.pick(state.residual),
                state.residual_total,
                state.z_change,
            )

        w_ok = weights_finite(due(state.count, every) & ok, w)
        z, u, rho_now, updates, residual, total, change = lax.cond(
            due(state.count, every) & ok & w_ok, z_update, keep
        )
        penalty = penalty_gradient(g, w, z, u, rho_now)
        new_state = ADMMState(
            count=state.count + 1,
            z=layout.build(z),
            u=layout.build(u),
            rho=rho_now,
            updates=updates,
            residual=layout.build(residual),
            residual_total=total,
            z_change=change,
            nonfinite=state.nonfinite | ~ok | ~w_ok,
        )
        return layout.replace(grads, penalty), new_state

    return optax.GradientTransformationExtraArgs(init, update)

"""ADMM pruning (Zhang et al. 2018, ADMM-NN 2019; FORMS uses it for polarity) as an optax transform.

min f(W) + g(Z) s.t. W = Z, g the indicator of the spec's set, in scaled form (U = Λ/ρ):

    L_ρ(W, Z, U) = f(W) + g(Z) + (ρ/2)‖W − Z + U‖² − (ρ/2)‖U‖²

* W-step: the chained optimizer trains on f + (ρ/2)‖W − Z + U‖²; this transform adds the
  penalty's gradient ρ(W − Z + U) to the loss gradient (the ½ convention: ρ here is twice the ρ of
  codes that write ρ‖·‖², e.g. kaiqzhan's PyTorch ADMM; docs/solvers.md, "ADMM").
* every ``every`` steps (at the start of steps every, 2·every, ...): Z ← Π(W + U), U ← U + W − Z.
* init: Z⁰ = Π(W⁰), U⁰ = 0.
* ρ: a number or an optax schedule of the step count, read at each Z-update and multiplied by
  ``rho_growth`` per update done (×1.3 is common); with ``rescale_dual`` U ← U·ρ_old/ρ_new when ρ
  changes (Boyd et al. §3.4.1; public pruning codes omit it, so the default is False).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

from prunax.constraints import Spec

from ._leaves import Layout, check_every, check_range, due, hyper, inputs_finite, require_params
from ._splitting import diagnostics, penalty_gradient, project_pick, residuals, weights_finite


class ADMMState(NamedTuple):
    count: jax.Array  # int32: steps taken
    z: Any  # Z, mirroring params (MaskedNode on unconstrained leaves)
    u: Any  # scaled dual U = Λ/ρ
    rho: jax.Array  # float32: ρ in effect
    updates: jax.Array  # int32: Z/U updates done
    residual: Any  # per leaf ‖W − Z‖/‖W‖ after the last Z-update
    residual_total: jax.Array  # the same over all constrained leaves
    z_change: jax.Array  # ‖Z⁺ − Z‖ over all leaves at the last Z-update
    nonfinite: jax.Array  # bool, sticky: a non-finite gradient, loss or weight was seen


def admm(
    spec: Spec, rho, every: int, rho_growth: float = 1.0, rescale_dual: bool = False
) -> optax.GradientTransformationExtraArgs:
    """ADMM as the first link of an optax chain: ``optax.chain(admm(spec, 1e-3, steps_per_epoch),
    optax.adam(1e-3))``. ``update`` needs ``params``; a ``value=`` loss, when passed, is checked
    for finiteness. A non-finite gradient, loss or weight sets ``nonfinite`` and skips the Z/U update."""
    check_range("admm", "rho", rho, low=0)
    check_every("admm", "every", every)
    check_range("admm", "rho_growth", rho_growth, low=0)

    def init(params):
        layout = Layout.of(spec, params, "admm")
        w = layout.pick(params)
        z = project_pick(spec, layout, params, w)
        residual, total = residuals(w, z)
        return ADMMState(
            count=jnp.int32(0),
            z=layout.build(z),
            u=layout.build([jnp.zeros_like(x) for x in w]),
            rho=hyper(rho, 0),
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
            rho_new = hyper(rho, state.count) * jnp.float32(rho_growth) ** (state.updates + 1)
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

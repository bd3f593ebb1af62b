"""SLR against a plain NumPy transcription of its update rules, and its argument checks."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from prunax import solvers
from prunax.constraints import Unstructured, spec

SPEC = spec([("w", Unstructured(0.5))])


def alpha(k, M=300.0, r=0.1):
    return 1 - 1 / (M * k ** (1 - 1 / k**r))


def project(w):
    keep = np.argsort(-np.abs(w), kind="stable")[: len(w) - len(w) // 2]
    out = np.zeros_like(w)
    out[keep] = w[keep]
    return out


def reference(ws, losses, rho_of, s0, soc2):
    """The rules of docs/solvers.md, "SLR" for one leaf, one multiplier update per step (every=1),
    with penalty ``rho_of(j)`` during the period after j updates and U = Λ/ρ_j."""
    rho = rho_of(0)
    z = project(ws[0])
    u = np.zeros_like(ws[0])
    s, k = s0, 1
    loss_prev, pen_prev, gap_prev = np.inf, 0.5 * rho * np.sum((ws[0] - z) ** 2), np.linalg.norm(ws[0] - z)
    trace = []
    for t in range(1, len(ws)):
        w, loss = ws[t], losses[t - 1]
        soc1 = loss + 0.5 * rho * np.sum((w - z + u) ** 2) < loss_prev + pen_prev or k == 1
        gap_mid = np.linalg.norm(w - z)
        if soc1:
            if gap_prev > 0 and gap_mid > 0:
                s = alpha(k) * s * gap_prev / gap_mid
            u = u + s / rho * (w - z)
            k += 1
        z_new = project(w + u)
        new_pen, old_pen = 0.5 * rho * np.sum((w - z_new + u) ** 2), 0.5 * rho * np.sum((w - z + u) ** 2)
        holds = new_pen < old_pen if soc2 == "exact" else loss + new_pen < loss_prev + old_pen
        gap_new = np.linalg.norm(w - z_new)
        if holds or k == 1:
            if gap_mid > 0 and gap_new > 0:
                s = alpha(k) * s * gap_mid / gap_new
            u = u + s / rho * (w - z_new)
            k += 1
        rho_next = rho_of(t)
        u = u * rho / rho_next  # Λ unchanged
        rho = rho_next
        loss_prev, pen_prev, gap_prev, z = loss, 0.5 * rho * np.sum((w - z_new + u) ** 2), gap_new, z_new
        trace.append((s, k, bool(soc1), z.copy(), u.copy()))
    return trace


@pytest.mark.parametrize("soc2, decoupled", [("exact", False), ("code", False), ("exact", True)])
def test_matches_the_update_rules_step_by_step(soc2, decoupled):
    rng = np.random.default_rng(0)
    steps, n = 25, 10
    ws = np.cumsum(rng.standard_normal((steps, n)) * 0.3, axis=0) + rng.standard_normal(n)
    losses = np.abs(rng.standard_normal(steps)) + np.linspace(2, 1, steps)  # mostly falling, noisy
    rho, s0 = 0.3, 0.2
    rho_of = lambda j: rho  # noqa: E731
    tx = solvers.slr(SPEC, rho=rho, s0=s0, every=1, soc2=soc2)
    if decoupled:  # ρ grows with the pull: ρ_j = ρ·γ_j/γ_0, U = Λ/ρ_j
        pull = solvers.pull_schedule(12)
        rho_of = lambda j: rho * float(pull(j)) / float(pull(0))  # noqa: E731
        tx = solvers.slr(SPEC, rho=rho, s0=s0, every=1, soc2=soc2, inner=optax.sgd(0.0), pull=pull)
    state = tx.init({"w": jnp.asarray(ws[0], jnp.float32)})
    update = jax.jit(tx.update)
    got = []
    for t in range(steps):
        params = {"w": jnp.asarray(ws[t], jnp.float32)}
        _, state = update({"w": jnp.zeros(n)}, state, params, value=losses[t])
        now = state.solver if decoupled else state
        if t >= 1:
            got.append((float(now.step_size), int(now.k), bool(now.soc1), now.z["w"], now.u["w"]))
    expected = reference(ws.astype(np.float32).astype(np.float64), losses, rho_of, s0, soc2)
    assert len({e[2] for e in expected}) == 2  # SOC-1 both held and failed along the way
    for t, (g, e) in enumerate(zip(got, expected)):
        assert g[1] == e[1] and g[2] == e[2], t
        assert g[0] == pytest.approx(e[0], rel=1e-4), t
        np.testing.assert_allclose(np.asarray(g[3]), e[3], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(np.asarray(g[4]), e[4], rtol=1e-3, atol=1e-4)


def test_alpha_formula():
    k = np.arange(1, 50)
    np.testing.assert_allclose(np.asarray(solvers.slr_alpha(k, 300.0, 0.1)), alpha(k), rtol=1e-6)
    assert float(solvers.slr_alpha(1, 300.0, 0.1)) == pytest.approx(1 - 1 / 300)


def test_needs_the_loss_and_params():
    params = {"w": jnp.ones(4)}
    tx = solvers.slr(SPEC, every=1)
    with pytest.raises(ValueError, match="value=loss"):
        tx.update(params, tx.init(params), params)
    with pytest.raises(ValueError, match="needs params"):
        tx.update(params, tx.init(params), value=1.0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(rho=0.0), "rho"),
        (dict(s0=-1.0), "s0"),
        (dict(M=1.0), "M"),
        (dict(M=0.5), "M"),
        (dict(r=0.0), "r"),
        (dict(r=1.0), "r"),
        (dict(every=0), "every"),
        (dict(soc2="paper"), "soc2"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=f"slr: {match}"):
        solvers.slr(SPEC, **kwargs)

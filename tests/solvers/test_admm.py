"""ADMM against cvxpy on a convex problem, its ρ bookkeeping, and non-finite handling."""

import cvxpy as cp
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from prunax import solvers
from prunax.constraints import Pattern, Unstructured, spec


def test_converges_to_the_cvxpy_optimum_of_a_convex_quadratic_with_fixed_support():
    rng = np.random.default_rng(0)
    n = 8
    M = rng.standard_normal((n, n))
    Q = M.T @ M / n + np.eye(n)
    c = rng.standard_normal(n)
    support = np.array([1, 0, 1, 1, 0, 0, 1, 0], bool)
    # One pattern over the whole leaf: the set {x : x = 0 off the support}, a subspace.
    fixed = spec([("x", Pattern([support.astype(int)], axes=(0,)))])

    x = cp.Variable(n)
    cp.Problem(cp.Minimize(0.5 * cp.quad_form(x, Q) - c @ x), [x[~support] == 0]).solve()
    Qj, cj = jnp.asarray(Q, jnp.float32), jnp.asarray(c, jnp.float32)

    def loss(p):
        return 0.5 * p["x"] @ Qj @ p["x"] - cj @ p["x"]

    tx = optax.chain(solvers.admm(fixed, rho=1.0, every=100), optax.sgd(0.2))
    params = {"x": jnp.zeros(n)}

    def step(carry, _):
        params, state = carry
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        return (optax.apply_updates(params, updates), state), None

    (params, state), _ = jax.jit(lambda c: jax.lax.scan(step, c, None, length=20000))(
        (params, tx.init(params))
    )
    final, _ = solvers.finalize(fixed, params)
    np.testing.assert_allclose(np.asarray(final["x"]), x.value, atol=1e-4)
    np.testing.assert_allclose(np.asarray(state[0].z["x"]), x.value, atol=1e-4)
    assert float(state[0].residual_total) < 1e-4


def test_rho_grows_per_update_and_the_dual_is_rescaled():
    s = spec([("w", Unstructured(0.5))])
    params = {"w": jnp.asarray([3.0, -2.0, 1.0, 0.5])}
    grads = {"w": jnp.zeros(4)}
    plain, rescaled = (
        solvers.admm(s, 0.5, every=1, rho_growth=2.0),
        solvers.admm(s, 0.5, every=1, rho_growth=2.0, rescale_dual=True),
    )
    a, b = plain.init(params), rescaled.init(params)
    for _ in range(3):  # the update at step 0 is the init's; updates happen at steps 1 and 2
        _, a = plain.update(grads, a, params)
        _, b = rescaled.update(grads, b, params)
    assert float(a.rho) == pytest.approx(0.5 * 2.0**2) and int(a.updates) == 2
    # W fixed, Z = [3, -2, 0, 0]: U gains W - Z = [0, 0, 1, .5] per update; rescaled, U is then
    # multiplied by rho_old / rho_new = 1/2 after each update.
    np.testing.assert_allclose(np.asarray(a.u["w"]), [0, 0, 2.0, 1.0])
    np.testing.assert_allclose(np.asarray(b.u["w"]), [0, 0, 0.75, 0.375])


def test_gradient_term_is_rho_times_w_minus_z_plus_u():
    s = spec([("w", Unstructured(0.5)), ("b", None)])
    params = {"w": jnp.asarray([3.0, -2.0, 1.0, 0.5]), "b": jnp.ones(2)}
    tx = solvers.admm(s, 0.5, every=10)
    state = tx.init(params)
    updates, _ = tx.update({"w": jnp.ones(4), "b": jnp.ones(2)}, state, params)
    np.testing.assert_allclose(np.asarray(updates["w"]), 1 + 0.5 * np.array([0, 0, 1.0, 0.5]))
    np.testing.assert_array_equal(np.asarray(updates["b"]), np.ones(2))  # unconstrained: untouched


def test_non_finite_gradient_sets_the_flag_and_leaves_z_and_u():
    s = spec([("w", Unstructured(0.5))])
    params = {"w": jnp.asarray([3.0, -2.0, 1.0, 0.5])}
    tx = solvers.admm(s, 0.5, every=1)
    state = tx.init(params)
    _, state = tx.update({"w": jnp.zeros(4)}, state, params)
    _, bad = tx.update({"w": jnp.asarray([0.0, jnp.nan, 0, 0])}, state, params)
    assert bool(bad.nonfinite) and int(bad.updates) == int(state.updates)
    np.testing.assert_array_equal(np.asarray(bad.u["w"]), np.asarray(state.u["w"]))
    _, bad = tx.update({"w": jnp.zeros(4)}, state, {"w": jnp.asarray([jnp.inf, 0, 0, 0])})
    assert bool(bad.nonfinite) and int(bad.updates) == int(state.updates)
    _, bad = tx.update({"w": jnp.zeros(4)}, state, params, value=jnp.nan)
    assert bool(bad.nonfinite)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(rho=0.0, every=1), "rho"),
        (dict(rho=-1.0, every=1), "rho"),
        (dict(rho=0.1, every=0), "every"),
        (dict(rho=0.1, every=2.5), "every"),
        (dict(rho=0.1, every=1, rho_growth=0.0), "rho_growth"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=f"admm: {match}"):
        solvers.admm(spec([("w", Unstructured(0.5))]), **kwargs)


def test_spec_that_matches_no_leaf_or_constrains_none():
    params = {"w": jnp.ones(4)}
    with pytest.raises(ValueError, match="claims no leaf"):
        solvers.admm(spec([("kernel", Unstructured(0.5))]), 0.1, 1).init(params)
    with pytest.raises(ValueError, match="admm: the spec constrains no leaf"):
        solvers.admm(spec([("w", None)]), 0.1, 1).init(params)
    with pytest.raises(ValueError, match="needs params"):
        tx = solvers.admm(spec([("w", Unstructured(0.5))]), 0.1, 1)
        tx.update(params, tx.init(params))


def test_decoupled_admm_reaches_the_cvxpy_optimum_of_a_convex_quadratic_with_fixed_support():
    rng = np.random.default_rng(1)
    n = 8
    M = rng.standard_normal((n, n))
    Q = M.T @ M / n + np.eye(n)
    c = rng.standard_normal(n)
    support = np.array([0, 1, 1, 0, 1, 0, 0, 1], bool)
    fixed = spec([("x", Pattern([support.astype(int)], axes=(0,)))])
    x = cp.Variable(n)
    cp.Problem(cp.Minimize(0.5 * cp.quad_form(x, Q) - c @ x), [x[~support] == 0]).solve()
    Qj, cj = jnp.asarray(Q, jnp.float32), jnp.asarray(c, jnp.float32)

    def loss(p):
        return 0.5 * p["x"] @ Qj @ p["x"] - cj @ p["x"]

    # Adam inner: the case the decoupled form exists for (a coupled penalty would be normalised).
    tx = solvers.admm(fixed, every=50, inner=optax.adam(1e-2), pull=0.5)
    params = {"x": jnp.zeros(n)}

    def step(carry, _):
        params, state = carry
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        return (optax.apply_updates(params, updates), state), None

    (params, state), _ = jax.jit(lambda c: jax.lax.scan(step, c, None, length=20000))(
        (params, tx.init(params))
    )
    np.testing.assert_allclose(np.asarray(state.solver.z["x"]), x.value, atol=1e-3)
    np.testing.assert_allclose(np.asarray(solvers.finalize(fixed, params)[0]["x"]), x.value, atol=1e-3)
    assert float(state.solver.residual_total) < 1e-3


def test_decoupled_pull_is_the_inner_step_minus_gamma_times_w_minus_z_plus_u():
    s = spec([("w", Unstructured(0.5)), ("b", None)])
    w = np.array([3.0, -2.0, 1.0, 0.5])
    params = {"w": jnp.asarray(w), "b": jnp.ones(2)}
    grads = {"w": jnp.asarray([1.0, 2.0, -1.0, 0.5]), "b": jnp.ones(2)}
    tx = solvers.admm(s, every=1, inner=optax.sgd(0.1), pull=lambda j: 0.25 * 2.0**j)
    state = tx.init(params)
    # Step 0: no Z-update yet; Z = Π(W) = [3, -2, 0, 0], U = 0, γ_0 = 0.25.
    updates, state = tx.update(grads, state, params)
    z = np.array([3.0, -2.0, 0.0, 0.0])
    np.testing.assert_allclose(np.asarray(updates["w"]), -0.1 * np.asarray(grads["w"]) - 0.25 * (w - z))
    np.testing.assert_allclose(np.asarray(updates["b"]), -0.1 * np.ones(2))  # unconstrained: inner only
    # Step 1 (same W): Z⁺ = Π(W + U) = Z, U⁺ = (U + W − Z)·γ_0/γ_1 = (W − Z)/2, γ_1 = 0.5.
    updates, state = tx.update(grads, state, params)
    u = (w - z) / 2
    np.testing.assert_allclose(np.asarray(state.solver.u["w"]), u)
    assert float(state.solver.rho) == pytest.approx(0.5) and int(state.solver.updates) == 1
    np.testing.assert_allclose(np.asarray(updates["w"]), -0.1 * np.asarray(grads["w"]) - 0.5 * (w - z + u))


def test_pull_schedule_grows_geometrically_to_its_end_over_the_budget():
    pull = solvers.pull_schedule(8)
    values = np.array([float(pull(j)) for j in range(12)])
    np.testing.assert_allclose(values[:9], 0.03 * (1 / 0.03) ** (np.arange(9) / 8), rtol=1e-5)
    np.testing.assert_allclose(values[8:], 1.0, rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(every=1), "give inner="),
        (dict(every=1, inner=optax.adam(1e-3)), ".*exactly one of updates="),
        (dict(every=1, inner=optax.adam(1e-3), updates=4, pull=0.5), ".*exactly one of updates="),
        (dict(every=1, inner=optax.adam(1e-3), pull=1.5), "pull"),
        (dict(rho=0.1, every=1, inner=optax.adam(1e-3), updates=4), "rho and rho_growth"),
        (dict(rho=0.1, every=1, updates=4), ".*decoupled form"),
    ],
)
def test_bad_decoupled_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=f"admm: {match}"):
        solvers.admm(spec([("w", Unstructured(0.5))]), **kwargs)

"""Reweighted group lasso: the prox against cvxpy, the subgradient, reweighting, bad input and the
λ calibration rule."""

import cvxpy as cp
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prunax import solvers
from prunax.constraints import NM, Block, ColumnSign, Pattern, Unstructured, coupled, spec


@settings(max_examples=15)
@given(seed=st.integers(0, 10**6), which=st.sampled_from(["block", "tiles", "nm", "unstructured"]))
def test_prox_equals_cvxpy(seed, which):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((6, 5))
    constraint = {
        "block": Block((2, 2), 0.5, axes=(0, 1)),
        "tiles": Pattern(np.ones((1, 2, 3), int), axes=(0, 1), tiles=True),
        "nm": NM(2, 4, axis=1),
        "unstructured": Unstructured(0.5),
    }[which]
    groups = constraint.groups(w.shape)
    t = rng.uniform(0, 2, groups.count)
    x = cp.Variable(w.size)
    ids = groups.ids.reshape(-1)
    penalty = sum(t[g] * cp.norm(x[np.flatnonzero(ids == g)], 2) for g in range(groups.count))
    cp.Problem(cp.Minimize(0.5 * cp.sum_squares(x - w.reshape(-1)) + penalty)).solve(
        solver=cp.CLARABEL, tol_gap_abs=1e-9, tol_gap_rel=1e-9, tol_feas=1e-9
    )
    got = np.asarray(solvers.group_soft_threshold(jnp.asarray(w), groups, jnp.asarray(t)), np.float64)

    def objective(v):
        norms = np.array([np.linalg.norm(v[ids == g]) for g in range(groups.count)])
        return 0.5 * np.sum((v - w.reshape(-1)) ** 2) + t @ norms

    # The objective is 1-strongly convex, so matching the solver's optimum bounds ‖got − x*‖. The
    # pointwise check is looser: at a group whose norm sits next to its threshold the interior-point
    # solution is ~5e-5 off (seed 351: |w| 0.24486 < t 0.24495, exact 0, CLARABEL 4.3e-5).
    assert objective(got.reshape(-1)) <= objective(x.value) + 1e-6
    np.testing.assert_allclose(got.reshape(-1), x.value, atol=2e-4)


def test_prox_form_gives_exact_zero_groups_that_the_hard_prune_drops():
    rng = np.random.default_rng(0)
    w = {"k": jnp.asarray(rng.standard_normal((8, 6)) * np.repeat([1.0, 0.05], 3)[None, :], jnp.float32)}
    s = spec([("k", Block((1,), 0.5, axes=(1,)))])  # columns
    lr = 0.1
    tx = optax.chain(optax.sgd(lr), solvers.reweighted_group_lasso(s, 0.02, prox=True, learning_rate=lr))
    state = tx.init(w)
    params = w
    for _ in range(20):
        updates, state = tx.update({"k": jnp.zeros((8, 6))}, state, params)
        params = optax.apply_updates(params, updates)
    columns = np.linalg.norm(np.asarray(params["k"]), axis=0)
    assert (columns[3:] == 0).all() and (columns[:3] > 0).all()
    assert int(state[1].zero_groups) == 3
    _, masks = solvers.finalize(s, params)
    np.testing.assert_array_equal(np.asarray(masks["k"]).any(axis=0), columns > 0)


def test_subgradient_is_lambda_alpha_w_over_norm():
    w = {"k": jnp.asarray([[3.0, 0.0], [4.0, 0.0]])}
    s = spec([("k", Block((1,), 0.5, axes=(1,)))])
    tx = solvers.reweighted_group_lasso(s, 0.5, eps=1e-3)
    state = tx.init(w)
    updates, state = tx.update({"k": jnp.ones((2, 2))}, state, w)
    alpha = 1 / (5 + 1e-3)
    expected = np.array([[1 + 0.5 * alpha * 3 / 5, 1.0], [1 + 0.5 * alpha * 4 / 5, 1.0]])
    np.testing.assert_allclose(np.asarray(updates["k"]), expected, rtol=1e-6)
    assert float(state.penalty) == pytest.approx(0.5 * alpha * 5, rel=1e-6)
    np.testing.assert_allclose(np.asarray(state.alpha["k"]), [alpha, 1 / 1e-3], rtol=1e-6)


def test_reweighting_refreshes_alpha_from_the_current_weights():
    s = spec([("k", Unstructured(0.5))])
    tx = solvers.reweighted_group_lasso(s, 0.1, reweight_every=2)
    state = tx.init({"k": jnp.ones(2)})
    moved = {"k": jnp.asarray([2.0, 0.5])}
    for _ in range(3):
        _, state = tx.update({"k": jnp.zeros(2)}, state, moved)
    np.testing.assert_allclose(np.asarray(state.alpha["k"]), 1 / (np.array([2.0, 0.5]) + 1e-3), rtol=1e-6)


def test_bad_input():
    s = spec([("k", Unstructured(0.5))])
    with pytest.raises(ValueError, match="reweighted_group_lasso: lam"):
        solvers.reweighted_group_lasso(s, -1e-4)
    with pytest.raises(ValueError, match="reweighted_group_lasso: reweight_every"):
        solvers.reweighted_group_lasso(s, 1e-4, reweight_every=0)
    with pytest.raises(ValueError, match="needs learning_rate"):
        solvers.reweighted_group_lasso(s, 1e-4, prox=True)
    with pytest.raises(ValueError, match="only used with prox=True"):
        solvers.reweighted_group_lasso(s, 1e-4, learning_rate=0.1)
    polarity = spec([("k", ColumnSign(4, axis=0))])
    with pytest.raises(ValueError, match=r"ColumnSign.*'k'.*\(8, 3\).*no groups"):
        solvers.reweighted_group_lasso(polarity, 1e-4).init({"k": jnp.ones((8, 3))})


def test_per_leaf_lambda_equals_one_solver_per_leaf():
    w = {"a": jnp.asarray([[3.0, 0.5], [4.0, 0.1]]), "b": jnp.asarray([1.0, -2.0, 0.3])}
    rules = [("a", Block((1,), 0.5, axes=(1,))), ("b", Unstructured(0.5))]
    g = {"a": jnp.full((2, 2), 0.2), "b": jnp.full(3, -0.1)}
    joint = solvers.reweighted_group_lasso(spec(rules), {"a": 0.5, "b": 2.0}, prox=True, learning_rate=0.1)
    got, state = joint.update(g, joint.init(w), w)
    penalty = 0.0
    for rule, lam in zip(rules, (0.5, 2.0)):
        alone = solvers.reweighted_group_lasso(spec([rule]), lam, prox=True, learning_rate=0.1)
        want, single = alone.update(g, alone.init(w), w)
        np.testing.assert_allclose(np.asarray(got[rule[0]]), np.asarray(want[rule[0]]), rtol=1e-6)
        penalty += float(single.penalty)
    assert float(state.penalty) == pytest.approx(penalty, rel=1e-6)
    with pytest.raises(ValueError, match=r"missing \['b'\], not constrained \['c'\]"):
        solvers.reweighted_group_lasso(spec(rules), {"a": 0.5, "c": 1.0}).init(w)
    with pytest.raises(ValueError, match="reweighted_group_lasso: lam"):
        solvers.reweighted_group_lasso(spec(rules), {"a": 0.5, "b": -1.0})


def test_rgl_lambda_follows_the_budget_rule():
    params = {"a": np.arange(1.0, 9.0).reshape(2, 4), "b": np.ones(3), "c": np.arange(4.0)}
    rule = spec([("a", Block((1, 2), 0.5, axes=(0, 1))), ("c", Unstructured(0.5))])
    norms = np.sqrt([1 + 4, 9 + 16, 25 + 36, 49 + 64])
    lams = solvers.rgl_lambda(rule, params, 0.5, 100, 1e-3)
    assert set(lams) == {"a", "c"}
    assert lams["a"] == pytest.approx(0.5 * np.quantile(norms, 0.5) ** 2 / (100 * 1e-3), rel=1e-6)
    assert lams["c"] == pytest.approx(0.5 * 1.5**2 / (100 * 1e-3), rel=1e-6)
    with pytest.raises(ValueError, match="rgl_lambda: the spec constrains no leaf"):
        solvers.rgl_lambda(spec([("a", None)]), params, 0.5, 10, 1e-3)


def _coupled_tree(rng):
    params = {
        "conv": jnp.asarray(rng.standard_normal((3, 3, 2, 4)), jnp.float32),
        "bn": jnp.asarray(rng.standard_normal((4,)), jnp.float32),
        "next": jnp.asarray(rng.standard_normal((4, 5)), jnp.float32),
    }
    rule = coupled(0.5, {"channels": [("conv", 3), ("bn", 0), ("next", 0)]})
    joint = lambda p: np.sqrt(  # noqa: E731
        (np.asarray(p["conv"], np.float64) ** 2).sum((0, 1, 2))
        + np.asarray(p["bn"], np.float64) ** 2
        + (np.asarray(p["next"], np.float64) ** 2).sum(1)
    )
    return params, spec([rule]), joint


def test_a_coupled_channel_is_one_group_across_its_leaves():
    params, s, joint = _coupled_tree(np.random.default_rng(7))
    norms, lam, eps = joint(params), 0.3, 1e-3
    alpha = 1 / (norms + eps)
    tx = solvers.reweighted_group_lasso(s, lam, eps=eps)
    zero = {k: jnp.zeros_like(v) for k, v in params.items()}
    updates, state = tx.update(zero, tx.init(params), params)
    # the subgradient of λ Σ_g α_g ‖g‖ on a member slice is λ α_g w_slice / ‖g‖, ‖g‖ the joint norm
    factor = lam * alpha / norms
    np.testing.assert_allclose(updates["conv"], np.asarray(params["conv"]) * factor, rtol=1e-5)
    np.testing.assert_allclose(updates["bn"], np.asarray(params["bn"]) * factor, rtol=1e-5)
    np.testing.assert_allclose(updates["next"], np.asarray(params["next"]) * factor[:, None], rtol=1e-5)
    assert float(state.penalty) == pytest.approx(lam * np.sum(alpha * norms), rel=1e-5)
    # the prox removes a coupled channel from every member at once, or from none
    threshold = np.sort(norms)[1] * (1 + 1e-3) / (lam * alpha[np.argsort(norms)[1]])
    tx = solvers.reweighted_group_lasso(s, lam, eps=eps, prox=True, learning_rate=float(threshold))
    updates, state = tx.update(zero, tx.init(params), params)
    shrunk = optax.apply_updates(params, updates)
    gone = joint(shrunk) == 0
    assert gone.sum() == 2 and int(state.zero_groups) == 2
    assert (np.asarray(shrunk["bn"])[gone] == 0).all() and (np.asarray(shrunk["next"])[gone] == 0).all()
    lams = solvers.rgl_lambda(s, params, 0.5, 10, 1e-2)
    assert len(set(lams.values())) == 1
    assert lams["bn"] == pytest.approx(0.5 * np.quantile(norms, 0.5) ** 2 / 0.1, rel=1e-5)
    # a coupled group takes the λ of its first member
    tx = solvers.reweighted_group_lasso(s, {"conv": lam, "bn": 9.0, "next": 9.0}, eps=eps)
    updates, _ = tx.update(zero, tx.init(params), params)
    np.testing.assert_allclose(updates["bn"], np.asarray(params["bn"]) * factor, rtol=1e-5)


def test_a_leaf_in_two_coupled_groups_gets_both_subgradients():
    rng = np.random.default_rng(9)
    params = {
        k: jnp.asarray(rng.standard_normal(shape), jnp.float32) for k, shape in [("a", (3, 4)), ("b", (4, 5))]
    }
    rule = coupled(0.5, {"a_out": [("a", 1), ("b", 0)], "b_out": [("b", 1)]})
    tx = solvers.reweighted_group_lasso(spec([rule]), 0.2, eps=1e-9)
    zero = {k: jnp.zeros_like(v) for k, v in params.items()}
    updates, state = tx.update(zero, tx.init(params), params)
    a, b = (np.asarray(params[k], np.float64) for k in "ab")
    g1 = np.sqrt((a**2).sum(0) + (b**2).sum(1))  # a_out channels
    g2 = np.sqrt((b**2).sum(0))  # b_out channels
    # α = 1/‖g‖, so each term is λ w / ‖g‖²
    want_b = 0.2 * b / (g1**2)[:, None] + 0.2 * b / (g2**2)[None, :]
    np.testing.assert_allclose(updates["b"], want_b, rtol=1e-4)
    np.testing.assert_allclose(updates["a"], 0.2 * a / (g1**2)[None, :], rtol=1e-4)
    assert float(state.penalty) == pytest.approx(0.2 * (len(g1) + len(g2)), rel=1e-5)
    assert len(state.coupled_alpha) == 2

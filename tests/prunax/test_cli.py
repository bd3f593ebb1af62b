import subprocess
import sys

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
    assert "# Projection speed" in report and "| 3e+03 | 0.1 |" in report
    assert "8 forced host devices" in report
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


HEAVY = ("jax", "numpy", "optax", "matplotlib")
PROBE = """
import sys
from prunax.cli import build_parser, main
build_parser()
try:
    main({argv!r})
except SystemExit as done:
    print("exit", done.code)
print(*sorted({{m.split(".")[0] for m in sys.modules}} & {heavy!r}))
"""


@pytest.mark.parametrize(
    "argv, code",
    [(["--help"], 0), (["bench", "spd", "--help"], 0), (["bench", "projection", "--repeats", "0"], 2)],
)
def test_help_and_argument_errors_import_no_jax(argv, code):
    script = PROBE.format(argv=argv, heavy=set(HEAVY))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    *_, exit_line, loaded = done.stdout.splitlines()
    assert exit_line == f"exit {code}" and loaded == ""


def test_an_argument_error_is_one_line_naming_the_flag(capsys):
    with pytest.raises(SystemExit) as done:
        main(["bench", "projection", "--repeats", "0"])
    err = capsys.readouterr().err
    assert done.value.code == 2 and len(err.strip().splitlines()) == 1
    assert "argument --repeats" in err and "repeats must be >= 1, got 0" in err
    with pytest.raises(SystemExit) as done:
        main(["bench", "forms", "--fragments", "4,x"])
    err = capsys.readouterr().err
    assert done.value.code == 2 and len(err.strip().splitlines()) == 1 and "argument --fragments" in err


def test_flags_come_from_the_study_dataclasses():
    from prunax.benchmarks import configs
    from prunax.cli import STUDIES, build_parser, settings

    parser = build_parser()
    assert settings("convergence", parser.parse_args(["bench"])) == configs.ConvergenceStudy()
    assert settings("blocks", parser.parse_args(["bench", "blocks"])) == configs.BLOCKS_STUDY
    for name, study in STUDIES.items():
        if study.config is not configs.AllocationStudy:  # its lr default is resolved per problem
            expected = study.defaults or study.config()
            assert settings(name, parser.parse_args(["bench", name])) == expected, name
    spd = settings("spd", parser.parse_args(["bench", "spd", "--epochs", "3,2,0", "--settings", "row:0.5"]))
    assert (spd.prune_epochs, spd.replace_epochs, spd.finetune_epochs) == (3, 2, 0)
    assert spd.settings == (("row", 0.5),)
    args = parser.parse_args(["bench", "projection", "--sizes", "1e5,3e3", "--no-families", "--out", "x"])
    assert settings("projection", args).sizes == (1e5, 3e3) and args.no_families and args.out == "x"
    alloc = settings("allocation", parser.parse_args(["bench", "allocation", "--problem", "bert"]))
    assert alloc.lr == 1e-4
    assert settings("allocation", parser.parse_args(["bench", "allocation", "--lr", "0.01"])).lr == 0.01


def test_bias_is_a_bench_study_and_a_top_level_alias(capsys):
    from prunax.cli import build_parser

    for argv in (["bench", "bias", "--help"], ["bias", "--help"]):
        with pytest.raises(SystemExit) as done:
            main(argv)
        assert done.value.code == 0 and "--sparsity" in capsys.readouterr().out
    parser = build_parser()
    for argv in (["bench", "bias", "--sparsity", "0.5", "--epochs", "0"], ["bias", "--sparsity", "0.5"]):
        args = parser.parse_args(argv)
        assert args.study == "bias" and args.handler == "bias" and args.sparsities == (0.5,)


def test_study_errors_are_one_line_unless_debugging(tmp_path, capsys):
    argv = ["bench", "overhead", "--problem", "vgg", "--out", str(tmp_path)]
    with pytest.raises(SystemExit) as done:
        main(argv)
    err = capsys.readouterr().err
    assert done.value.code == 2 and err.startswith("prunax: error: unknown problem 'vgg'")
    assert len(err.strip().splitlines()) == 1
    with pytest.raises(ValueError, match="unknown problem 'vgg'"):
        main([*argv, "--debug"])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["bench", "spd", "--updates", "0"], "argument --updates: spd: updates must be >= 1, got 0"),
        (["bench", "rt3", "--shared-epochs", "-1"], "rt3: shared_epochs must be >= 0, got -1"),
        (["bench", "rt3", "--retrain-epochs", "-1"], "rt3: retrain_epochs must be >= 0, got -1"),
        (["bench", "support", "--seeds", "0"], "argument --seeds: support: seeds must be >= 1, got 0"),
        (
            ["bench", "projection", "--repeats", "0"],
            "argument --repeats: projection: repeats must be >= 1, got 0",
        ),
        (["bench", "projection", "--sizes", "-5"], "projection: sizes must be whole numbers >= 1, got -5.0"),
        (["bench", "support", "--out", "{file}"], "argument --out: {file} is a file, not a folder"),
        (
            ["bench", "forms", "--out", "{missing}/run"],
            "argument --out: the parent folder {missing} does not",
        ),
    ],
)
def test_argument_errors_are_one_line_before_anything_runs(argv, message, tmp_path):
    names = {"file": tmp_path / "report.md", "missing": tmp_path / "no" / "such"}
    names["file"].write_text("")
    argv = [a.format(**names) for a in argv]
    script = PROBE.format(argv=argv, heavy=set(HEAVY))
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    *_, exit_line, loaded = done.stdout.splitlines()
    assert exit_line == "exit 2" and loaded == "" and not (tmp_path / "no").exists()
    assert done.stderr.count("\n") == 1 and message.format(**names) in done.stderr


def test_resume_in_a_missing_folder_says_it_starts_fresh(tmp_path, monkeypatch, capsys):
    from prunax.cli import _commands

    ran = []
    monkeypatch.setattr(_commands, "forms", lambda study, args: ran.append(args.out) or 0)
    out = tmp_path / "run"
    assert main(["bench", "forms", "--out", str(out), "--resume"]) == 0
    assert capsys.readouterr().err == f"prunax: --resume: {out} does not exist; starting fresh\n"
    out.mkdir()
    assert main(["bench", "forms", "--out", str(out), "--resume"]) == 0 and capsys.readouterr().err == ""
    monkeypatch.chdir(tmp_path)  # the default runs/forms-<time> may create runs/
    assert main(["bench", "forms", "--resume"]) == 0 and ran[:2] == [str(out)] * 2
    assert ran[2].startswith("runs/forms-") and f"{ran[2]} does not exist" in capsys.readouterr().err


def test_a_non_finite_loss_is_one_line_saying_what_to_do_unless_debugging(tmp_path, monkeypatch, capsys):
    from prunax import solvers
    from prunax.cli import _commands

    def diverge(study, args):
        raise solvers.NonFiniteLoss("resnet: non-finite loss in solve epoch 1, step 3; no checkpoint")

    monkeypatch.setattr(_commands, "convergence", diverge)
    argv = ["bench", "--lr", "0.5", "--out", str(tmp_path)]
    with pytest.raises(SystemExit) as done:
        main(argv)
    err = capsys.readouterr().err
    assert done.value.code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("prunax: error: resnet: non-finite loss in solve epoch 1, step 3")
    assert "a lower --lr than 0.5 may help; rerun without --resume" in err
    with pytest.raises(solvers.NonFiniteLoss):
        main([*argv, "--debug"])


def test_a_corrupt_runs_file_is_one_line_naming_it_unless_debugging(tmp_path, capsys):
    (tmp_path / "runs.jsonl").write_text('{"key": "unstructured-fnone"}\n{"key": "unstr\n')
    argv = ["bench", "forms", "--size", "test", "--out", str(tmp_path), "--resume"]
    with pytest.raises(SystemExit) as done:
        main(argv)
    err = capsys.readouterr().err
    assert done.value.code == 2 and len(err.strip().splitlines()) == 1
    assert f"line 2 of {tmp_path / 'runs.jsonl'} is not a finished run's row" in err
    assert "delete that line to redo its run, or start over without --resume" in err
    with pytest.raises(ValueError, match="line 2 of"):
        main([*argv, "--debug"])

"""The handlers of the ``prunax`` subcommands. Each takes the validated study settings (a
``prunax.benchmarks.configs`` dataclass, None for ``problems``) and the parsed arguments, imports
its study — and with it JAX — only when called, prints what it measured and writes its report."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import prunax
from prunax.benchmarks import configs

_REPORTED = (ValueError, FileNotFoundError, NotADirectoryError)
_REPORTED_NAMES = ("MissingAsset", "NonFiniteLoss")  # prunax.problems / prunax.solvers, maybe not imported


def reportable(err: BaseException) -> bool:
    """Whether ``err`` is a known study error, shown as one line rather than a traceback."""
    if isinstance(err, _REPORTED):
        return True
    kinds = type(err).__mro__
    return any(c.__name__ in _REPORTED_NAMES and c.__module__.startswith("prunax.") for c in kinds)


def hint(err: BaseException, study) -> str:
    """What to do about a reported error, appended to its line ("" when there is nothing to add)."""
    if type(err).__name__ == "NonFiniteLoss" and hasattr(study, "lr"):
        return f" (a lower --lr than {study.lr:g} may help; rerun without --resume)"
    return ""


def _out_dir(args, study: str) -> Path:
    """``--out``, or ``runs/<study>-<time>`` when none was given."""
    out = getattr(args, "out", None)
    return Path(out) if out else Path("runs") / time.strftime(f"{study}-%Y%m%d-%H%M%S")


def _resume(args) -> bool:
    return getattr(args, "resume", False)


def prepare_out(args) -> None:
    """Before the study runs: a ValueError when ``--out`` or its parent is a file or the parent
    folder is missing (only the default ``runs/<study>-<time>`` creates ``runs/``); with
    ``--resume``, one line on stderr when the folder does not exist. Sets ``args.out``, so the
    whole run writes to one folder."""
    out = _out_dir(args, args.study)
    if getattr(args, "out", None):
        for path in (out, out.parent):
            if path.exists() and not path.is_dir():
                raise ValueError(f"{path} is a file, not a folder; give a folder to write the run into")
        if not out.parent.exists():
            raise ValueError(
                f"the parent folder {out.parent} does not exist; create it first or give another --out"
            )
    if _resume(args) and not out.is_dir():
        _progress(f"prunax: --resume: {out} does not exist; starting fresh")
    args.out = str(out)


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _indented(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


def _write_report(args, study: str, markdown: str) -> None:
    """``report.md`` in the output folder, and say where."""
    folder = _out_dir(args, study)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.md").write_text(markdown)
    print(f"\nreport written to {folder / 'report.md'}")


def _check_problem(problem: str, size: str) -> None:
    """A ValueError, before anything is built, when the problem or its size is unknown (the
    studies check structures against the problem's groups before any training)."""
    from prunax import problems

    valid = problems.sizes(problem)  # raises for an unknown problem, listing the valid ones
    if size not in valid:
        raise ValueError(f"unknown size {size!r} for {problem}; valid: {valid}")


def projection(study: configs.ProjectionBench, args) -> int:
    from prunax.benchmarks.speed import families
    from prunax.benchmarks.speed import projection as bench

    sizes = tuple(int(s) for s in study.sizes)
    print(f"prunax {prunax.__version__}: projection benchmark, sizes {sizes}, k/n {study.fractions}")
    progress = lambda msg: print(f"  timing {msg}", file=sys.stderr, flush=True)  # noqa: E731
    rows = bench.run(
        sizes=sizes,
        fractions=study.fractions,
        methods=study.methods,
        repeats=study.repeats,
        progress=progress,
    )
    sharded = None
    if not study.no_sharded:
        progress(f"keep_top_k on {bench.SHARDED_DEVICES} forced host devices (a subprocess)")
        sharded = bench.run_sharded(sizes=sizes, fractions=study.fractions, repeats=study.repeats)
    text = bench.report(rows, sharded)
    print(text)
    family_text = ""
    if not study.no_families:
        family_text = families.report(families.run(sizes=sizes, repeats=study.repeats, progress=progress))
        print("\n" + family_text)
    body = f"# Projection speed\n\n{text}\n\n## Every constraint family\n\n{family_text}\n"
    _write_report(args, "projection", body)
    return 0


def support(study: configs.SupportStudy, args) -> int:
    from prunax.benchmarks.studies import support as support_recovery

    print(f"prunax {prunax.__version__}: support recovery on k-sparse least squares (n=12, k=3)")
    rows = support_recovery.study(seeds=tuple(range(study.seeds)), count=study.instances, progress=_indented)
    text = support_recovery.report(rows)
    print(text)
    intro = (support_recovery.__doc__ or "").strip()
    _write_report(args, "support", f"# Support recovery\n\n{intro}\n\n{text}\n")
    return 0


def overhead(study: configs.OverheadBench, args) -> int:
    from prunax.benchmarks.speed import overhead as bench

    _check_problem(study.problem, study.size)
    print(
        f"prunax {prunax.__version__}: solver step overhead on {study.problem}/{study.size}, "
        f"batch {study.batch_size}"
    )
    rows = bench.run(
        study.problem,
        study.size,
        batch_size=study.batch_size,
        repeats=study.repeats,
        methods=study.methods,
        progress=_indented,
    )
    text = bench.report(rows, study.problem, study.size, study.batch_size)
    print(text)
    _write_report(args, "overhead", f"# Solver overhead\n\n{(bench.__doc__ or '').strip()}\n\n{text}\n")
    return 0


def _run_grid(study: configs.ConvergenceStudy, args, name: str) -> tuple[list[dict], Path]:
    """Check the problem, then run every (method, sparsity, seed) of the grid (resumable)."""
    from prunax.benchmarks.studies import convergence as grid

    _check_problem(study.problem, study.size)
    out = _out_dir(args, name)
    print(
        f"prunax {prunax.__version__}: convergence per retraining epoch on {study.problem}/{study.size}: "
        f"{', '.join(study.methods)} at {study.structure} sparsity "
        f"{', '.join(f'{s:g}' for s in study.sparsities)}, "
        f"{len(study.runs())} runs (the dense start is trained once and cached)"
    )
    rows = grid.run(study, out, resume=_resume(args), quiet=False, progress=_progress)
    return rows, out


def convergence(study: configs.ConvergenceStudy, args) -> int:
    from prunax.benchmarks.studies import convergence as grid

    rows, out = _run_grid(study, args, "convergence")
    grid.report(rows, study, out)
    print()
    print(grid.summary(rows, study))
    print("\n" + grid.conclusion(rows, study))
    print(f"\nreport and plots written to {out / 'report.md'}")
    return 0


def blocks(study: configs.ConvergenceStudy, args) -> int:
    from prunax.benchmarks.studies import blocks as block_pruning
    from prunax.benchmarks.studies import convergence as grid

    rows, out = _run_grid(study, args, "blocks")
    section = (
        f"## Accuracy vs encoder compression ({study.structure})\n\n"
        "Metric after the last retraining epoch (after the hard prune in brackets), then its change "
        "from dense in points.\n\n"
        f"{block_pruning.compression_table(rows, study)}\n\n{block_pruning.goal(rows, study)}\n"
    )
    intro = (block_pruning.__doc__ or "").strip()
    grid.report(rows, study, out, intro=f"{intro}\n\n{section}")
    print("\n" + section)
    print(f"report and plots written to {out / 'report.md'}")
    return 0


def spd(study: configs.DistillationStudy, args) -> int:
    from prunax.benchmarks.studies import distillation as distillation_study

    _check_problem("bert", study.size)
    out = _out_dir(args, "spd")
    print(
        f"prunax {prunax.__version__}: sparse progressive distillation on bert/{study.size}: "
        f"{', '.join(study.methods)} at {', '.join(f'{a} {b:g}' for a, b in study.settings)}",
        flush=True,
    )
    rows = distillation_study.run(study, out, resume=_resume(args), quiet=False, progress=_progress)
    distillation_study.report(rows, study, out)
    print("\n" + distillation_study.table(rows, study))
    print("\n".join(distillation_study.order(rows, study)))
    print(f"\nreport written to {out / 'report.md'}")
    return 0


def structures(study: configs.StructuresStudy, args) -> int:
    from prunax.benchmarks.studies import structures as hard

    _check_problem("resnet", study.size)
    out = _out_dir(args, "structures")
    print(
        f"prunax {prunax.__version__}: constraints magnitude ranks poorly, on resnet/{study.size}: "
        f"{', '.join(study.methods)} on {', '.join(study.structures)}",
        flush=True,
    )
    rows = hard.run(study, out, resume=_resume(args), quiet=False, progress=_progress)
    hard.report(rows, study, out)
    print("\n" + "\n".join(f"* {hard.conclusion(rows, study, s)}" for s in study.structures))
    print(f"\nreport written to {out / 'report.md'}")
    return 0


def oneshot(study: configs.OneShotStudy, args) -> int:
    from prunax.benchmarks.studies import oneshot as oneshot_study

    _check_problem(study.problem, study.size)
    out = _out_dir(args, "oneshot")
    what = "sentences" if study.problem == "bert" else "token windows"
    print(
        f"prunax {prunax.__version__}: one-shot pruning of {study.problem}/{study.size} from "
        f"{study.examples} calibration {what}: {', '.join(study.methods)} on "
        f"{', '.join(study.chosen_structures)}",
        flush=True,
    )
    rows = oneshot_study.run(study, out, resume=_resume(args), quiet=False, progress=_progress)
    oneshot_study.report(rows, study, out)
    structures = study.chosen_structures
    print("\n" + "\n".join(f"* {oneshot_study.conclusion(rows, study, s)}" for s in structures))
    print(f"\nreport written to {out / 'report.md'}")
    return 0


def forms(study: configs.FormsStudy, args) -> int:
    from prunax.benchmarks.studies import forms as forms_study

    _check_problem("resnet", study.size)
    out = _out_dir(args, "forms")
    print(
        f"prunax {prunax.__version__}: FORMS polarized fragments on resnet/{study.size}: ADMM on "
        f"{', '.join(study.structures)} at sparsity {study.sparsity:g}, fragments "
        f"{', '.join(map(str, study.fragments))} and none",
        flush=True,
    )
    rows = forms_study.run(study, out, resume=_resume(args), quiet=False, progress=_progress)
    forms_study.report(rows, study, out)
    print("\n" + forms_study.table(rows, study))
    print(f"\nreport and plot written to {out / 'report.md'}")
    return 0


def allocation(study: configs.AllocationStudy, args) -> int:
    from prunax.benchmarks.studies import allocation as allocation_study

    _check_problem(study.problem, study.size)
    out = _out_dir(args, "allocation")
    print(
        f"prunax {prunax.__version__}: latency-budgeted allocation vs uniform sparsity {study.sparsity:g} "
        f"on {study.problem}/{study.size} ({configs.ALLOCATION_STRUCTURES[study.problem]} pruning)",
        flush=True,
    )
    result = allocation_study.run(study, out, resume=_resume(args), quiet=False, progress=_progress)
    print("\n" + allocation_study.report(result, study, out).split("\n\n", 3)[-1])
    print(f"\nreport written to {out / 'report.md'}")
    return 0


def speedup(study: configs.SpeedupStudy, args) -> int:
    from prunax.benchmarks.studies import speedup as speedup_study

    for name in study.models:
        problem, size, *_ = study.model(name)
        _check_problem(problem, size)
    out = _out_dir(args, "speedup")
    print(
        f"prunax {prunax.__version__}: coupled structured pruning and compaction of "
        f"{', '.join(study.models)} at sparsities {list(study.sparsities)} with {', '.join(study.methods)}",
        flush=True,
    )
    rows = speedup_study.run(study, out, resume=_resume(args), quiet=False, progress=_progress)
    speedup_study.report(rows, study, out)
    print("\n" + speedup_study.table(rows, study))
    print("\n".join(["", *speedup_study.conclusions(rows, study)]))
    print(f"\nreport and plot written to {out / 'report.md'}")
    return 0


def rt3(study: configs.RT3Study, args) -> int:
    from prunax.benchmarks.studies import rt3 as rt3_study

    _check_problem("bert", study.size)
    out = _out_dir(args, "rt3")
    print(
        f"prunax {prunax.__version__}: RT3 on bert/{study.size}: {study.tile}x{study.tile} blocks at "
        f"{study.block_sparsity:g}, {len(study.candidates)} pattern candidates, "
        f"{len(study.frequencies)} frequency levels",
        flush=True,
    )
    result = rt3_study.run(study, out, resume=_resume(args), quiet=False, progress=_progress)
    rt3_study.report(result, study, out)
    print("\n" + rt3_study.tables(result, study))
    print(f"\nswitch time {result['switch_ms']:.2f} ms; report and plot written to {out / 'report.md'}")
    return 0


def bias(study: configs.BiasStudy, args) -> int:
    from prunax.benchmarks.studies import bias as bias_study

    out = _out_dir(args, "bias")
    out.mkdir(parents=True, exist_ok=True)
    print(
        f"prunax {prunax.__version__}: gender-bias detector on MiniLM, dense and magnitude-pruned at "
        f"{', '.join(f'{s:g}' for s in study.sparsities)}"
        + (f" (one-shot and +{study.epochs} retraining epochs)" if study.epochs else " (one-shot)"),
        flush=True,
    )
    models = bias_study.encoders(study.sparsities, study.epochs, out, quiet=False)
    results = bias_study.study(models)
    bias_study.report(results, models, out)
    print(bias_study.comparison(results, models))
    print(f"\nreport and plot written to {out / 'report.md'}")
    return 0


def problems(study: None, args) -> int:
    from prunax import problems as registry

    for name in registry.names():
        module = registry.REGISTRY[name]
        summary = (module.__doc__ or "").strip().splitlines()[0].removeprefix(f"``{name}``: ")
        print(f"{name}: {summary}")
        print(f"  sizes: {', '.join(registry.sizes(name))} (test = seconds-long smoke size)")
    return 0

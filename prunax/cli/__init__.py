"""The ``prunax`` console script."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import prunax


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(t) for t in text.split(",") if t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _out_dir(out: str | None, study: str) -> Path:
    """``out``, or ``runs/<study>-<time>`` when none was given."""
    return Path(out) if out else Path("runs") / time.strftime(f"{study}-%Y%m%d-%H%M%S")


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _write_report(out: str | None, study: str, markdown: str) -> None:
    """``report.md`` in ``out`` (default ``runs/<study>-<time>``), and say where."""
    folder = _out_dir(out, study)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.md").write_text(markdown)
    print(f"\nreport written to {folder / 'report.md'}")


def _bench_projection(args) -> int:
    from prunax.benchmarks.speed import families, projection

    sizes = tuple(int(s) for s in args.sizes)
    print(f"prunax {prunax.__version__}: top-k selection benchmark, sizes {sizes}, k/n {args.fractions}")
    progress = lambda msg: print(f"  timing {msg}", file=sys.stderr, flush=True)  # noqa: E731
    rows = projection.run(
        sizes=sizes, fractions=args.fractions, methods=args.methods, repeats=args.repeats, progress=progress
    )
    text = projection.report(rows)
    print(text)
    family_text = ""
    if not args.no_families:
        family_text = families.report(families.run(sizes=sizes, repeats=args.repeats, progress=progress))
        print("\n" + family_text)
    body = f"# Top-k selection speed\n\n{text}\n\n## Every constraint family\n\n{family_text}\n"
    _write_report(args.out, "projection", body)
    return 0


def _bench_support(args) -> int:
    from prunax.benchmarks.studies import support as support_recovery

    print(f"prunax {prunax.__version__}: support recovery on k-sparse least squares (n=12, k=3)")
    rows = support_recovery.study(
        seeds=tuple(range(args.seeds)),
        count=args.instances,
        progress=lambda msg: print(f"  {msg}", file=sys.stderr, flush=True),
    )
    text = support_recovery.report(rows)
    print(text)
    intro = (support_recovery.__doc__ or "").strip()
    _write_report(args.out, "support", f"# Support recovery\n\n{intro}\n\n{text}\n")
    return 0


def _bench_overhead(args) -> int:
    from prunax.benchmarks.speed import overhead

    print(
        f"prunax {prunax.__version__}: solver step overhead on {args.problem}/{args.size}, "
        f"batch {args.batch_size}"
    )
    rows = overhead.run(
        args.problem,
        args.size,
        batch_size=args.batch_size,
        repeats=args.repeats,
        methods=args.methods,
        progress=lambda msg: print(f"  {msg}", file=sys.stderr, flush=True),
    )
    text = overhead.report(rows, args.problem, args.size, args.batch_size)
    print(text)
    _write_report(
        args.out, "overhead", f"# Solver overhead\n\n{(overhead.__doc__ or '').strip()}\n\n{text}\n"
    )
    return 0


def _names(text: str) -> tuple[str, ...]:
    return tuple(t for t in text.split(",") if t)


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.split(",") if t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _run_grid(args, study: str):
    """Build the grid from the arguments and run it (resumable); returns (rows, grid, output
    folder)."""
    from prunax import problems
    from prunax.benchmarks.studies import convergence

    if args.size not in problems.sizes(args.problem):
        raise ValueError(
            f"unknown size {args.size!r} for {args.problem}; valid: {problems.sizes(args.problem)}"
        )
    grid = convergence.Grid(
        problem=args.problem,
        size=args.size,
        methods=args.methods,
        sparsities=args.sparsity,
        seeds=args.seeds,
        solve_epochs=args.solve_epochs,
        retrain_epochs=args.retrain_epochs,
        lr=args.lr,
        structure=args.structure,
    )
    out = _out_dir(args.out, study)
    print(
        f"prunax {prunax.__version__}: convergence per retraining epoch on {grid.problem}/{grid.size}: "
        f"{', '.join(grid.methods)} at {grid.structure} sparsity "
        f"{', '.join(f'{s:g}' for s in grid.sparsities)}, "
        f"{len(grid.runs())} runs (the dense start is trained once and cached)"
    )
    rows = convergence.run_grid(
        grid,
        out,
        resume=args.resume,
        quiet=False,
        progress=_progress,
    )
    return rows, grid, out


def _bench_convergence(args) -> int:
    from prunax.benchmarks.studies import convergence

    rows, grid, out = _run_grid(args, "convergence")
    convergence.report(rows, grid, out)
    print()
    print(convergence.summary(rows, grid))
    print(f"\nreport and plots written to {out / 'report.md'}")
    return 0


def _bench_blocks(args) -> int:
    from prunax.benchmarks.studies import blocks as block_pruning
    from prunax.benchmarks.studies import convergence

    rows, grid, out = _run_grid(args, "blocks")
    section = (
        f"## Accuracy vs encoder compression ({grid.structure})\n\n"
        "Metric after the last retraining epoch (after the hard prune in brackets), then its change "
        "from dense in points.\n\n"
        f"{block_pruning.compression_table(rows, grid)}\n\n{block_pruning.goal(rows, grid)}\n"
    )
    intro = (block_pruning.__doc__ or "").strip()
    convergence.report(rows, grid, out, intro=f"{intro}\n\n{section}")
    print("\n" + section)
    print(f"report and plots written to {out / 'report.md'}")
    return 0


def _bench_spd(args) -> int:
    from prunax.benchmarks.studies import distillation as distillation_study

    if len(args.epochs) != 3:
        raise ValueError(f"--epochs takes pruning,replacing,fine-tuning epochs, got {list(args.epochs)}")
    prune, replace, finetune = args.epochs
    study = distillation_study.Study(
        size=args.size,
        settings=tuple((structure, float(s)) for structure, s in (x.split(":") for x in args.settings)),
        methods=args.methods,
        prune_epochs=prune,
        replace_epochs=replace,
        finetune_epochs=finetune,
        lr=args.lr,
        seed=args.seed,
    )
    out = _out_dir(args.out, "spd")
    print(
        f"prunax {prunax.__version__}: sparse progressive distillation on bert/{study.size}: "
        f"{', '.join(study.methods)} at {', '.join(f'{a} {b:g}' for a, b in study.settings)}",
        flush=True,
    )
    rows = distillation_study.run(study, out, resume=args.resume, quiet=False, progress=_progress)
    distillation_study.report(rows, study, out)
    print("\n" + distillation_study.table(rows, study))
    print("\n".join(distillation_study.order(rows, study)))
    print(f"\nreport written to {out / 'report.md'}")
    return 0


def _bench_forms(args) -> int:
    from prunax.benchmarks.studies import forms as forms_study

    study = forms_study.Study(
        size=args.size,
        structures=args.structures,
        sparsity=args.sparsity,
        fragments=(None, *args.fragments),
        solve_epochs=args.solve_epochs,
        retrain_epochs=args.retrain_epochs,
        lr=args.lr,
        seed=args.seed,
    )
    out = _out_dir(args.out, "forms")
    print(
        f"prunax {prunax.__version__}: FORMS polarized fragments on resnet/{study.size}: ADMM on "
        f"{', '.join(study.structures)} at sparsity {study.sparsity:g}, fragments "
        f"{', '.join(map(str, args.fragments))} and none",
        flush=True,
    )
    rows = forms_study.run(study, out, resume=args.resume, quiet=False, progress=_progress)
    forms_study.report(rows, study, out)
    print("\n" + forms_study.table(rows, study))
    print(f"\nreport and plot written to {out / 'report.md'}")
    return 0


def _bench_allocation(args) -> int:
    from prunax.benchmarks.studies import allocation as allocation_study

    if args.problem not in allocation_study.STRUCTURES:
        raise ValueError(
            f"allocation studies exist for {sorted(allocation_study.STRUCTURES)}, got {args.problem!r}"
        )
    study = allocation_study.Study(
        problem=args.problem,
        size=args.size,
        sparsity=args.sparsity,
        solve_epochs=args.solve_epochs,
        retrain_epochs=args.retrain_epochs,
        lr=args.lr if args.lr is not None else allocation_study.LEARNING_RATES[args.problem],
        seed=args.seed,
        repeats=args.repeats,
    )
    out = _out_dir(args.out, "allocation")
    print(
        f"prunax {prunax.__version__}: latency-budgeted allocation vs uniform sparsity {study.sparsity:g} "
        f"on {study.problem}/{study.size} ({allocation_study.STRUCTURES[study.problem]} pruning)",
        flush=True,
    )
    result = allocation_study.run(study, out, resume=args.resume, quiet=False, progress=_progress)
    print("\n" + allocation_study.report(result, study, out).split("\n\n", 3)[-1])
    print(f"\nreport written to {out / 'report.md'}")
    return 0


def _bench_rt3(args) -> int:
    from prunax.benchmarks.studies import rt3 as rt3_study

    study = rt3_study.Study(
        size=args.size,
        tile=args.tile,
        block_sparsity=args.block_sparsity,
        solve_epochs=args.solve_epochs,
        retrain_epochs=args.retrain_epochs,
        shared_epochs=args.shared_epochs,
        lr=args.lr,
        densities=args.densities,
        set_sizes=args.set_sizes,
        frequencies=args.frequencies,
        steps=args.steps,
        seed=args.seed,
    )
    out = _out_dir(args.out, "rt3")
    print(
        f"prunax {prunax.__version__}: RT3 on bert/{study.size}: {study.tile}x{study.tile} blocks at "
        f"{study.block_sparsity:g}, {len(study.candidates)} pattern candidates, "
        f"{len(study.frequencies)} frequency levels",
        flush=True,
    )
    result = rt3_study.run(study, out, resume=args.resume, quiet=False, progress=_progress)
    rt3_study.report(result, study, out)
    print("\n" + rt3_study.tables(result, study))
    print(f"\nswitch time {result['switch_ms']:.2f} ms; report and plot written to {out / 'report.md'}")
    return 0


def _settings(text: str) -> tuple[str, ...]:
    items = tuple(t for t in text.split(",") if t)
    for item in items:
        structure, _, sparsity = item.partition(":")
        try:
            float(sparsity)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected structure:sparsity items, got {item!r}") from None
    return items


def _add_convergence_arguments(parser, default=None) -> None:
    from prunax.benchmarks.studies.convergence import Grid

    default = default or Grid()
    parser.add_argument("--problem", default=default.problem, help="see `prunax problems`")
    parser.add_argument("--size", default=default.size)
    parser.add_argument(
        "--methods", type=_names, default=default.methods, help="admm,slr,rgl,magnitude,gradual"
    )
    parser.add_argument("--sparsity", type=_floats, default=default.sparsities, help="e.g. 0.8,0.9,0.95")
    parser.add_argument(
        "--structure", default=default.structure, help="unstructured or a group of the problem (block16, ...)"
    )
    parser.add_argument("--solve-epochs", type=int, default=default.solve_epochs)
    parser.add_argument("--retrain-epochs", type=int, default=default.retrain_epochs)
    parser.add_argument("--seeds", type=_ints, default=default.seeds, help="e.g. 0,1,2")
    parser.add_argument("--lr", type=float, default=default.lr, help="Adam learning rate (solve and retrain)")
    parser.add_argument("--out", help="output folder (default runs/<study>-<time>)")
    parser.add_argument("--resume", action="store_true", help="skip finished runs, resume the unfinished one")


def _bias(args) -> int:
    from prunax.benchmarks.studies import bias as bias_study

    out = _out_dir(args.out, "bias")
    out.mkdir(parents=True, exist_ok=True)
    print(
        f"prunax {prunax.__version__}: gender-bias detector on MiniLM, dense and magnitude-pruned at "
        f"{', '.join(f'{s:g}' for s in args.sparsity)}"
        + (f" (one-shot and +{args.epochs} retraining epochs)" if args.epochs else " (one-shot)"),
        flush=True,
    )
    models = bias_study.encoders(args.sparsity, args.epochs, out, quiet=False)
    results = bias_study.study(models)
    bias_study.report(results, models, out)
    print(bias_study.comparison(results, models))
    print(f"\nreport and plot written to {out / 'report.md'}")
    return 0


def _problems(args) -> int:
    from prunax import problems

    for name in problems.names():
        module = problems.REGISTRY[name]
        summary = (module.__doc__ or "").strip().splitlines()[0].removeprefix(f"``{name}``: ")
        print(f"{name}: {summary}")
        print(f"  sizes: {', '.join(problems.sizes(name))} (test = seconds-long smoke size)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prunax", description=prunax.__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"prunax {prunax.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    bench = commands.add_parser(
        "bench", help="run a benchmark (no STUDY: the default convergence study, about 10 minutes)"
    )
    _add_convergence_arguments(bench)
    bench.set_defaults(run=_bench_convergence)
    studies = bench.add_subparsers(dest="study", metavar="STUDY")
    conv = studies.add_parser(
        "convergence", help="methods x sparsities x seeds through prune: the SLR question"
    )
    _add_convergence_arguments(conv)
    conv.set_defaults(run=_bench_convergence)
    blocks = studies.add_parser(
        "blocks", help="MiniLM block pruning: RGL vs ADMM vs magnitude at 2x-5x encoder compression (~50 min)"
    )
    _add_convergence_arguments(blocks, _block_grid())
    blocks.set_defaults(run=_bench_blocks)
    proj = studies.add_parser("projection", help="exact top-k kernel vs lax.top_k, sort, np.partition")
    proj.add_argument("--sizes", type=_floats, default=(1e5, 1e6, 1e7), help="e.g. 1e5,1e6,1e7,3e7")
    proj.add_argument("--fractions", type=_floats, default=(0.5, 0.1, 0.01), help="kept fractions k/n")
    proj.add_argument("--methods", type=_names, default=_methods(), help="comma-separated subset")
    proj.add_argument("--repeats", type=int, default=7)
    proj.add_argument("--no-families", action="store_true", help="only the top-k table")
    proj.add_argument("--out", help="report folder (default runs/projection-<time>)")
    proj.set_defaults(run=_bench_projection)
    support = studies.add_parser("support", help="ADMM, SLR, group lasso, magnitude: optimal-support rate")
    support.add_argument("--seeds", type=int, default=5, help="number of seeds (0, 1, ...)")
    support.add_argument("--instances", type=int, default=100, help="instances per seed")
    support.add_argument("--out", help="report folder (default runs/support-<time>)")
    support.set_defaults(run=_bench_support)
    over = studies.add_parser("overhead", help="solver step time against the plain optax step")
    over.add_argument("--problem", default="resnet")
    over.add_argument("--size", default="default")
    over.add_argument("--batch-size", type=int, default=64)
    over.add_argument("--repeats", type=int, default=20)
    over.add_argument("--methods", type=_names, default=_overhead_methods(), help="comma-separated subset")
    over.add_argument("--out", help="report folder (default runs/overhead-<time>)")
    over.set_defaults(run=_bench_overhead)
    bias = commands.add_parser(
        "bias", help="gender-bias detector on MiniLM's attention maps, before and after pruning (~6 min)"
    )
    bias.add_argument("--sparsity", type=_floats, default=(0.5, 0.8), help="magnitude sparsities")
    bias.add_argument(
        "--epochs", type=int, default=1, help="embedding-preserving retraining epochs (0: none)"
    )
    bias.add_argument("--out", help="report folder (default runs/bias-<time>)")
    bias.set_defaults(run=_bias)
    spd = studies.add_parser(
        "spd", help="MiniLM: sparse progressive distillation vs magnitude + KD vs magnitude (~50 min)"
    )
    spd.add_argument("--size", default="default", help="bert size (test: the tiny smoke model)")
    spd.add_argument(
        "--settings",
        type=_settings,
        default=("unstructured:0.9", "block16:0.5"),
        help="structure:sparsity items, e.g. unstructured:0.9,neuron:0.5",
    )
    spd.add_argument("--methods", type=_names, default=_spd_methods(), help="spd,magnitude+kd,magnitude")
    spd.add_argument("--epochs", type=_ints, default=(2, 1, 1), help="pruning,replacing,fine-tuning epochs")
    spd.add_argument("--lr", type=float, default=1e-4, help="peak AdamW learning rate (restarted per stage)")
    spd.add_argument("--seed", type=int, default=0, help="seed of the dense teacher, batches and layer draws")
    spd.add_argument("--out", help="output folder (default runs/spd-<time>)")
    spd.add_argument("--resume", action="store_true", help="skip finished runs, resume the unfinished one")
    spd.set_defaults(run=_bench_spd)
    forms = studies.add_parser(
        "forms", help="FORMS: ADMM into polarized crossbar fragments on ResNet/MNIST, crossbar costs (~8 min)"
    )
    forms.add_argument("--size", default="default", help="resnet size (test: the smoke size)")
    forms.add_argument(
        "--structures",
        type=_names,
        default=("unstructured", "column"),
        help="unstructured and/or resnet groups",
    )
    forms.add_argument("--sparsity", type=float, default=0.8)
    forms.add_argument(
        "--fragments", type=_ints, default=(4, 8, 16), help="fragment sizes (a run without polarity is added)"
    )
    forms.add_argument("--solve-epochs", type=int, default=2)
    forms.add_argument("--retrain-epochs", type=int, default=2)
    forms.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (solve and retrain)")
    forms.add_argument("--seed", type=int, default=0)
    forms.add_argument("--out", help="output folder (default runs/forms-<time>)")
    forms.add_argument("--resume", action="store_true", help="skip finished runs, resume the unfinished one")
    forms.set_defaults(run=_bench_forms)
    alloc = studies.add_parser(
        "allocation", help="CANAO idea: per-layer sparsities from measured latency vs uniform, same budget"
    )
    alloc.add_argument("--problem", default="resnet", help="resnet (filters) or bert (output columns)")
    alloc.add_argument("--size", default="default")
    alloc.add_argument(
        "--sparsity", type=float, default=0.5, help="uniform reference; its latency is the budget"
    )
    alloc.add_argument("--solve-epochs", type=int, default=2)
    alloc.add_argument("--retrain-epochs", type=int, default=2)
    alloc.add_argument("--lr", type=float, help="Adam learning rate (default: resnet 1e-3, bert 1e-4)")
    alloc.add_argument("--seed", type=int, default=0)
    alloc.add_argument("--repeats", type=int, default=10, help="timed calls per layer and sparsity")
    alloc.add_argument("--out", help="output folder (default runs/allocation-<time>)")
    alloc.add_argument("--resume", action="store_true", help="reuse the latency table and finished runs")
    alloc.set_defaults(run=_bench_allocation)
    rt3 = studies.add_parser(
        "rt3", help="RT3: block pruning, pattern sets per frequency level by REINFORCE, switching (~8 min)"
    )
    rt3.add_argument("--size", default="default", help="bert size (test: the tiny BERT)")
    rt3.add_argument("--tile", type=int, default=16, help="block and pattern tile side b")
    rt3.add_argument("--block-sparsity", type=float, default=0.5)
    rt3.add_argument("--solve-epochs", type=int, default=2)
    rt3.add_argument("--retrain-epochs", type=int, default=1)
    rt3.add_argument(
        "--shared-epochs", type=int, default=2, help="level-aware training (a candidate's masks per step)"
    )
    rt3.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (block pruning and shared)")
    rt3.add_argument(
        "--densities", type=_floats, default=(0.75, 0.5, 0.375, 0.25), help="kept fractions of a tile"
    )
    rt3.add_argument("--set-sizes", type=_ints, default=(4, 32), help="patterns per kernel")
    rt3.add_argument(
        "--frequencies", type=_floats, default=(1.0, 0.8, 0.6, 0.4), help="levels, relative to the top"
    )
    rt3.add_argument("--steps", type=int, default=200, help="REINFORCE steps (batches of 8 per level)")
    rt3.add_argument("--seed", type=int, default=0)
    rt3.add_argument("--out", help="output folder (default runs/rt3-<time>)")
    rt3.add_argument("--resume", action="store_true", help="resume block pruning, keep evaluated candidates")
    rt3.set_defaults(run=_bench_rt3)
    listing = commands.add_parser("problems", help="list the problems and their sizes")
    listing.set_defaults(run=_problems)
    return parser


def _spd_methods():
    from prunax.benchmarks.studies.distillation import METHODS

    return METHODS


def _block_grid():
    from prunax.benchmarks.studies.blocks import GRID

    return GRID


def _overhead_methods():
    from prunax.benchmarks.speed.overhead import METHODS

    return METHODS


def _methods():
    from prunax.benchmarks.speed.projection import METHODS

    return METHODS


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 0
    try:
        return args.run(args)
    except ValueError as err:
        parser.error(str(err))


if __name__ == "__main__":
    sys.exit(main())

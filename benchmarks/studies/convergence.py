"""Convergence per retraining epoch (docs/benchmarks.md): methods × sparsities × seeds on one problem, all
through ``solvers.prune`` from the same cached dense start with the same epoch budgets.

The question the report answers: do the constrained solvers keep accuracy at the hard-prune point
(0 retraining epochs), and do they beat gradual magnitude pruning, the strongest simple baseline,
at the same epochs? Every method gets the same solve and retraining epochs and the same BatchNorm
recalibration after the hard prune (shown without it too).

Methods (over the problem's default prunable leaves, unstructured or one of the problem's
natural ``groups`` such as ``block16``; Adam in the solve phase):

* ``admm`` — decoupled: Adam's step pulled towards Z − U, γ 0.03 → 1 over the solve phase's
  Z-updates (4 per epoch), the dual rescaled as γ grows;
* ``slr`` — decoupled with the same pull, the reference constants (ρ 0.1, s⁰ 0.01, M 300, r 0.1),
  multiplier updates 4× per epoch;
* ``rgl`` — reweighted group lasso over the constraint's groups, proximal form, α from the dense
  start (never refreshed, as the authors' scripts); λ per leaf from ``solvers.rgl_lambda``;
* ``magnitude`` — one-shot: pruned at the first solve step, then trained masked;
* ``gradual`` — Zhu & Gupta's cubic ramp over the first ¾ of the solve phase, 4 mask updates per epoch.

The hyperparameters live in ``benchmarks.methods.CONVERGENCE``. Each invocation writes, in its
output folder: ``runs.jsonl`` (one JSON line per finished run),
``report.md`` and PNG plots; ``resume=True`` skips finished runs and resumes the unfinished one
from its checkpoint.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import optax

from prunax import problems, solvers

from .. import harness
from ..configs import ConvergenceStudy
from ..methods import CONVERGENCE, SolvePhase, lookup


def run_key(method: str, sparsity: float, seed: int) -> str:
    return f"{method}-s{sparsity:g}-seed{seed}"


def method_run(problem, method: str, spec, sparsity: float, start, grid, seed: int, **run) -> dict:
    """``CONVERGENCE[method]`` on ``spec`` from ``start`` with the epochs and learning rate of
    ``grid`` (Adam in the solve, Adam in the retraining); ``harness.run_prune``'s row."""
    phase = SolvePhase.of(problem, spec, grid.lr, grid.solve_epochs, start=start[0], sparsity=sparsity)
    tx = lookup(CONVERGENCE, method).transform(phase)
    budget = harness.Budget(grid.solve_epochs, grid.retrain_epochs, optax.adam(grid.lr), seed)
    return harness.run_prune(problem, spec, tx, start, budget, **run)[0]


def one_run(grid: ConvergenceStudy, problem, method: str, sparsity: float, seed: int, out, resume, quiet):
    """``method`` at ``sparsity`` from the dense start of ``seed``; returns the summary row."""
    start = solvers.pretrained(problem, seed=seed, quiet=quiet)
    spec = harness.constraint_spec(problem, grid.structure, sparsity)
    fields = {"problem": grid.problem, "size": grid.size, "method": method, "structure": grid.structure}
    fields |= {"sparsity": sparsity, "seed": seed, "metric": problem.metric}
    key = run_key(method, sparsity, seed)
    return method_run(
        problem,
        method,
        spec,
        sparsity,
        start,
        grid,
        seed,
        key=key,
        out=out,
        resume=resume,
        quiet=quiet,
        fields=fields,
    )


def run(
    grid: ConvergenceStudy, out: Path, resume: bool = False, quiet: bool = True, progress=None
) -> list[dict]:
    """Every run of the grid (finished ones skipped when resuming); returns all result rows."""
    problem = problems.get(grid.problem, grid.size)
    harness.check_structures(problem, [grid.structure])
    log = harness.RunLog(out, resume)
    runs = [
        (run_key(*r), partial(one_run, grid, problem, *r, out=out, resume=resume, quiet=quiet))
        for r in grid.runs()
    ]
    return log.rows(runs, progress, f"{grid.problem}/{grid.size} ")


MASKED_METHODS = ("magnitude", "gradual")  # train masked during the solve: nothing left to hard-prune


def label(method: str) -> str:
    """The method's name in the tables, marked when its hard prune is its masked solve result."""
    return f"{method}¹" if method in MASKED_METHODS else method


MASKED_NOTE = (
    "¹ trains masked during the solve, so its hard prune removes nothing: its hard-prune values are "
    "its masked solve result."
)


def runs_of(rows: list[dict], method: str, sparsity: float) -> list[dict]:
    """The rows of ``method`` at ``sparsity`` (one per seed)."""
    return [r for r in rows if r["method"] == method and r["sparsity"] == sparsity]


def tables(rows: list[dict], grid: ConvergenceStudy) -> str:
    """Markdown: per stage (after solve, hard prune, each retraining epoch) a method × sparsity
    table of the metric in percent (mean ± std over seeds), then the budget columns."""
    stages = [("after the solve phase", lambda r: r["solved"])]
    if any(r.get("hard_prune_stale") is not None for r in rows):
        stages += [("hard prune, BatchNorm statistics of the solve", lambda r: r["hard_prune_stale"])]
        stages += [("hard prune + BatchNorm recalibration, 0 retraining epochs", lambda r: r["hard_prune"])]
    else:
        stages += [("hard prune, 0 retraining epochs", lambda r: r["hard_prune"])]
    stages += [
        (f"after retraining epoch {e + 1}", lambda r, e=e: r["retrain"][e] if e < len(r["retrain"]) else None)
        for e in range(grid.retrain_epochs)
    ]
    header = ["method", *(f"s = {s:g}" for s in grid.sparsities)]
    out = []
    for title, pick in stages:
        cells = [
            [
                label(method),
                *(harness.percent_cell(map(pick, runs_of(rows, method, s))) for s in grid.sparsities),
            ]
            for method in grid.methods
        ]
        out += [f"**{title}**", "", harness.markdown_table(header, cells), ""]
    if any(m in MASKED_METHODS for m in grid.methods):
        out += [MASKED_NOTE, ""]
    out += [
        "**retraining epochs to get within 1 point of dense; ‖W−Z‖/‖W‖ after the solve; wall time**",
        "",
        budget_table(rows),
    ]
    return "\n".join(out)


def budget_table(rows: list[dict]) -> str:
    """Markdown: per run the retraining epochs to dense − 1 point, the residual, the achieved
    sparsity, the wall time and the problem's other measurements."""
    header = ["run", "epochs to dense − 1 pt", "residual", "achieved sparsity", "seconds"]
    cells = []
    for r in rows:
        within = r["epochs_to_dense_minus_1pt"]
        cells.append(
            [
                r["key"],
                "not reached" if within is None else str(within),
                "—" if r["residual"] is None else f"{r['residual']:.3f}",
                f"{r['achieved_sparsity']:.4f}",
                f"{r['wall_seconds']:.0f}",
                other_metrics_cell(r),
            ]
        )
    return harness.markdown_table([*header, "other metrics, dense → final"], cells)


def other_metrics_cell(row: dict) -> str:
    """ "name dense → final" for each of the problem's other measurements, or "—"."""
    other = row.get("other_metrics") or {"dense": {}, "final": {}}
    pairs = [
        f"{k} {v:.4g} → {other['final'][k]:.4g}" for k, v in other["dense"].items() if k in other["final"]
    ]
    return "; ".join(pairs) or "—"


def summary(rows: list[dict], grid: ConvergenceStudy) -> str:
    """The table printed at the end: per method and sparsity, the metric after the solve, right
    after the hard prune (with the solve's BatchNorm statistics, then recalibrated) and after the
    last retraining epoch (%, mean ± std over seeds)."""
    header = [
        "method",
        "sparsity",
        "after solve",
        "hard prune",
        "+ BN recal.",
        f"retrained ({grid.retrain_epochs} ep)",
    ]
    cells = []
    for s in grid.sparsities:
        for method in grid.methods:
            mine = runs_of(rows, method, s)
            cells.append(
                [
                    label(method),
                    f"{s:g}",
                    harness.percent_cell([r["solved"] for r in mine]),
                    harness.percent_cell([r["hard_prune_stale"] for r in mine]),
                    harness.percent_cell([r["hard_prune"] for r in mine]),
                    harness.percent_cell([harness.final_metric(r) for r in mine]),
                ]
            )
    dense = np.mean([r["dense"] for r in rows])
    return f"dense {rows[0]['metric']}: {100 * dense:.1f} %\n" + harness.markdown_table(header, cells)


CONSTRAINED = ("admm", "slr", "rgl")


def best(runs: dict[str, list[dict]], value) -> tuple[str, float, float] | None:
    """(method, mean, std) of the method in ``runs`` ({method: its rows}) with the highest mean
    ``value(row)``; None when no method has rows."""
    scored = [
        (m, float(np.mean(v)), float(np.std(v)))
        for m, mine in runs.items()
        if (v := [value(r) for r in mine])
    ]
    return max(scored, key=lambda t: t[1]) if scored else None


def verdict(a: tuple[str, float, float], b: tuple[str, float, float]) -> str:
    """Which of two (method, mean, std) wins: by more than the larger std and 0.5 points (about the
    spread between seeds on the main job), or a tie."""
    margin = max(a[2], b[2], 0.005)
    if abs(a[1] - b[1]) <= margin:
        return "tie"
    return a[0] if a[1] > b[1] else b[0]


STAGES = (("hard prune", lambda r: r["hard_prune"]), ("end", harness.final_metric))


def compare(constrained: dict[str, list[dict]], baselines: dict[str, list[dict]]) -> tuple[str, list[str]]:
    """The best constrained solver against the best magnitude method at the hard prune and at the
    end ({method: rows} each): the sentence and the winner per stage ("tie" for a tie)."""
    cell = lambda t: f"{t[0]} {100 * t[1]:.1f} ± {100 * t[2]:.1f}"  # noqa: E731
    parts, winners = [], []
    for stage, value in STAGES:
        a, b = best(constrained, value), best(baselines, value)
        if a is None or b is None:
            return "no constrained solver or no magnitude baseline ran", ["tie"] * len(STAGES)
        winners.append(verdict(a, b))
        said = "a tie" if winners[-1] == "tie" else f"{winners[-1]} wins"
        parts.append(f"{stage}: {cell(a)} vs {cell(b)}, {said}")
    return "; ".join(parts), winners


def conclusion(rows: list[dict], grid: ConvergenceStudy) -> str:
    """Per sparsity, the best constrained solver against the best magnitude method at the hard
    prune and at the end of the budget, and who wins (a tie within the larger std, or 0.5 points)."""
    constrained = [m for m in grid.methods if m in CONSTRAINED]
    baselines = [m for m in grid.methods if m in MASKED_METHODS]
    if not constrained or not baselines:
        return "The grid has no constrained solver or no magnitude baseline to compare."
    lines, ends = [], []
    for s in grid.sparsities:
        pair = ({m: runs_of(rows, m, s) for m in constrained}, {m: runs_of(rows, m, s) for m in baselines})
        parts, winners = compare(*pair)
        lines.append(f"* sparsity {s:g} — {parts}.")
        ends.append(winners[-1])
    won = [s for s, w in zip(grid.sparsities, ends) if w in constrained]
    lost = [s for s, w in zip(grid.sparsities, ends) if w in baselines]
    if won and not lost:
        summary_line = (
            "A constrained solver ends ahead of magnitude pruning at every sparsity it does not tie."
        )
    elif lost and not won:
        where = "every sparsity" if len(lost) == len(ends) else ", ".join(f"{s:g}" for s in lost)
        rest = "" if len(lost) == len(ends) else " and ties at the others"
        summary_line = (
            f"Magnitude pruning ends ahead of the constrained solvers at {where}{rest}: on this budget "
            "the constrained solvers do not beat it."
        )
    elif won:
        summary_line = (
            f"Mixed: the constrained solvers end ahead at {', '.join(f'{s:g}' for s in won)} and behind at "
            f"{', '.join(f'{s:g}' for s in lost)}."
        )
    else:
        summary_line = (
            "After retraining every sparsity is a tie between the constrained solvers and magnitude pruning."
        )
    return "\n".join([*lines, "", summary_line])


def plots(rows: list[dict], grid: ConvergenceStudy, out: Path) -> list[Path]:
    """metric vs retraining epoch (a panel per sparsity) and hard-prune metric vs sparsity."""
    dense = np.mean([r["dense"] for r in rows])
    ylabel = rows[0]["metric"] + " (%)"
    curves, hard = out / "retraining.png", out / "hard_prune.png"
    panels = len(grid.sparsities)
    figure = dict(ncols=panels, figsize=(4 * panels, 3.4), squeeze=False, sharey=True)
    with harness.figure(curves, **figure) as (_, axes):
        for ax, s in zip(axes[0], grid.sparsities):
            for method in grid.methods:
                mine = runs_of(rows, method, s)
                if mine:
                    curve = np.mean([[r["hard_prune"], *r["retrain"]] for r in mine], axis=0)
                    ax.plot(range(len(curve)), 100 * curve, marker="o", label=method)
                    ax.set_xticks(range(len(curve)))
            ax.axhline(100 * dense, color="grey", linestyle="--", linewidth=1, label="dense")
            ax.set(title=f"sparsity {s:g}", xlabel="retraining epoch (0 = hard prune + BN)", ylabel=ylabel)
            ax.legend(fontsize=8)
    with harness.figure(hard, figsize=(4.5, 3.4)) as (_, ax):
        for method in grid.methods:
            values = [np.mean([r["hard_prune"] for r in runs_of(rows, method, s)]) for s in grid.sparsities]
            ax.plot(grid.sparsities, 100 * np.asarray(values), marker="o", label=method)
        ax.axhline(100 * dense, color="grey", linestyle="--", linewidth=1, label="dense")
        ax.set(title="right after the hard prune", xlabel="sparsity", ylabel=ylabel)
        ax.legend(fontsize=8)
    return [curves, hard]


def report(rows: list[dict], grid: ConvergenceStudy, out: Path, intro: str | None = None) -> str:
    """Write ``report.md`` and the plots into ``out``; return the Markdown. ``intro`` (Markdown)
    replaces the default paragraph, the SLR question."""
    images = plots(rows, grid, out)
    dense = np.mean([r["dense"] for r in rows])
    text = "\n".join(
        [
            f"# Convergence per retraining epoch: {grid.problem}/{grid.size}",
            "",
            (__doc__ or "").strip().split("\n\n")[1] if intro is None else intro,
            "",
            f"Dense {rows[0]['metric']}: {100 * dense:.1f} %. {grid.structure.capitalize()} sparsity "
            f"over the default prunable leaves; {grid.solve_epochs} solve + {grid.retrain_epochs} "
            "retraining epochs, "
            f"Adam {grid.lr:g}, seeds {list(grid.seeds)}. Values in % ({rows[0]['metric']}).",
            "",
            tables(rows, grid),
            "",
            *[f"![{p.stem}]({p.name})" for p in images],
            "",
            "## Conclusion",
            "",
            conclusion(rows, grid),
            "",
        ]
    )
    (out / "report.md").write_text(text)
    return text

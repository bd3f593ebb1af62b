"""Convergence per retraining epoch (docs/benchmarks.md): methods × sparsities × seeds on one problem, all
through ``solvers.prune`` from the same cached dense start with the same epoch budgets.

The question the report answers is the SLR paper's: does SLR keep accuracy at the hard-prune
point (0 retraining epochs) where ADMM drops, and does the gap grow with the sparsity?

Methods (over the problem's default prunable leaves, unstructured or one of the problem's
natural ``groups`` such as ``block16``; Adam in the solve phase):

* ``admm`` — ρ 1e-2 ×1.3 per Z-update, Z/U updates 4× per epoch;
* ``slr`` — the reference defaults (ρ 0.1, s⁰ 0.01, M 300, r 0.1), multiplier updates 4× per epoch;
* ``rgl`` — reweighted group lasso over the constraint's groups, proximal form, α from the dense
  start (never refreshed, as the authors' scripts); λ per leaf from ``rgl_lambda``;
* ``magnitude`` — one-shot: pruned at the first solve step, then trained masked;
* ``gradual`` — Zhu & Gupta's cubic ramp over the first ¾ of the solve phase, 4 mask updates per epoch.

Each invocation writes, in its output folder: ``runs.jsonl`` (one JSON line per finished run),
``report.md`` and PNG plots; ``resume=True`` skips finished runs and resumes the unfinished one
from its checkpoint.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import jax
import numpy as np
import optax

from prunax import problems, solvers
from prunax.constraints import Groups, Spec, Unstructured, leaves_with_paths

from ..configs import CONVERGENCE_METHODS as METHODS
from ..configs import ConvergenceStudy


def run_key(method: str, sparsity: float, seed: int) -> str:
    return f"{method}-s{sparsity:g}-seed{seed}"


def constraint_spec(problem, structure: str, sparsity: float) -> Spec:
    """``Unstructured(sparsity)`` on the prunable leaves, or the problem's group ``structure``."""
    if structure == "unstructured":
        return problem.spec(Unstructured(sparsity))
    if structure not in problem.groups:
        raise ValueError(
            f"unknown structure {structure!r} for {problem.name}; valid: unstructured, "
            + ", ".join(problem.groups)
        )
    return problem.groups[structure](sparsity)


def rgl_lambda(spec: Spec, params, sparsity: float, steps: int, lr: float, shrink: float = 0.5) -> dict:
    """Per constrained leaf i, λ_i for the proximal reweighted group lasso with α_g = 1/‖W⁰_g‖
    over ``steps`` steps of size ``lr``: the soft-threshold removes lr·λ_i/‖W⁰_g‖ per step, so
    λ_i = shrink·q_i²/(steps·lr) removes a fraction ``shrink`` of a group whose norm is q_i, the
    ``sparsity``-quantile of leaf i's group norms (the hard-prune boundary of that leaf). Per leaf,
    as the paper's per-matrix λ_i, because the group norms of BERT's matrices differ by 2×. The
    paper's λ = 1e-4 (docs/solvers.md, "Reweighted group lasso") is calibrated to ~10⁴ subgradient steps of a converged GLUE
    model; on a budget of a few hundred steps it would not move a group, so the study sets λ
    from the budget instead."""
    is_groups = lambda g: g is None or isinstance(g, Groups)  # noqa: E731
    groups = jax.tree_util.tree_leaves(spec.groups(params), is_leaf=is_groups)
    paths, leaves, _ = leaves_with_paths(params)
    lams = {
        path: float(shrink * np.quantile(np.asarray(g.norms(w)), sparsity) ** 2 / (steps * lr))
        for path, g, w in zip(paths, groups, leaves)
        if g is not None
    }
    if not lams:
        raise ValueError("rgl_lambda: the spec gives no leaf groups to penalise")
    return lams


def transform(method: str, spec, steps_per_epoch: int, solve_epochs: int, lr: float, lam=1e-4):
    """The solve-phase optax transform of ``method`` (see the module docstring); ``lam`` is RGL's λ."""
    quarter = max(steps_per_epoch // 4, 1)
    if method == "admm":
        return optax.chain(solvers.admm(spec, rho=1e-2, every=quarter, rho_growth=1.3), optax.adam(lr))
    if method == "slr":
        return optax.chain(solvers.slr(spec, every=quarter), optax.adam(lr))
    if method == "rgl":
        rgl = solvers.reweighted_group_lasso(spec, lam=lam, prox=True, learning_rate=lr)
        return optax.chain(optax.adam(lr), rgl)
    if method == "magnitude":
        return optax.chain(optax.adam(lr), solvers.magnitude(spec))
    if method == "gradual":
        end = max(int(0.75 * solve_epochs * steps_per_epoch), 1)
        return optax.chain(
            optax.adam(lr), solvers.magnitude(spec, solvers.cubic_fraction(0, end, every=quarter))
        )
    raise ValueError(f"unknown method {method!r}; valid: {METHODS}")


def summarize(records: list[dict], metric: str) -> dict:
    """The numbers one run is judged by, from its ``prune`` records."""
    by_phase = {}
    for r in records:
        by_phase.setdefault(r["phase"], []).append(r)
    dense = by_phase["dense"][0]["metrics"][metric]
    pruned = by_phase["pruned"][0]["metrics"][metric]
    retrain = [r["metrics"][metric] for r in by_phase.get("retrain", [])]
    curve = [pruned, *retrain]
    within = next((epoch for epoch, value in enumerate(curve) if value >= dense - 0.01), None)
    solve = by_phase["solve"][-1]
    others = lambda r: {k: v for k, v in r["metrics"].items() if k != metric}  # noqa: E731
    return {
        "dense": dense,
        "solved": solve["metrics"][metric],
        "hard_prune": pruned,
        "retrain": retrain,
        "epochs_to_dense_minus_1pt": within,  # None: not within 1 point in the budget
        "residual": solve["residual"],
        "achieved_sparsity": by_phase["pruned"][0]["sparsity"],
        # the problem's other measurements (e.g. binary operations, gate counts), dense and at the end
        "other_metrics": {"dense": others(by_phase["dense"][0]), "final": others(records[-1])},
    }


def final_metric(row: dict) -> float:
    """A summary row's metric at the end of its budget: the last retraining epoch, else the hard prune."""
    return row["retrain"][-1] if row["retrain"] else row["hard_prune"]


def finished_runs(out: Path, resume: bool) -> tuple[Path, dict]:
    """``out/runs.jsonl`` (one JSON row per finished run; ``out`` is created) and, when resuming,
    its rows by key; otherwise an old file is removed and nothing counts as finished."""
    out.mkdir(parents=True, exist_ok=True)
    results_file = out / "runs.jsonl"
    done = {}
    if resume and results_file.exists():
        done = {row["key"]: row for row in map(json.loads, results_file.read_text().splitlines())}
    elif results_file.exists():
        results_file.unlink()
    return results_file, done


def run(
    grid: ConvergenceStudy, out: Path, resume: bool = False, quiet: bool = True, progress=None
) -> list[dict]:
    """Every run of the grid (finished ones skipped when resuming); returns all result rows."""
    out = Path(out)
    results_file, done = finished_runs(out, resume)
    problem = problems.get(grid.problem, grid.size)
    steps = problem.steps_per_epoch(problem.recipe.batch_size)
    rows = []
    for i, (method, sparsity, seed) in enumerate(grid.runs()):
        key = run_key(method, sparsity, seed)
        if key in done:
            rows.append(done[key])
            continue
        if progress:
            progress(f"[{i + 1}/{len(grid.runs())}] {grid.problem}/{grid.size} {key}")
        start = solvers.pretrained(problem, seed=seed, quiet=quiet)
        spec = constraint_spec(problem, grid.structure, sparsity)
        solve_steps = steps * grid.solve_epochs
        lam = rgl_lambda(spec, start[0], sparsity, solve_steps, grid.lr) if method == "rgl" else 0.0
        began = time.perf_counter()
        result = solvers.prune(
            problem,
            spec,
            transform(method, spec, steps, grid.solve_epochs, grid.lr, lam),
            solve_epochs=grid.solve_epochs,
            retrain_epochs=grid.retrain_epochs,
            retrain_optimizer=optax.adam(grid.lr),
            start=start,
            seed=seed,
            run_dir=out / "checkpoints" / key,
            resume=resume,
            quiet=quiet,
        )
        row = {
            "key": key,
            "problem": grid.problem,
            "size": grid.size,
            "method": method,
            "structure": grid.structure,
            "sparsity": sparsity,
            "seed": seed,
            "metric": problem.metric,
            **summarize(result.records, problem.metric),
            "wall_seconds": time.perf_counter() - began,
        }
        with results_file.open("a") as f:
            f.write(json.dumps(row) + "\n")
        rows.append(row)
    return rows


def percent_cell(values) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "—"
    if len(values) == 1:
        return f"{100 * values[0]:.1f}"
    return f"{100 * np.mean(values):.1f} ± {100 * np.std(values):.1f}"


def tables(rows: list[dict], grid: ConvergenceStudy) -> str:
    """Markdown: per stage (after solve, hard prune, each retraining epoch) a method × sparsity
    table of the metric in percent (mean ± std over seeds), then the budget columns."""
    stages = [
        ("after the solve phase", lambda r: r["solved"]),
        ("hard prune, 0 retraining epochs", lambda r: r["hard_prune"]),
    ]
    stages += [
        (f"after retraining epoch {e + 1}", lambda r, e=e: r["retrain"][e] if e < len(r["retrain"]) else None)
        for e in range(grid.retrain_epochs)
    ]
    header = "| method | " + " | ".join(f"s = {s:g}" for s in grid.sparsities) + " |"
    rule = "|---|" + "---|" * len(grid.sparsities)
    out = []
    for title, pick in stages:
        out += [f"**{title}**", "", header, rule]
        for method in grid.methods:
            cells = [
                percent_cell([pick(r) for r in rows if r["method"] == method and r["sparsity"] == s])
                for s in grid.sparsities
            ]
            out.append(f"| {method} | " + " | ".join(cells) + " |")
        out.append("")
    out += [
        "**retraining epochs to get within 1 point of dense; ‖W−Z‖/‖W‖ after the solve; wall time**",
        "",
        "| run | epochs to dense − 1 pt | residual | achieved sparsity | seconds "
        "| other metrics, dense → final |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        within = (
            "not reached" if r["epochs_to_dense_minus_1pt"] is None else str(r["epochs_to_dense_minus_1pt"])
        )
        residual = "—" if r["residual"] is None else f"{r['residual']:.3f}"
        out.append(
            f"| {r['key']} | {within} | {residual} | {r['achieved_sparsity']:.4f} | {r['wall_seconds']:.0f} "
            f"| {other_metrics_cell(r)} |"
        )
    return "\n".join(out)


def other_metrics_cell(row: dict) -> str:
    """ "name dense → final" for each of the problem's other measurements, or "—"."""
    other = row.get("other_metrics") or {"dense": {}, "final": {}}
    pairs = [
        f"{k} {v:.4g} → {other['final'][k]:.4g}" for k, v in other["dense"].items() if k in other["final"]
    ]
    return "; ".join(pairs) or "—"


def summary(rows: list[dict], grid: ConvergenceStudy) -> str:
    """The table printed at the end: per method and sparsity, the metric after the solve, right
    after the hard prune and after the last retraining epoch (%, mean over seeds)."""
    last = f"retrained ({grid.retrain_epochs} ep)"
    out = [f"| method | sparsity | after solve | hard prune | {last} |", "|---|---|---|---|---|"]
    for s in grid.sparsities:
        for method in grid.methods:
            mine = [r for r in rows if r["method"] == method and r["sparsity"] == s]
            final = [final_metric(r) for r in mine]
            cells = [
                percent_cell([r["solved"] for r in mine]),
                percent_cell([r["hard_prune"] for r in mine]),
                percent_cell(final),
            ]
            out.append(f"| {method} | {s:g} | " + " | ".join(cells) + " |")
    dense = np.mean([r["dense"] for r in rows])
    return f"dense {rows[0]['metric']}: {100 * dense:.1f} %\n" + "\n".join(out)


def plots(rows: list[dict], grid: ConvergenceStudy, out: Path) -> list[Path]:
    """metric vs retraining epoch (a panel per sparsity) and hard-prune metric vs sparsity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dense = np.mean([r["dense"] for r in rows])
    fig, axes = plt.subplots(1, len(grid.sparsities), figsize=(4 * len(grid.sparsities), 3.4), squeeze=False)
    for ax, s in zip(axes[0], grid.sparsities):
        for method in grid.methods:
            mine = [r for r in rows if r["method"] == method and r["sparsity"] == s]
            if mine:
                curve = np.mean([[r["hard_prune"], *r["retrain"]] for r in mine], axis=0)
                ax.plot(range(len(curve)), 100 * curve, marker="o", label=method)
                ax.set_xticks(range(len(curve)))
        ax.axhline(100 * dense, color="grey", linestyle="--", linewidth=1, label="dense")
        ax.set(
            title=f"sparsity {s:g}",
            xlabel="retraining epoch (0 = hard prune)",
            ylabel=rows[0]["metric"] + " (%)",
        )
        ax.legend(fontsize=8)
    fig.tight_layout()
    curves = out / "retraining.png"
    fig.savefig(curves, dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(4.5, 3.4))
    for method in grid.methods:
        values = [
            np.mean([r["hard_prune"] for r in rows if r["method"] == method and r["sparsity"] == s])
            for s in grid.sparsities
        ]
        ax.plot(grid.sparsities, 100 * np.asarray(values), marker="o", label=method)
    ax.axhline(100 * dense, color="grey", linestyle="--", linewidth=1, label="dense")
    ax.set(title="right after the hard prune", xlabel="sparsity", ylabel=rows[0]["metric"] + " (%)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    hard = out / "hard_prune.png"
    fig.savefig(hard, dpi=110)
    plt.close(fig)
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
        ]
    )
    (out / "report.md").write_text(text)
    return text

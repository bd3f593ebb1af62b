"""FORMS study (ISCA 2021): ADMM pruning of ResNet on MNIST into polarized crossbar fragments.

For each structure (``unstructured`` or a group of the problem, e.g. ``column`` = whole crossbar
rows) at one sparsity, and each fragment size f (plus a run without polarity as the baseline),
ADMM solves for ``structure ∩ ColumnSign(f)`` on every prunable conv, then hard-prunes and retrains
masked. Per run: accuracy after the solve, the hard prune and each retraining epoch, and the
crossbar cost of the pruned network (``crossbar.layer_cost`` summed over the pruned convs):
crossbars, sign bits, polarity violations, and input zero-skipping on 256 sampled im2col windows
per layer of test images (the layer inputs are ReLU outputs). The paper's motivation predicts
that smaller fragments cost less accuracy and skip more.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import jax
import numpy as np
import optax

from prunax import constraints, problems, solvers
from prunax.problems import resnet

from .. import harness
from ..configs import FormsStudy
from ..hardware import crossbar
from ..hardware.layer_inputs import conv_inputs, im2col_windows
from ..methods import CONVERGENCE, SolvePhase


def run_key(structure: str, fragment: int | None) -> str:
    return f"{structure}-f{fragment or 'none'}"


def polarized_spec(problem, structure: str, sparsity: float, fragment: int | None):
    """``structure`` at ``sparsity`` on the prunable convs, intersected with ``ColumnSign(f, axis=2)``
    (rows = kh·kw·cin, the crossbar wordlines)."""
    base = harness.constraint_spec(problem, structure, sparsity)
    if fragment is None:
        return base
    rules = [
        (pattern, None if c is None else c & constraints.ColumnSign(fragment, axis=2))
        for pattern, c in base.rules
    ]
    return constraints.spec(rules)


def network_cost(problem, model, params, state, spec, hw: crossbar.Hardware, windows: int, seed: int) -> dict:
    """``crossbar.layer_cost`` summed over the constrained convs, with zero-skipping measured on
    sampled windows of test-image layer inputs."""
    x = next(problem.batches("test", jax.random.key(seed), 64))["x"]
    inputs = conv_inputs(model, {"params": params, **state}, x)
    rng = np.random.default_rng(seed)
    paths, leaves, owner, _ = spec.assign(params)
    totals: dict[str, float] = {}
    for path, leaf, rule in zip(paths, leaves, owner):
        if rule is None or spec.rules[rule][1] is None:
            continue
        if path not in inputs:
            raise ValueError(f"network_cost: no conv input was recorded for the constrained leaf {path}")
        activation, strides, kernel_size = inputs[path]
        rows, _ = im2col_windows(activation, kernel_size, strides, windows, rng)
        for key, value in crossbar.layer_cost(np.asarray(leaf), rows, hw).items():
            totals[key] = totals.get(key, 0) + value
    totals["skipped_fraction"] = 1 - totals["ops_executed"] / totals["ops_total"]
    totals["speedup"] = totals["ops_total"] / totals["ops_executed"]
    return totals


def one_run(
    study: FormsStudy, problem, structure: str, fragment: int | None, out: Path, resume: bool, quiet: bool
) -> dict:
    """ADMM on ``structure ∩ ColumnSign(fragment)``, hard prune, masked retraining; the summary row
    with the crossbar cost of the dense and the pruned convs."""
    start = solvers.pretrained(problem, seed=study.seed, quiet=quiet)
    spec = polarized_spec(problem, structure, study.sparsity, fragment)
    tx = CONVERGENCE["admm"].transform(SolvePhase.of(problem, spec, study.lr, study.solve_epochs))
    budget = harness.Budget(study.solve_epochs, study.retrain_epochs, optax.adam(study.lr), study.seed)
    model = resnet.model_of(problem)
    hw = crossbar.Hardware(fragment=fragment or 8)

    def costs(result) -> dict:
        dense = network_cost(problem, model, *start, spec, hw, study.windows, study.seed)
        pruned = network_cost(
            problem, model, result.params, result.state, spec, hw, study.windows, study.seed
        )
        return {"dense_cost": dense, "cost": pruned}

    fields = {"structure": structure, "fragment": fragment, "sparsity": study.sparsity}
    key = run_key(structure, fragment)
    row, _ = harness.run_prune(
        problem,
        spec,
        tx,
        start,
        budget,
        key=key,
        out=out,
        resume=resume,
        quiet=quiet,
        fields=fields,
        measure=costs,
    )
    return row


def run(study: FormsStudy, out: Path, resume: bool = False, quiet: bool = True, progress=None) -> list[dict]:
    """Every (structure, fragment) run, appended to ``out/runs.jsonl``; finished runs are skipped
    when resuming."""
    problem = problems.get("resnet", study.size)
    harness.check_structures(problem, study.structures)
    log = harness.RunLog(out, resume)
    runs = [(run_key(*r), partial(one_run, study, problem, *r, out, resume, quiet)) for r in study.runs()]
    return log.rows(runs, progress, f"resnet/{study.size} ")


def table(rows: list[dict], study: FormsStudy) -> str:
    """Markdown: per run the accuracy trajectory and the crossbar cost of the pruned convs."""
    header = ["structure", "fragment", "after solve", "hard prune"]
    header += [f"retrain {e + 1}" for e in range(study.retrain_epochs)]
    header += ["crossbars (dense)", "sign bits", "violations (compacted)", "skipped", "speed-up (dense)"]
    cells = []
    for r in rows:
        c, d = r["cost"], r["dense_cost"]
        accuracies = [harness.percent_cell([v]) for v in (r["solved"], r["hard_prune"], *r["retrain"])]
        cells.append(
            [
                r["structure"],
                str(r["fragment"] or "none"),
                *accuracies,
                f"{c['crossbars_FORMS']} ({d['crossbars_FORMS']})",
                f"{c['sign_bits']}" if r["fragment"] else "—",
                f"{c['violations']} ({c['violations_compacted']})",
                f"{100 * c['skipped_fraction']:.1f} %",
                f"{c['speedup']:.2f}× ({d['speedup']:.2f}×)",
            ]
        )
    return harness.markdown_table(header, cells)


def plot(rows: list[dict], study: FormsStudy, out: Path) -> Path:
    """Accuracy after retraining and zero-skipping speed-up against the fragment size, a line per
    structure; dotted: the same structure without polarity."""
    path = out / "forms.png"
    with harness.figure(path, ncols=2, figsize=(10, 4)) as (_, axes):
        for structure in study.structures:
            mine = sorted(
                (r for r in rows if r["structure"] == structure and r["fragment"]),
                key=lambda r: r["fragment"],
            )
            f = [r["fragment"] for r in mine]
            axes[0].plot(f, [100 * harness.final_metric(r) for r in mine], "o-", label=structure)
            axes[1].plot(f, [r["cost"]["speedup"] for r in mine], "o-", label=structure)
            free = [r for r in rows if r["structure"] == structure and not r["fragment"]]
            if free:
                color = axes[0].lines[-1].get_color()
                axes[0].axhline(100 * harness.final_metric(free[0]), ls=":", color=color)
        for ax, label in zip(axes, ("accuracy after retraining (%)", "zero-skipping speed-up (×)")):
            ax.set_xscale("log", base=2)
            ax.set_xlabel("fragment size f (rows)")
            ax.set_ylabel(label)
            ax.legend()
        axes[0].set_title("dotted: same structure without polarity")
    return path


def report(rows: list[dict], study: FormsStudy, out: Path) -> str:
    """``report.md`` and ``forms.png`` in ``out``; returns the Markdown."""
    out = Path(out)
    plot(rows, study, out)
    dense = rows[0]["dense"]
    text = "\n\n".join(
        [
            "# FORMS: polarized crossbar fragments on ResNet/MNIST",
            (__doc__ or "").strip(),
            f"Dense accuracy {100 * dense:.1f} %. ADMM (ρ 1e-2 × 1.3, 4 Z-updates per epoch, "
            f"Adam {study.lr:g}), {study.solve_epochs} solve + {study.retrain_epochs} retraining epochs, "
            f"sparsity {study.sparsity:g}, "
            f"seed {study.seed}. Crossbars: FORMS design, 128×128, 2-bit cells, 8-bit weights; inputs 8-bit, "
            "bit-plane skipping; the no-polarity rows use f = 8 for their cost.",
            table(rows, study),
            "![forms](forms.png)",
        ]
    )
    (out / "report.md").write_text(text + "\n")
    return text

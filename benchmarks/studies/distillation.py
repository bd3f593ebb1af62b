"""Sparse progressive distillation (SPD) against magnitude + KD and magnitude alone on MiniLM
sentence polarity, at the same epoch budget and the same pruning schedule
(docs/benchmarks.md, "Sparse progressive distillation"):

* ``spd`` — stage 1 prunes with a cubic schedule (``updates`` mask updates, the last one at the
  final step of the stage) while each layer comes from the student with p = p0 (0.8) else from the
  dense teacher; stage 2 (first retraining epochs) raises p linearly to 1; stage 3 fine-tunes at
  p = 1. Loss: hidden-state + attention MSE + soft cross-entropy at T = 1, no hard labels.
* ``magnitude+kd`` — the same distillation loss with the student alone (p = 1 throughout).
* ``magnitude`` — the task's cross-entropy alone.

All three: AdamW (no weight decay), gradient clipping at 1.0, the learning rate decaying linearly
from its peak over the pruning stage and **restarted at the peak** for the retraining stages;
hard prune (``finalize``) between the stages. The paper's claim: SPD > magnitude + KD > magnitude.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import optax

from prunax import problems, solvers

from .. import harness
from ..configs import DistillationStudy


def run_key(method: str, structure: str, sparsity: float) -> str:
    return f"{method}-{structure}-s{sparsity:g}"


def _optimizer(lr: float, steps: int):
    """AdamW (wd 0) with clipping at 1.0, learning rate linear from ``lr`` to 0 over ``steps``."""
    return optax.chain(
        optax.clip_by_global_norm(1.0), optax.adamw(optax.linear_schedule(lr, 0.0, steps), weight_decay=0.0)
    )


def one_run(
    study: DistillationStudy, problem, method: str, structure: str, sparsity: float, out: Path, resume, quiet
) -> dict:
    """One method at one setting through ``solvers.prune``; returns its summary row."""
    teacher = solvers.pretrained(problem, seed=study.seed, quiet=quiet)
    spec = harness.constraint_spec(problem, structure, sparsity)
    steps = problem.steps_per_epoch(problem.recipe.batch_size)
    prune_steps = study.prune_epochs * steps
    retrain_epochs = study.replace_epochs + study.finetune_epochs
    start = teacher
    if method != "magnitude":
        replacing = (
            solvers.ReplacingRate(study.p0, prune_steps, study.replace_epochs * steps)
            if method == "spd"
            else 1.0
        )
        problem = solvers.progressive_distillation(problem, teacher[0], replacing, study.temperature)
        start = (teacher[0], solvers.wrap_state(teacher[1], teacher[0]))
    end = prune_steps - 1  # the last mask update lands on the stage's final step
    ramp = solvers.cubic_fraction(0, end, every=max(end // study.updates, 1))
    tx = optax.chain(_optimizer(study.lr, prune_steps), solvers.magnitude(spec, ramp))
    budget = harness.Budget(
        study.prune_epochs, retrain_epochs, _optimizer(study.lr, retrain_epochs * steps), study.seed
    )
    fields = {"method": method, "structure": structure, "sparsity": sparsity, "metric": problem.metric}
    key = run_key(method, structure, sparsity)
    return harness.run_prune(
        problem, spec, tx, start, budget, key=key, out=out, resume=resume, quiet=quiet, fields=fields
    )[0]


def run(
    study: DistillationStudy, out: Path, resume: bool = False, quiet: bool = True, progress=None
) -> list[dict]:
    """Every (setting, method) run; ``runs.jsonl`` in ``out`` lets ``resume`` skip finished ones."""
    problem = problems.get("bert", study.size)
    harness.check_structures(problem, [structure for structure, _ in study.settings])
    log = harness.RunLog(out, resume)
    runs = [
        (run_key(m, st, s), partial(one_run, study, problem, m, st, s, out, resume, quiet))
        for st, s in study.settings
        for m in study.methods
    ]
    return log.rows(runs, progress, f"bert/{study.size} ")


def table(rows: list[dict], study: DistillationStudy) -> str:
    """Per setting and method: accuracy (%) after the pruning stage, at the hard prune, after the
    replacing stage and at the end; wall time."""
    replace = study.replace_epochs
    header = ["setting", "method", "after stage 1", "hard prune", "after stage 2", "final", "seconds"]
    cells = []
    for r in rows:
        stage2 = r["retrain"][replace - 1] if len(r["retrain"]) >= replace else None
        stages = (r["solved"], r["hard_prune"], stage2, harness.final_metric(r))
        accuracies = [harness.percent_cell([v]) for v in stages]
        setting = f"{r['structure']} {r['sparsity']:g}"
        cells.append([setting, r["method"], *accuracies, f"{r['wall_seconds']:.0f}"])
    return harness.markdown_table(header, cells)


def _runs_at(rows: list[dict], structure: str, sparsity: float) -> list[dict]:
    return [r for r in rows if r["structure"] == structure and r["sparsity"] == sparsity]


def order(rows: list[dict], study: DistillationStudy) -> list[str]:
    """Per setting, the methods ranked by final accuracy (the paper's claim: spd, magnitude+kd,
    magnitude)."""
    lines = []
    for structure, sparsity in study.settings:
        ranked = sorted(_runs_at(rows, structure, sparsity), key=lambda r: -harness.final_metric(r))
        lines.append(f"{structure} {sparsity:g}: " + " > ".join(r["method"] for r in ranked))
    return lines


def plot(rows: list[dict], study: DistillationStudy, path: Path) -> Path:
    """Accuracy after the pruning stage (= hard prune) and each retraining epoch, a panel per
    setting, a line per method."""
    settings = list(study.settings)
    size = (4.2 * len(settings), 3.4)
    with harness.figure(path, ncols=len(settings), figsize=size, squeeze=False) as (_, axes):
        for ax, (structure, sparsity) in zip(axes[0], settings):
            for r in _runs_at(rows, structure, sparsity):
                curve = [r["hard_prune"], *r["retrain"]]
                ax.plot(range(len(curve)), [100 * v for v in curve], marker="o", label=r["method"])
                ax.set_xticks(range(len(curve)))
            ax.axhline(100 * rows[0]["dense"], color="grey", linestyle="--", linewidth=1, label="dense")
            ax.axvline(study.replace_epochs + 0.5, color="grey", linewidth=0.6)
            ax.set(
                title=f"{structure} {sparsity:g}",
                xlabel="retraining epoch (0: end of pruning)",
                ylabel=f"{rows[0]['metric']} (%)",
            )
            ax.legend(fontsize=8)
    return path


def report(rows: list[dict], study: DistillationStudy, out: Path) -> str:
    """``report.md`` and ``stages.png`` in ``out``; returns the Markdown."""
    image = plot(rows, study, Path(out) / "stages.png")
    dense = float(np.mean([r["dense"] for r in rows]))
    text = "\n".join(
        [
            f"# Sparse progressive distillation: bert/{study.size}",
            "",
            (__doc__ or "").strip(),
            "",
            f"Dense teacher accuracy {100 * dense:.1f} %. Epochs: {study.prune_epochs} pruning + "
            f"{study.replace_epochs} replacing + {study.finetune_epochs} fine-tuning; peak learning rate "
            f"{study.lr:g}; p0 {study.p0}; T {study.temperature}; {study.updates} mask updates; "
            f"seed {study.seed}.",
            "",
            table(rows, study),
            "",
            "Ranking by final accuracy:",
            "",
            *[f"* {line}" for line in order(rows, study)],
            "",
            f"![accuracy through the stages]({image.name})",
            "",
        ]
    )
    (Path(out) / "report.md").write_text(text)
    return text

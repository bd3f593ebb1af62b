"""Where constraints are hard (docs/benchmarks.md, "structures"): when should a constrained solver
be used instead of magnitude pruning? Every method of the convergence study, at the same solve and
retraining epochs and the same BatchNorm recalibration, on ResNet/MNIST under structures whose
feasible set magnitude ranks poorly:

* ``polarity`` — FORMS: ``Unstructured(s) ∩ ColumnSign(f, axis=2)`` on every prunable conv, every
  fragment of f consecutive crossbar rows (kh·kw·cin) of a column sharing one sign;
* ``pattern`` — PatDNN: every 3×3 kernel of the 3×3 convs keeps one of 8 four-entry patterns
  (centre always in) mined from the dense start, and connectivity drops whole kernels so that
  (1 − c)·4/9 = 1 − s; the 1×1 projections stay dense;
* ``2:4`` — ``NM(2, 4)`` along the input channels of every prunable conv (sparsity 0.5).

``magnitude`` is the one-shot projection of the dense start followed by masked training for the
whole budget; ``gradual`` ramps the projection in over ¾ of the solve phase.
"""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path

import numpy as np

from prunax import constraints, problems, solvers
from prunax.constraints import Spec

from .. import harness
from ..configs import StructuresStudy
from . import convergence, forms

PATTERNS, PATTERN_ENTRIES = 8, 4  # PatDNN's pattern set: 8 patterns of 4 entries
THREE_BY_THREE = r"^stage\d+_block\d+/conv\d/kernel$"


def run_key(structure: str, method: str, seed: int) -> str:
    return f"{structure}-{method}-seed{seed}"


def pattern_spec(problem, dense_params, sparsity: float) -> Spec:
    """PatDNN patterns mined from the dense 3×3 kernels, plus the connectivity giving ``sparsity``."""
    kernels = [
        w for path, w in problem.prunable_leaves(dense_params).items() if re.search(THREE_BY_THREE, path)
    ]
    stacked = np.concatenate([np.asarray(w).reshape(3, 3, -1) for w in kernels], axis=-1)
    patterns = constraints.mine_patterns(stacked, (0, 1), (3, 3), PATTERN_ENTRIES, PATTERNS, always=((1, 1),))
    connectivity = 1 - (1 - sparsity) * 9 / PATTERN_ENTRIES
    return constraints.spec(
        [(THREE_BY_THREE, constraints.Pattern(patterns, axes=(0, 1), connectivity=connectivity))]
    )


def structure_spec(problem, study: StructuresStudy, structure: str, dense_params) -> tuple[Spec, float]:
    """The spec of ``structure`` and its sparsity over the constrained leaves."""
    if structure == "polarity":
        return forms.polarized_spec(problem, "unstructured", study.sparsity, study.fragment), study.sparsity
    if structure == "pattern":
        return pattern_spec(problem, dense_params, study.sparsity), study.sparsity
    return problem.spec(constraints.NM(2, 4, axis=2)), 0.5


def one_run(study: StructuresStudy, problem, structure: str, method: str, seed: int, out, resume, quiet):
    start = solvers.pretrained(problem, seed=seed, quiet=quiet)
    spec, sparsity = structure_spec(problem, study, structure, start[0])
    fields = {"structure": structure, "method": method, "seed": seed, "sparsity": sparsity}
    fields |= {"metric": problem.metric}
    key = run_key(structure, method, seed)
    run = dict(key=key, out=out, resume=resume, quiet=quiet, fields=fields)
    return convergence.method_run(problem, method, spec, sparsity, start, study, seed, **run)


def run(
    study: StructuresStudy, out: Path, resume: bool = False, quiet: bool = True, progress=None
) -> list[dict]:
    """Every (structure, method, seed) run (finished ones skipped when resuming); all result rows."""
    log = harness.RunLog(out, resume)
    problem = problems.get("resnet", study.size)
    runs = [
        (run_key(*r), partial(one_run, study, problem, *r, out=out, resume=resume, quiet=quiet))
        for r in study.runs()
    ]
    return log.rows(runs, progress, f"resnet/{study.size} ")


def _of(rows: list[dict], structure: str, method: str) -> list[dict]:
    return [r for r in rows if r["structure"] == structure and r["method"] == method]


def table(rows: list[dict], study: StructuresStudy, structure: str) -> str:
    """Markdown: per method the metric (mean ± std over seeds) after the solve, at the hard prune
    (without and with the BatchNorm recalibration) and after each retraining epoch."""
    stages = [
        ("after solve", lambda r: r["solved"]),
        (
            "hard prune",
            lambda r: r["hard_prune_stale"] if r["hard_prune_stale"] is not None else r["hard_prune"],
        ),
        ("+ BN recal.", lambda r: r["hard_prune"]),
    ]
    stages += [(f"retrain {e + 1}", lambda r, e=e: r["retrain"][e]) for e in range(study.retrain_epochs)]
    cells = [
        [
            convergence.label(m),
            *(harness.percent_cell(map(pick, _of(rows, structure, m))) for _, pick in stages),
        ]
        for m in study.methods
        if _of(rows, structure, m)
    ]
    residual = [
        "—"
        if (v := [r["residual"] for r in _of(rows, structure, m) if r["residual"] is not None]) == []
        else f"{np.mean(v):.3f}"
        for m in study.methods
        if _of(rows, structure, m)
    ]
    cells = [[*c, res] for c, res in zip(cells, residual)]
    return harness.markdown_table(["method", *(t for t, _ in stages), "‖W−Z‖/‖W‖"], cells)


def conclusion(rows: list[dict], study: StructuresStudy, structure: str) -> str:
    """The best constrained solver against the best magnitude method at the hard prune and at the
    end, with the verdict rule of the convergence study."""
    runs = lambda methods: {m: _of(rows, structure, m) for m in study.methods if m in methods}  # noqa: E731
    parts, _ = convergence.compare(runs(convergence.CONSTRAINED), runs(convergence.MASKED_METHODS))
    return f"**{structure}** — {parts}."


def report(rows: list[dict], study: StructuresStudy, out: Path) -> str:
    """Write ``report.md``: one table per structure and the conclusions; return the Markdown."""
    dense = np.mean([r["dense"] for r in rows])
    structures = [s for s in study.structures if any(r["structure"] == s for r in rows)]
    lines = [
        f"# Where constraints are hard: resnet/{study.size}",
        "",
        (__doc__ or "").strip(),
        "",
        f"Dense accuracy {100 * dense:.1f} %; {study.solve_epochs} solve + {study.retrain_epochs} retraining "
        f"epochs, Adam {study.lr:g}, seeds {list(study.seeds)}; sparsity {study.sparsity:g} "
        f"(2:4: 0.5), fragment {study.fragment}. Accuracy in %, mean ± std over seeds.",
        "",
    ]
    for structure in structures:
        lines += [f"## {structure}", "", table(rows, study, structure), "", convergence.MASKED_NOTE, ""]
    lines += ["## Conclusion", "", *(f"* {conclusion(rows, study, s)}" for s in structures), ""]
    text = "\n".join(lines)
    (out / "report.md").write_text(text)
    return text

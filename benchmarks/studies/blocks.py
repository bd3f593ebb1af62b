"""Block-structured pruning of a real BERT (Li et al. 2020, arXiv 2009.08065) in miniature: MiniLM
fine-tuned for sentence polarity, its encoder kernels pruned in 16×16 tiles by reweighted group
lasso (penalty and hard prune over the same tiles), ADMM and one-shot magnitude, each followed by
the hard prune and masked retraining, at encoder compression 2×…5× (sparsity 1 − 1/c).

The paper's claim: up to 5× with zero or minor loss on some GLUE tasks; the goal here is ≥ 2× at
≤ 1 point of accuracy. Every run goes through the convergence grid (``benchmarks.studies.convergence``),
so the same records, plots and resume apply.
"""

from __future__ import annotations

import numpy as np

from ..configs import ConvergenceStudy
from ..harness import final_metric, markdown_table
from .convergence import runs_of


def compression(sparsity: float) -> float:
    """Encoder compression rate 1/(1 − s) of the pruned kernels."""
    return 1.0 / (1.0 - sparsity)


def compression_table(rows: list[dict], grid: ConvergenceStudy) -> str:
    """Markdown: per method, the metric at 1× (dense) and after the last retraining epoch at each
    compression, hard-prune value in brackets; then the loss against dense in points."""
    dense = float(np.mean([r["dense"] for r in rows]))
    cells = []
    for method in grid.methods:
        cells.append([method, f"{100 * dense:.1f}"])
        for s in grid.sparsities:
            mine = runs_of(rows, method, s)
            if not mine:
                cells[-1].append("—")
                continue
            final = np.mean([final_metric(r) for r in mine])
            hard = np.mean([r["hard_prune"] for r in mine])
            cells[-1].append(f"{100 * final:.1f} ({100 * hard:.1f}) {100 * (final - dense):+.1f}")
    header = ["method", "1× (dense)", *(f"{compression(s):.1f}×" for s in grid.sparsities)]
    return markdown_table(header, cells)


def goal(rows: list[dict], grid: ConvergenceStudy) -> str:
    """The largest compression each method reaches within 1 point of dense after retraining."""
    dense = float(np.mean([r["dense"] for r in rows]))
    lines = []
    for method in grid.methods:
        reached = [
            compression(s)
            for s in grid.sparsities
            if (mine := runs_of(rows, method, s)) and np.mean([final_metric(r) for r in mine]) >= dense - 0.01
        ]
        best = f"{max(reached):.1f}×" if reached else "none of the tested rates"
        lines.append(f"* {method}: within 1 point of dense up to {best}")
    return "\n".join(lines)

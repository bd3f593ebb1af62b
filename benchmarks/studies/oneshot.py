"""One-shot post-training pruning of fine-tuned MiniLM (docs/benchmarks.md, "One-shot"): every
layer method of ``solvers.oneshot`` through the sequential model pass, on the encoder's Dense
kernels, from calibration sentences of the training split, with no retraining. Measured per run:
test accuracy (sentence polarity), cosine between the pruned and the dense model's mean-pooled
last hidden states on the test sentences, the layers' relative reconstruction errors
||X(W − Ŵ)|| / ||X W|| (mean and worst), the wall time of the pass and the process's peak RSS.

Structures (over every encoder kernel): ``50%`` and ``70%`` unstructured, ``2:4`` and ``4:8``
along the inputs, ``16x16`` tiles at 50 %, and ``polarity`` (each fragment of inputs of a column
keeps one sign; it sets no count, so every method ends at its own sparsity, which the tables show).
"""

from __future__ import annotations

import resource
import time
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from prunax import constraints, problems, solvers
from prunax.solvers import oneshot

from .. import harness
from ..configs import OneShotStudy

BATCH = 32  # calibration sentences per batch


def run_key(structure: str, method: str, seed: int) -> str:
    return f"{structure}-{method}-seed{seed}"


def structure_constraint(structure: str, fragment: int) -> constraints.Constraint:
    """The constraint every encoder kernel gets under ``structure``."""
    return {
        "50%": constraints.Unstructured(0.5),
        "70%": constraints.Unstructured(0.7),
        "2:4": constraints.NM(2, 4, axis=0),
        "4:8": constraints.NM(4, 8, axis=0),
        "16x16": constraints.Block((16, 16), 0.5, axes=(0, 1)),
        "polarity": constraints.ColumnSign(fragment, axis=0),
    }[structure]


def calibration_batches(problem, sentences: int, seed: int) -> list[dict]:
    """``sentences`` training sentences (rounded down to whole batches, at least one), drawn by ``seed``."""
    size = min(BATCH, sentences)
    batches = problem.batches("train", jax.random.key(seed), size)
    return [batch for _, batch in zip(range(max(sentences // size, 1)), batches)]


def _pooled(problem, params, state) -> np.ndarray:
    """Mean-pooled, L2-normalised last hidden states of every test sentence (padding dropped)."""
    features = jax.jit(problem.features)
    out = []
    for batch in problem.batches("test", jax.random.key(0), 64):
        f = features(params, state, batch)
        mask = f["mask"][..., None].astype(jnp.float32)
        mean = jnp.sum(f["hidden"][-1] * mask, axis=1) / jnp.maximum(jnp.sum(mask, axis=1), 1)
        out.append(np.asarray(mean / jnp.linalg.norm(mean, axis=-1, keepdims=True)))
    return np.concatenate(out)[: problem.config["test"]]


def one_run(study: OneShotStudy, problem, dense, structure: str, method: str, seed: int, quiet: bool) -> dict:
    params, state, dense_pooled = dense
    spec = problem.spec(structure_constraint(structure, study.fragment))
    batches = calibration_batches(problem, study.calibration, seed)
    start = time.perf_counter()
    pruned, records = oneshot.prune_model(problem, params, state, spec, batches, method=method, quiet=quiet)
    seconds = time.perf_counter() - start
    errors = [r.error for r in records]
    return {
        "key": run_key(structure, method, seed),
        "structure": structure,
        "method": method,
        "seed": seed,
        "accuracy": problem.evaluate(pruned, state)["accuracy"],
        "cosine": float(np.mean(np.sum(_pooled(problem, pruned, state) * dense_pooled, axis=-1))),
        "error": float(np.mean(errors)),
        "worst_error": float(np.max(errors)),
        "sparsity": float(np.mean([r.sparsity for r in records])),
        "seconds": seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "calibration": sum(len(b["y"]) for b in batches),
        "dense": problem.evaluate(params, state)["accuracy"],
    }


def run(
    study: OneShotStudy, out: Path, resume: bool = False, quiet: bool = True, progress=None
) -> list[dict]:
    """Every (structure, method, seed) run (finished ones skipped when resuming); all rows."""
    log = harness.RunLog(out, resume)
    problem = problems.get("bert", study.size)
    params, state = solvers.pretrained(problem, seed=0, quiet=quiet)
    dense = (params, state, _pooled(problem, params, state))
    runs = [(run_key(*r), partial(one_run, study, problem, dense, *r, quiet=quiet)) for r in study.runs()]
    return log.rows(runs, progress, f"bert/{study.size} ")


def _of(rows, structure, method):
    return [r for r in rows if r["structure"] == structure and r["method"] == method]


def _mean(rows, key) -> float:
    return float(np.mean([r[key] for r in rows]))


def _spread(rows, key) -> str:
    values = [r[key] for r in rows]
    return f"{np.mean(values):.4f}" + ("" if len(values) == 1 else f" ± {np.std(values):.4f}")


def table(rows: list[dict], study: OneShotStudy, structure: str) -> str:
    """Markdown: per method accuracy, cosine, reconstruction errors and time (mean ± std over seeds)."""
    cells = []
    for m in study.methods:
        mine = _of(rows, structure, m)
        if not mine:
            continue
        cells.append(
            [
                m,
                harness.percent_cell(r["accuracy"] for r in mine),
                _spread(mine, "cosine"),
                _spread(mine, "error"),
                _spread(mine, "worst_error"),
                f"{_mean(mine, 'sparsity'):.3f}",
                f"{_mean(mine, 'seconds'):.1f}",
            ]
        )
    header = ["method", "accuracy", "cosine to dense", "mean error", "worst error", "sparsity", "seconds"]
    return harness.markdown_table(header, cells)


def conclusion(rows: list[dict], study: OneShotStudy, structure: str) -> str:
    """The methods ordered by mean reconstruction error and by accuracy, and ADMM's error against
    the best other method's."""
    present = [m for m in study.methods if _of(rows, structure, m)]
    error = {m: _mean(_of(rows, structure, m), "error") for m in present}
    accuracy = {m: _mean(_of(rows, structure, m), "accuracy") for m in present}
    by_error = " < ".join(f"{m} {error[m]:.3f}" for m in sorted(present, key=error.get))
    by_accuracy = " > ".join(
        f"{m} {100 * accuracy[m]:.1f}" for m in sorted(present, key=accuracy.get, reverse=True)
    )
    text = f"**{structure}** — error: {by_error}; accuracy: {by_accuracy}"
    others = [m for m in present if m != "admm"]
    if "admm" in present and others:
        best = min(others, key=error.get)
        text += f"; ADMM's error is {error['admm'] / error[best]:.2f}× {best}'s"
    return text


def plot(rows: list[dict], study: OneShotStudy, path: Path) -> None:
    """Accuracy and mean reconstruction error per structure, one bar per method."""
    structures = [s for s in study.structures if any(r["structure"] == s for r in rows)]
    width = 0.8 / len(study.methods)
    with harness.figure(path, ncols=2, figsize=(11, 3.8)) as (_, axes):
        for i, m in enumerate(study.methods):
            x = np.arange(len(structures)) + i * width
            for ax, key, scale in ((axes[0], "accuracy", 100), (axes[1], "error", 1)):
                values = [
                    scale * _mean(_of(rows, s, m), key) if _of(rows, s, m) else np.nan for s in structures
                ]
                ax.bar(x, values, width, label=m)
        dense = 100 * _mean(rows, "dense")
        axes[0].axhline(dense, color="k", lw=1, ls="--", label=f"dense {dense:.1f}")
        axes[0].set(ylabel="test accuracy (%)", title="accuracy without retraining")
        axes[1].set(ylabel="||X(W − Ŵ)|| / ||XW|| (mean)", title="layer reconstruction error")
        for ax in axes:
            ax.set_xticks(np.arange(len(structures)) + 0.4 - width / 2, structures)
        axes[0].set_ylim(0, 100)
        axes[0].legend(fontsize=7, ncol=5, loc="upper center")


def report(rows: list[dict], study: OneShotStudy, out: Path) -> str:
    """Write ``report.md`` and ``oneshot.png``; return the Markdown."""
    structures = [s for s in study.structures if any(r["structure"] == s for r in rows)]
    plot(rows, study, out / "oneshot.png")
    lines = [
        f"# One-shot pruning of MiniLM: bert/{study.size}",
        "",
        (__doc__ or "").strip(),
        "",
        f"Dense accuracy {100 * _mean(rows, 'dense'):.1f} %; {rows[0]['calibration']} calibration "
        f"sentences per draw, draws {list(study.seeds)}; polarity fragment {study.fragment}; process "
        f"peak RSS {max(r['peak_rss_mb'] for r in rows):.0f} MB.",
        "",
    ]
    for s in structures:
        lines += [f"## {s}", "", table(rows, study, s), ""]
    lines += ["## Conclusion", "", *(f"* {conclusion(rows, study, s)}" for s in structures), ""]
    lines += ["![accuracy and reconstruction error](oneshot.png)", ""]
    text = "\n".join(lines)
    (out / "report.md").write_text(text)
    return text

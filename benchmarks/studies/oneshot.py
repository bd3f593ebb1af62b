"""One-shot post-training pruning without retraining (docs/benchmarks.md, "One-shot"): every layer
method of ``solvers.oneshot`` through the sequential model pass, on a model's linear kernels, from
calibration examples of the training split — fine-tuned MiniLM (``bert``: calibration sentences,
metric sentence-polarity accuracy, plus the cosine between the pruned and the dense model's
mean-pooled last hidden states on the test sentences) or SmolLM2-135M (``smollm2``: calibration
windows of 256 tokens, metric perplexity on the held-out sentences). Measured per run: the
metric, the layers' relative reconstruction errors ||X(W − Ŵ)|| / ||X W|| (mean and worst), the
wall time of the pass and the process's peak RSS.

Structures (over every prunable kernel): ``50%``, ``60%`` and ``70%`` unstructured, ``2:4`` and
``4:8`` along the inputs, ``16x16`` tiles at 50 %, ``polarity`` (each fragment of inputs of a
column keeps one sign; it sets no count, so every method ends at its own sparsity, which the
tables show) and ``structured`` (the problem's coupled ``head+neuron`` structure at 25 %,
docs/problems.md: a quarter of every block's attention heads — query columns and attention-output
rows, with key and value columns for MiniLM — and of its FFN neurons — every kernel slice of the
neuron —, chosen jointly over the slices by ``oneshot.prune_coupled``). The structured model is
then compacted (``problems.compact``) and measured as ``prunax bench speedup`` measures: parameters,
XLA's FLOPs per example, and the median of interleaved calls of the jitted dense and compact
forwards at batch 1 and the calibration batch, with the compact model's metric measured again.
"""

from __future__ import annotations

import resource
import shutil
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
from .speedup import inputs, measure

BATCH = {"bert": 32, "smollm2": 8}  # calibration examples per batch
LOWER_IS_BETTER = {"perplexity"}
STRUCTURED = 0.25  # the share of heads and of FFN neurons the ``structured`` setting removes


def run_key(structure: str, method: str, seed: int) -> str:
    return f"{structure}-{method}-seed{seed}"


def structure_spec(problem, structure: str, fragment: int) -> constraints.Spec:
    """The spec of ``structure``: one constraint on every prunable kernel, or (``structured``) the
    problem's coupled heads and FFN neurons."""
    if structure == "structured":
        return problem.coupled["head+neuron"](STRUCTURED)
    return problem.spec(structure_constraint(structure, fragment))


def structure_constraint(structure: str, fragment: int) -> constraints.Constraint:
    """The constraint every prunable kernel gets under ``structure`` (all but ``structured``)."""
    return {
        "50%": constraints.Unstructured(0.5),
        "60%": constraints.Unstructured(0.6),
        "70%": constraints.Unstructured(0.7),
        "2:4": constraints.NM(2, 4, axis=0),
        "4:8": constraints.NM(4, 8, axis=0),
        "16x16": constraints.Block((16, 16), 0.5, axes=(0, 1)),
        "polarity": constraints.ColumnSign(fragment, axis=0),
    }[structure]


def calibration_batches(problem, examples: int, seed: int) -> list[dict]:
    """``examples`` training examples (rounded down to whole batches, at least one), drawn by ``seed``."""
    size = min(BATCH[problem.name], examples)
    batches = problem.batches("train", jax.random.key(seed), size)
    return [batch for _, batch in zip(range(max(examples // size, 1)), batches)]


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


def one_run(
    study: OneShotStudy, problem, dense, out: Path, resume: bool, structure, method, seed, quiet
) -> dict:
    params, state, dense_metric, dense_pooled = dense
    spec = structure_spec(problem, structure, study.fragment)
    batches = calibration_batches(problem, study.examples, seed)
    key = run_key(structure, method, seed)
    blocks = out / "blocks" / key  # per-block checkpoints, kept only while the run is unfinished
    start = time.perf_counter()
    pruned, records = oneshot.prune_model(
        problem,
        params,
        state,
        spec,
        batches,
        method=method,
        run_dir=blocks,
        resume=resume,
        quiet=quiet,
    )
    seconds = time.perf_counter() - start
    errors = [r.error for r in records]
    row = {
        "key": key,
        "structure": structure,
        "method": method,
        "seed": seed,
        problem.metric: problem.evaluate(pruned, state)[problem.metric],
        "error": float(np.mean(errors)),
        "worst_error": float(np.max(errors)),
        "sparsity": float(np.mean([r.sparsity for r in records])),
        "seconds": seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "calibration": sum(len(next(iter(b.values()))) for b in batches),
        "dense": dense_metric,
    }
    if dense_pooled is not None:
        row["cosine"] = float(np.mean(np.sum(_pooled(problem, pruned, state) * dense_pooled, axis=-1)))
    if structure == "structured":
        compacted = problems.compact(problem, pruned, state, within=spec)
        sizes = {1: inputs(problem, 1, seed), BATCH[problem.name]: inputs(problem, BATCH[problem.name], seed)}
        row["compact_metric"] = compacted.problem.evaluate(compacted.params, compacted.state)[problem.metric]
        row.update(measure(problem, (params, state), compacted, sizes, study.repeats))
    shutil.rmtree(blocks)  # the pruned model is measured: its row is what the run leaves
    return row


def run(
    study: OneShotStudy, out: Path, resume: bool = False, quiet: bool = True, progress=None
) -> list[dict]:
    """Every (structure, method, seed) run (finished ones skipped when resuming; an interrupted one
    continues after its last finished block); all rows."""
    log = harness.RunLog(out, resume)
    problem = problems.get(study.problem, study.size)
    if problem.recipe.epochs:  # MiniLM is fine-tuned once (cached); SmolLM2's file is the dense model
        params, state = solvers.pretrained(problem, seed=0, quiet=quiet)
    else:
        params, state = problem.init(jax.random.key(0))
    pooled = _pooled(problem, params, state) if problem.features is not None else None
    dense = (params, state, problem.evaluate(params, state)[problem.metric], pooled)
    runs = [
        (run_key(*r), partial(one_run, study, problem, dense, Path(out), resume, *r, quiet=quiet))
        for r in study.runs()
    ]
    return log.rows(runs, progress, f"{study.problem}/{study.size} ")


def _metric(rows) -> str:
    return "perplexity" if "perplexity" in rows[0] else "accuracy"


def _of(rows, structure, method):
    return [r for r in rows if r["structure"] == structure and r["method"] == method]


def _mean(rows, key) -> float:
    return float(np.mean([r[key] for r in rows]))


def _spread(rows, key) -> str:
    values = [r[key] for r in rows]
    return f"{np.mean(values):.4f}" + ("" if len(values) == 1 else f" ± {np.std(values):.4f}")


def _metric_cell(rows, metric: str) -> str:
    if metric == "accuracy":
        return harness.percent_cell(r["accuracy"] for r in rows)
    values = [r[metric] for r in rows]
    return f"{np.mean(values):.1f}" + ("" if len(values) == 1 else f" ± {np.std(values):.1f}")


def table(rows: list[dict], study: OneShotStudy, structure: str) -> str:
    """Markdown: per method the metric, (MiniLM) cosine, reconstruction errors, sparsity and time
    (mean ± std over calibration draws)."""
    metric = _metric(rows)
    cosine = "cosine" in rows[0]
    cells = []
    for m in study.methods:
        mine = _of(rows, structure, m)
        if not mine:
            continue
        cells.append(
            [
                m,
                _metric_cell(mine, metric),
                *([_spread(mine, "cosine")] if cosine else []),
                _spread(mine, "error"),
                _spread(mine, "worst_error"),
                f"{_mean(mine, 'sparsity'):.3f}",
                f"{_mean(mine, 'seconds'):.1f}",
            ]
        )
    header = [
        "method",
        metric,
        *(["cosine to dense"] if cosine else []),
        "mean error",
        "worst error",
        "sparsity",
        "seconds",
    ]
    return harness.markdown_table(header, cells)


def compaction_table(rows: list[dict], study: OneShotStudy) -> str:
    """Markdown: per method of the structured setting, the compacted model's size and speed."""
    metric = _metric(rows)
    cells = []
    for m in study.methods:
        for r in _of(rows, "structured", m):
            latency = [
                f"{v['dense']:.1f} → {v['compact']:.1f} ms ({v['dense'] / v['compact']:.2f}×)"
                for v in r["latency_ms"].values()
            ]
            cells.append(
                [
                    m,
                    f"{r['compact_params'] / r['params']:.3f}",
                    f"{r['compact_flops'] / r['flops']:.3f}",
                    *latency,
                    _metric_cell([{metric: r["compact_metric"]}], metric),
                    _metric_cell([r], metric),
                ]
            )
    batches = list(next(r for r in rows if r["structure"] == "structured")["latency_ms"])
    header = [
        "method",
        "params ×",
        "FLOPs ×",
        *(f"batch {b}" for b in batches),
        f"compact {metric}",
        f"masked {metric}",
    ]
    return harness.markdown_table(header, cells)


def compaction_conclusion(rows: list[dict]) -> str:
    """The compacted models' measured speed-up and whether they compute what the masked ones do."""
    mine = [r for r in rows if r["structure"] == "structured"]
    metric = _metric(rows)
    speedups = {
        b: [v["dense"] / v["compact"] for v in (r["latency_ms"][b] for r in mine)]
        for b in mine[0]["latency_ms"]
    }
    said = ", ".join(f"{min(v):.2f}–{max(v):.2f}× at batch {b}" for b, v in speedups.items())
    same = all(np.isclose(r["compact_metric"], r[metric], rtol=1e-4) for r in mine)
    removed = 1 - mine[0]["compact_params"] / mine[0]["params"]
    return (
        f"**structured, compacted** — {removed:.0%} of the parameters removed, forward {said}; "
        f"the compacted {metric} {'equals' if same else 'differs from'} the masked model's in every run"
    )


def conclusion(rows: list[dict], study: OneShotStudy, structure: str) -> str:
    """The methods ordered by mean reconstruction error and by the metric, and ADMM's error (and,
    for perplexity, its increase over dense) against the best other method's."""
    metric = _metric(rows)
    lower = metric in LOWER_IS_BETTER
    present = [m for m in study.methods if _of(rows, structure, m)]
    error = {m: _mean(_of(rows, structure, m), "error") for m in present}
    value = {m: _mean(_of(rows, structure, m), metric) for m in present}
    scale, digits = (1, 1) if lower else (100, 1)
    by_error = " < ".join(f"{m} {error[m]:.3f}" for m in sorted(present, key=error.get))
    ranked = sorted(present, key=value.get, reverse=not lower)
    by_metric = (" < " if lower else " > ").join(f"{m} {scale * value[m]:.{digits}f}" for m in ranked)
    text = f"**{structure}** — error: {by_error}; {metric}: {by_metric}"
    others = [m for m in present if m != "admm"]
    if "admm" in present and others:
        best = min(others, key=error.get)
        text += f"; ADMM's error is {error['admm'] / error[best]:.2f}× {best}'s"
        if lower and "sparsegpt" in present:
            dense = _mean(rows, "dense")
            rise = {m: value[m] - dense for m in ("admm", "sparsegpt")}
            if rise["sparsegpt"] > 0:
                text += (
                    f"; ADMM's perplexity increase over dense ({dense:.1f}) is "
                    f"{rise['admm'] / rise['sparsegpt']:.2f}× SparseGPT's ({rise['admm']:+.1f} vs "
                    f"{rise['sparsegpt']:+.1f})"
                )
    return text


def plot(rows: list[dict], study: OneShotStudy, path: Path) -> None:
    """The metric and the mean reconstruction error per structure, one bar per method."""
    metric = _metric(rows)
    structures = [s for s in study.chosen_structures if any(r["structure"] == s for r in rows)]
    width = 0.8 / len(study.methods)
    scale = 100 if metric == "accuracy" else 1
    with harness.figure(path, ncols=2, figsize=(11, 3.8)) as (_, axes):
        for i, m in enumerate(study.methods):
            x = np.arange(len(structures)) + i * width
            for ax, key, factor in ((axes[0], metric, scale), (axes[1], "error", 1)):
                values = [
                    factor * _mean(_of(rows, s, m), key) if _of(rows, s, m) else np.nan for s in structures
                ]
                ax.bar(x, values, width, label=m)
        dense = scale * _mean(rows, "dense")
        axes[0].axhline(dense, color="k", lw=1, ls="--", label=f"dense {dense:.1f}")
        if metric == "accuracy":
            axes[0].set(ylabel="test accuracy (%)", title="accuracy without retraining", ylim=(0, 100))
        else:
            axes[0].set(
                ylabel="test perplexity (log scale)", title="perplexity without retraining", yscale="log"
            )
        axes[1].set(ylabel="||X(W − Ŵ)|| / ||XW|| (mean)", title="layer reconstruction error")
        for ax in axes:
            ax.set_xticks(np.arange(len(structures)) + 0.4 - width / 2, structures)
        axes[0].legend(fontsize=7, ncol=5, loc="upper center")


def report(rows: list[dict], study: OneShotStudy, out: Path) -> str:
    """Write ``report.md`` and ``oneshot.png``; return the Markdown."""
    metric = _metric(rows)
    structures = [s for s in study.chosen_structures if any(r["structure"] == s for r in rows)]
    plot(rows, study, out / "oneshot.png")
    model = {"bert": "MiniLM", "smollm2": "SmolLM2-135M"}[study.problem]
    examples = "sentences" if study.problem == "bert" else "windows of tokens"
    dense = _mean(rows, "dense")
    lines = [
        f"# One-shot pruning of {model}: {study.problem}/{study.size}",
        "",
        (__doc__ or "").strip(),
        "",
        f"Dense {metric} {100 * dense if metric == 'accuracy' else dense:.1f}; {rows[0]['calibration']} "
        f"calibration {examples} per draw, draws {list(study.seeds)}; polarity fragment "
        f"{study.fragment}; process peak RSS {max(r['peak_rss_mb'] for r in rows):.0f} MB.",
        "",
    ]
    for s in structures:
        lines += [f"## {s}", "", table(rows, study, s), ""]
        if s == "structured":
            lines += [
                "Compacted (the heads and neurons removed from the model):",
                "",
                compaction_table(rows, study),
                "",
            ]
    lines += ["## Conclusion", "", *(f"* {conclusion(rows, study, s)}" for s in structures)]
    if "structured" in structures:
        lines += [f"* {compaction_conclusion(rows)}"]
    lines += [""]
    lines += [f"![{metric} and reconstruction error](oneshot.png)", ""]
    text = "\n".join(lines)
    (out / "report.md").write_text(text)
    return text

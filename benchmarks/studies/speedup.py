"""Physically smaller models: coupled structured pruning, compaction into a smaller dense model,
and the speed it buys on this machine (``prunax bench speedup``).

Per model, sparsity and method: the dense start is pruned to the model's coupled structure (each
coupled group keeps its k = n − floor(s·n) most energetic channels) by the method's solve phase,
hard-pruned and retrained masked (Adam), then ``problems.compact`` removes the pruned channels.
Parameters are counted over every leaf, FLOPs are XLA's count for the compiled forward of one
example, and latency is the median of interleaved calls of the jitted dense and compact forwards
in the same process (batch 1 and a throughput batch). The compact model's metric is measured
again: it computes what the masked one does.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import optax

from prunax import problems, solvers

from .. import harness
from ..configs import SpeedupStudy
from ..methods import CONVERGENCE, SolvePhase

_TARGETS = {  # model -> (sparsity, batch speed-up at least, metric points below dense at most)
    "resnet18": (0.5, 1.7, 2.0),
    "minilm": (0.5, 1.6, 3.0),
}


def inputs(problem, batch: int, seed: int) -> dict:
    """A test batch on the device (``forward`` reads the inputs it needs and ignores the rest)."""
    return jax.device_put(next(problem.batches("test", jax.random.key(seed), batch)))


def flops(forward, params, state, batch: dict) -> float:
    """XLA's floating-point operation count of the compiled ``forward`` on ``batch``."""
    analysis = jax.jit(forward).lower(params, state, batch).compile().cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list | tuple) else analysis
    return float(analysis.get("flops", float("nan")))


def measure(problem, start, compacted, batches: dict, repeats: int) -> dict:
    """Parameters, FLOPs per example and latency per batch size of the dense and compact models."""
    size = lambda tree: int(sum(np.size(x) for x in jax.tree.leaves(tree)))  # noqa: E731
    dense_forward, compact_forward = jax.jit(problem.forward), jax.jit(compacted.problem.forward)
    row = {
        "params": size(start[0]),
        "compact_params": size(compacted.params),
        "flops": flops(problem.forward, *start, batches[1]),
        "compact_flops": flops(compacted.problem.forward, compacted.params, compacted.state, batches[1]),
        "latency_ms": {},
    }
    for batch, x in batches.items():
        (dense_ms, compact_ms), _ = harness.median_ms(
            lambda x=x: dense_forward(*start, x),
            lambda x=x: compact_forward(compacted.params, compacted.state, x),
            repeats=repeats,
        )
        row["latency_ms"][str(batch)] = {"dense": dense_ms, "compact": compact_ms}
    return row


def one_run(
    study: SpeedupStudy, name: str, method: str, sparsity: float, seed: int, out: Path, resume, quiet
):
    """Prune, retrain, compact and time one (model, method, sparsity, seed)."""
    problem_name, size, structure, batch, lr = study.model(name)
    problem = problems.get(problem_name, size)
    start = solvers.pretrained(problem, seed=seed, quiet=quiet)
    spec = problem.coupled[structure](sparsity)
    phase = SolvePhase.of(problem, spec, lr, study.solve_epochs, start=start[0], sparsity=sparsity)
    budget = harness.Budget(study.solve_epochs, study.retrain_epochs, optax.adam(lr), seed)
    batches = {1: inputs(problem, 1, seed), batch: inputs(problem, batch, seed)}

    def compact_and_time(result) -> dict:
        compacted = problems.compact(problem, result.params, result.state, within=spec)
        metric = compacted.problem.evaluate(compacted.params, compacted.state)[problem.metric]
        return {
            "compact_metric": metric,
            "widths": compacted.config,
            **measure(problem, start, compacted, batches, study.repeats),
        }

    key = f"{name}/{method}/{sparsity:g}/seed{seed}"
    fields = {"model": name, "method": method, "sparsity": sparsity, "seed": seed, "structure": structure}
    row, _ = harness.run_prune(
        problem,
        spec,
        CONVERGENCE[method].transform(phase),
        start,
        budget,
        key=key.replace("/", "_"),
        out=out,
        resume=resume,
        quiet=quiet,
        fields=fields,
        measure=compact_and_time,
    )
    return {**row, "key": key, "metric": problem.metric}


def run(
    study: SpeedupStudy, out: Path, resume: bool = False, quiet: bool = True, progress=None
) -> list[dict]:
    """Every (model, sparsity, method, seed) of ``study``; rows in ``out/runs.jsonl``."""
    out = Path(out)
    log = harness.RunLog(out, resume)
    runs = [
        (
            f"{m}/{method}/{s:g}/seed{seed}",
            lambda m=m, method=method, s=s, seed=seed: one_run(study, m, method, s, seed, out, resume, quiet),
        )
        for m in study.models
        for s in study.sparsities
        for method in study.methods
        for seed in study.seeds
    ]
    return log.rows(runs, progress)


def _speedup(row: dict, batch: str) -> float:
    times = row["latency_ms"][batch]
    return times["dense"] / times["compact"]


def table(rows: list[dict], study: SpeedupStudy) -> str:
    """Markdown: per model and sparsity, the sizes, speed-ups and the metric per method."""
    header = ["model", "sparsity", "widths", "params ×", "FLOPs ×", "batch 1", "throughput batch"]
    header += [f"{m} (pruned → retrained)" for m in study.methods] + ["dense"]
    cells = []
    for name in study.models:
        batch = str(study.model(name)[3])
        for s in study.sparsities:
            mine = [r for r in rows if r["model"] == name and r["sparsity"] == s]
            if not mine:
                continue
            r = mine[0]
            t1, tb = r["latency_ms"]["1"], r["latency_ms"][batch]
            per_method = []
            for method in study.methods:
                runs = [x for x in mine if x["method"] == method]
                per_method.append(
                    f"{harness.percent_cell([x['hard_prune'] for x in runs])} → "
                    f"{harness.percent_cell([harness.final_metric(x) for x in runs])}"
                )
            cells.append(
                [
                    name,
                    f"{s:g}",
                    _widths(r["widths"]),
                    f"{r['compact_params'] / r['params']:.2f}",
                    f"{r['compact_flops'] / r['flops']:.2f}",
                    f"{t1['dense']:.2f} → {t1['compact']:.2f} ms ({_speedup(r, '1'):.2f}×)",
                    f"{tb['dense']:.1f} → {tb['compact']:.1f} ms at {batch} ({_speedup(r, batch):.2f}×)",
                    *per_method,
                    harness.percent_cell([x["dense"] for x in mine if x["method"] == mine[0]["method"]]),
                ]
            )
    return harness.markdown_table(header, cells)


def _widths(config: dict) -> str:
    """A short form of the compact model's widths (their total per kind)."""
    return ", ".join(f"{k} {sum(v) if isinstance(v, list | tuple) else v}" for k, v in config.items())


def conclusions(rows: list[dict], study: SpeedupStudy) -> list[str]:
    """One sentence per target model the study ran, computed from the rows."""
    out = []
    for name, (sparsity, speed, points) in _TARGETS.items():
        mine = [r for r in rows if r["model"] == name and r["sparsity"] == sparsity]
        if not mine:
            continue
        batch = str(study.model(name)[3])
        faster = _speedup(mine[0], batch)
        best = max(
            study.methods,
            key=lambda m: np.mean([harness.final_metric(r) for r in mine if r["method"] == m] or [-1]),
        )
        final = np.mean([harness.final_metric(r) for r in mine if r["method"] == best])
        drop = 100 * (np.mean([r["dense"] for r in mine]) - final)
        met = faster >= speed and drop <= points
        out.append(
            f"{name} at {sparsity:g}: {faster:.2f}× faster at batch {batch} (target ≥ {speed}×), "
            f"{best} ends {abs(drop):.1f} points {'below' if drop > 0 else 'above'} dense "
            f"(target ≤ {points} below): "
            f"{'met' if met else 'missed'}."
        )
    for name in study.models:
        means = {
            m: np.mean(finals)
            for m in study.methods
            if (finals := [harness.final_metric(r) for r in rows if r["model"] == name and r["method"] == m])
        }
        if len(means) > 1:
            ranked = sorted(means, key=means.get, reverse=True)
            gap = 100 * (means[ranked[0]] - means[ranked[1]])
            verdict = (
                f"{ranked[0]} ahead by {gap:.1f} points" if gap >= 1 else f"a tie ({gap:.1f} points apart)"
            )
            out.append(f"{name}, mean over the sparsities after retraining: {verdict}.")
    equal = [abs(r["compact_metric"] - harness.final_metric(r)) for r in rows]
    if equal:
        out.append(
            "The compact models score what the masked ones do: largest difference "
            f"{max(equal):.2g} over {len(rows)} runs."
        )
    return out


def plot(rows: list[dict], study: SpeedupStudy, path: Path) -> None:
    """Final metric vs measured throughput speed-up, one line per model and method."""
    with harness.figure(path, figsize=(6.5, 4.2)) as (fig, ax):
        for name in study.models:
            batch = str(study.model(name)[3])
            for method in study.methods:
                mine = sorted(
                    (r for r in rows if r["model"] == name and r["method"] == method),
                    key=lambda r: r["sparsity"],
                )
                if mine:
                    xs = [_speedup(r, batch) for r in mine]
                    ax.plot(xs, [100 * harness.final_metric(r) for r in mine], "o-", label=f"{name} {method}")
        ax.set_xlabel("measured speed-up at the throughput batch (×)")
        ax.set_ylabel("metric after retraining (%)")
        ax.legend(fontsize=7)


def report(rows: list[dict], study: SpeedupStudy, out: Path) -> str:
    text = "\n\n".join(
        [
            "# Structured pruning that makes models faster",
            (__doc__ or "").strip(),
            f"Budget: {study.solve_epochs} solve + {study.retrain_epochs} retraining epochs, seeds "
            f"{list(study.seeds)}; {study.repeats} timed rounds per latency.",
            table(rows, study),
            "\n".join(f"- {line}" for line in conclusions(rows, study)),
            "![metric vs speed-up](speedup.png)",
        ]
    )
    plot(rows, study, Path(out) / "speedup.png")
    (Path(out) / "report.md").write_text(text + "\n")
    (Path(out) / "rows.json").write_text(json.dumps(rows))
    return text

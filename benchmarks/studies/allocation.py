"""Latency-budgeted allocation (the compiler-aware idea of CANAO): per-layer sparsities chosen from
a measured latency table vs one uniform sparsity, at the same latency budget, same solver, epochs.

Per prunable layer, the structure's pruned forward is timed on this machine at every grid
sparsity (``cost_table``: a conv with fewer filters, a Dense kernel with fewer output columns).
The budget is the summed latency at the uniform sparsity; ``constraints.budget.allocate`` picks
the per-layer sparsities that remove the least magnitude energy within it. Both specs are then
pruned by gradual magnitude pruning (cubic schedule over the solve phase) and retrained masked.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import jax
import numpy as np
import optax

from prunax import problems, solvers
from prunax.constraints import budget, spec
from prunax.problems import resnet

from .. import harness
from ..configs import ALLOCATION_STRUCTURES as STRUCTURES
from ..configs import AllocationStudy
from ..hardware import cost_table
from ..hardware.layer_inputs import conv_inputs
from ..methods import CONVERGENCE, SolvePhase

LATENCY_SPARSITIES = tuple(round(0.1 * i, 1) for i in range(10))  # 0, 0.1, ..., 0.9


def family(problem, structure: str):
    """sparsity -> the structure's constraint (the problem's group spec has one rule)."""

    def make(s: float):
        rules = problem.groups[structure](s).rules
        if len(rules) != 1:
            raise ValueError(
                f"{problem.name}/{structure}: allocation needs a one-rule group, got {len(rules)}"
            )
        return rules[0][1]

    return make


def latency_table(
    problem, params, state, grid=LATENCY_SPARSITIES, repeats: int = 10, seed: int = 0
) -> dict[str, list[float]]:
    """Seconds per prunable leaf at every grid sparsity (resnet: filters; bert: output columns),
    as the running minimum over the grid: a layer pruned to s can always run at the width of any
    smaller s (its removed slices kept as zeros), so timing noise that makes more pruning look
    slower is not a real cost (and would let "prune nothing" fit the uniform budget)."""
    table = {}
    if problem.name == "resnet":
        x = next(problem.batches("test", jax.random.key(seed), 64))["x"]
        inputs = conv_inputs(resnet.model_of(problem), {"params": params, **state}, x)
        for path, kernel in problem.prunable_leaves(params).items():
            activation, strides, _ = inputs[path]
            table[path] = cost_table.filter_latency(activation, kernel, strides, grid, repeats)
    elif problem.name == "bert":
        tokens = problem.recipe.batch_size * problem.config["length"]
        for path, w in problem.prunable_leaves(params).items():
            table[path] = cost_table.column_latency(w, tokens, grid, repeats, seed)
    else:
        raise ValueError(f"latency tables exist for {sorted(STRUCTURES)}, got {problem.name!r}")
    return {path: np.minimum.accumulate(times).tolist() for path, times in table.items()}


def layer_sizes(problem, params, state, seed: int = 0) -> dict[str, dict[str, int]]:
    """Parameters and FLOPs per forward example (resnet: one image; bert: one sequence) of
    every prunable leaf, analytically."""
    leaves = problem.prunable_leaves(params)
    if problem.name == "resnet":
        x = next(problem.batches("test", jax.random.key(seed), 1))["x"]
        inputs = conv_inputs(resnet.model_of(problem), {"params": params, **state}, x)
        hw = {p: [-(-n // s) for n, s in zip(inputs[p][0].shape[1:3], inputs[p][1])] for p in leaves}
        return {
            p: {"params": w.size, "flops": cost_table.conv_flops(w.shape, hw[p])} for p, w in leaves.items()
        }
    length = problem.config["length"]
    return {p: {"params": w.size, "flops": 2 * w.size * length} for p, w in leaves.items()}


BLOCK_SPARSITIES = (0.0, 0.5, 0.75, 0.9)


def block_comparison(problem, params, repeats: int = 3, seed: int = 0) -> dict[str, list[float]]:
    """BERT only: seconds per prunable Dense kernel of the 16×16 block-sparse matmul at
    ``BLOCK_SPARSITIES`` (0: the dense matmul), the unstructured-friendly alternative to columns."""
    tokens = problem.recipe.batch_size * problem.config["length"]
    return {
        path: cost_table.block_latency(w, tokens, 16, BLOCK_SPARSITIES, repeats, seed).tolist()
        for path, w in problem.prunable_leaves(params).items()
    }


def allocation(study: AllocationStudy, problem, params, table: dict) -> budget.Allocation:
    """The least-energy per-layer sparsities within the uniform sparsity's summed latency."""
    at = _grid_index(study.sparsity)
    if not np.isclose(LATENCY_SPARSITIES[at], study.sparsity):
        raise ValueError(f"sparsity {study.sparsity:g} is not on the latency grid {list(LATENCY_SPARSITIES)}")
    limit = sum(times[at] for times in table.values())
    return budget.allocate(
        params,
        problem.prunable,
        family(problem, STRUCTURES[problem.name]),
        lambda p, w, g: np.asarray(table[p]),
        limit,
        LATENCY_SPARSITIES,
    )


def one_run(study: AllocationStudy, problem, start, pruned_spec, key: str, out: Path, resume, quiet) -> dict:
    """Gradual magnitude pruning to ``pruned_spec``, masked retraining; the summary row with the
    achieved sparsity of the prunable leaves."""
    tx = CONVERGENCE["gradual"].transform(SolvePhase.of(problem, pruned_spec, study.lr, study.solve_epochs))
    epochs = harness.Budget(study.solve_epochs, study.retrain_epochs, optax.adam(study.lr), study.seed)

    def achieved(result) -> dict:
        return {"sparsity": float(np.mean([r.achieved_sparsity for r in result.report]))}

    row, _ = harness.run_prune(
        problem,
        pruned_spec,
        tx,
        start,
        epochs,
        key=key,
        out=out,
        resume=resume,
        quiet=quiet,
        measure=achieved,
    )
    return row


def _cached(path: Path, resume: bool, measure, progress, message: str):
    """``path``'s JSON when resuming and it exists, else ``measure()`` written there."""
    if resume and path.exists():
        return json.loads(path.read_text())
    if progress:
        progress(message)
    value = measure()
    path.write_text(json.dumps(value))
    return value


def run(study: AllocationStudy, out: Path, resume: bool = False, quiet: bool = True, progress=None) -> dict:
    """The latency table (measured once, kept in ``out/latency.json``), the allocation, and the
    uniform and allocated runs; returns everything the report needs."""
    out = Path(out)
    log = harness.RunLog(out, resume)
    problem = problems.get(study.problem, study.size)
    start = solvers.pretrained(problem, seed=study.seed, quiet=quiet)
    table = _cached(
        out / "latency.json",
        resume,
        lambda: latency_table(problem, *start, repeats=study.repeats, seed=study.seed),
        progress,
        f"timing every prunable layer at {len(LATENCY_SPARSITIES)} sparsities",
    )
    blocks = None
    if problem.name == "bert":
        blocks = _cached(
            out / "block_latency.json",
            resume,
            lambda: block_comparison(problem, start[0], seed=study.seed),
            progress,
            f"timing the 16x16 block-sparse matmul at sparsity {BLOCK_SPARSITIES}",
        )
    chosen = allocation(study, problem, start[0], table)
    if not any(s > 0 for s in chosen.sparsities.values()):
        raise ValueError(
            f"{out / 'latency.json'}: every layer is as fast at sparsity {study.sparsity:g} as dense "
            "(the timings are noise at this size), so the allocation prunes nothing; "
            "time with more --repeats into a fresh --out"
        )
    finished = log.finished.get("allocated")
    if finished is not None and finished.get("allocation") != chosen.sparsities:
        raise ValueError(
            f"{out}: the finished allocated run used another allocation than the one computed "
            "now (changed code or latency table); resume into a fresh --out"
        )
    uniform = spec([(problem.prunable, family(problem, STRUCTURES[problem.name])(study.sparsity))])
    prune = partial(one_run, study, problem, start, out=out, resume=resume, quiet=quiet)
    runs = [
        ("uniform", lambda: prune(uniform, "uniform")),
        ("allocated", lambda: prune(chosen.spec, "allocated") | {"allocation": chosen.sparsities}),
    ]
    return {
        "table": table,
        "sizes": layer_sizes(problem, *start, seed=study.seed),
        "allocation": chosen.sparsities,
        "rows": log.rows(runs, progress, f"{study.problem}/{study.size}: "),
        "problem": problem,
        "blocks": blocks,
    }


def _grid_index(sparsity: float) -> int:
    """The position of ``sparsity`` on ``LATENCY_SPARSITIES`` (the nearest point)."""
    return int(np.argmin(np.abs(np.asarray(LATENCY_SPARSITIES) - sparsity)))


def latency_at(table: dict, sparsities: dict) -> float:
    """Seconds summed over the layers, each at its own sparsity."""
    return float(sum(table[p][_grid_index(s)] for p, s in sparsities.items()))


def layer_table(result: dict, study: AllocationStudy) -> str:
    """Markdown: per layer its size and the latency dense, at the uniform sparsity and at its
    allocated one; then the totals."""
    table, chosen, sizes = result["table"], result["allocation"], result["sizes"]
    at = _grid_index(study.sparsity)
    header = ["layer", "params", "MFLOPs / example", "dense ms", "uniform s", "ms", "allocated s", "ms"]
    cells = [
        [
            path,
            str(sizes[path]["params"]),
            f"{sizes[path]['flops'] / 1e6:.2f}",
            f"{1e3 * times[0]:.3f}",
            f"{study.sparsity:g}",
            f"{1e3 * times[at]:.3f}",
            f"{chosen[path]:g}",
            f"{1e3 * times[_grid_index(chosen[path])]:.3f}",
        ]
        for path, times in table.items()
    ]
    params = sum(v["params"] for v in sizes.values())
    flops = sum(v["flops"] for v in sizes.values()) / 1e6
    dense_ms, uniform_ms = (1e3 * sum(t[i] for t in table.values()) for i in (0, at))
    total = (
        f"| **total** | {params} | {flops:.2f} | {dense_ms:.2f} | | {uniform_ms:.2f} | "
        f"| {1e3 * latency_at(table, chosen):.2f} |"
    )
    return harness.markdown_table(header, cells) + "\n" + total


def accuracy_table(rows: list[dict], study: AllocationStudy) -> str:
    """Markdown: per spec the achieved sparsity and the metric after the hard prune and each
    retraining epoch."""
    header = [
        "spec",
        "achieved sparsity",
        "hard prune",
        *(f"retrain {e + 1}" for e in range(study.retrain_epochs)),
    ]
    cells = [
        [
            r["key"],
            f"{r['sparsity']:.3f}",
            *(harness.percent_cell([v]) for v in [r["hard_prune"], *r["retrain"]]),
        ]
        for r in rows
    ]
    return harness.markdown_table(header, cells)


def _block_section(blocks: dict) -> str:
    totals = np.sum(list(blocks.values()), axis=0) * 1e3
    return (
        "Summed over the same layers, the 16×16 block-sparse matmul (gather, per-block products, "
        "scatter-add) takes "
        + ", ".join(f"{t:.1f} ms at s = {g:g}" for g, t in zip(BLOCK_SPARSITIES[1:], totals[1:]))
        + f" against {totals[0]:.1f} ms for the dense matmuls: on XLA:CPU, tiles of this size do not pay."
    )


def report(result: dict, study: AllocationStudy, out: Path) -> str:
    """Markdown: per layer the latency at 0, at the uniform sparsity and at its allocated one;
    then accuracy of the two specs after the hard prune and each retraining epoch."""
    table, rows, problem = result["table"], result["rows"], result["problem"]
    at = _grid_index(study.sparsity)
    uniform_ms, dense_ms = (1e3 * sum(t[i] for t in table.values()) for i in (at, 0))
    text = "\n\n".join(
        [
            f"# Latency-budgeted allocation: {problem.name}/{problem.size}, "
            f"{STRUCTURES[problem.name]} pruning",
            (__doc__ or "").strip(),
            f"Dense {problem.metric} {100 * rows[0]['dense']:.1f} %. Budget: the summed layer latency at "
            f"uniform sparsity {study.sparsity:g} ({uniform_ms:.2f} ms of {dense_ms:.2f} ms dense); gradual "
            f"magnitude, {study.solve_epochs} solve + {study.retrain_epochs} retraining epochs, "
            f"Adam {study.lr:g}.",
            layer_table(result, study),
            *([_block_section(result["blocks"])] if result.get("blocks") else []),
            accuracy_table(rows, study),
        ]
    )
    (Path(out) / "report.md").write_text(text + "\n")
    return text

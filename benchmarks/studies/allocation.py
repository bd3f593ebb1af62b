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
import time
from pathlib import Path

import jax
import numpy as np
import optax

from prunax import problems, solvers
from prunax.constraints import budget, spec
from prunax.problems import resnet

from ..configs import ALLOCATION_STRUCTURES as STRUCTURES
from ..configs import AllocationStudy
from ..hardware import cost_table
from ..hardware.layer_inputs import conv_inputs
from .convergence import finished_runs, percent_cell, summarize

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
    """Seconds per prunable leaf at every grid sparsity (resnet: filters; bert: output columns)."""
    table = {}
    if problem.name == "resnet":
        x = next(problem.batches("test", jax.random.key(seed), 64))["x"]
        inputs = conv_inputs(resnet.model_of(problem), {"params": params, **state}, x)
        for path, kernel in problem.prunable_leaves(params).items():
            activation, strides, _ = inputs[path]
            table[path] = cost_table.filter_latency(activation, kernel, strides, grid, repeats).tolist()
    elif problem.name == "bert":
        tokens = problem.recipe.batch_size * problem.config["length"]
        for path, w in problem.prunable_leaves(params).items():
            table[path] = cost_table.column_latency(w, tokens, grid, repeats, seed).tolist()
    else:
        raise ValueError(f"latency tables exist for {sorted(STRUCTURES)}, got {problem.name!r}")
    return table


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
    grid = np.asarray(LATENCY_SPARSITIES)
    at = int(np.argmin(np.abs(grid - study.sparsity)))
    if not np.isclose(grid[at], study.sparsity):
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


def one_run(
    study: AllocationStudy, problem, start, spec, key: str, out: Path, resume: bool, quiet: bool
) -> dict:
    steps = problem.steps_per_epoch(problem.recipe.batch_size)
    end = max(int(0.75 * study.solve_epochs * steps), 1)
    schedule = solvers.cubic_fraction(0, end, every=max(steps // 4, 1))
    began = time.perf_counter()
    result = solvers.prune(
        problem,
        spec,
        optax.chain(optax.adam(study.lr), solvers.magnitude(spec, schedule)),
        solve_epochs=study.solve_epochs,
        retrain_epochs=study.retrain_epochs,
        retrain_optimizer=optax.adam(study.lr),
        start=start,
        seed=study.seed,
        run_dir=out / "checkpoints" / key,
        resume=resume,
        quiet=quiet,
    )
    return {
        "key": key,
        **summarize(result.records, problem.metric),
        "sparsity": float(np.mean([r.achieved_sparsity for r in result.report])),
        "wall_seconds": time.perf_counter() - began,
    }


def run(study: AllocationStudy, out: Path, resume: bool = False, quiet: bool = True, progress=None) -> dict:
    """The latency table (measured once, kept in ``out/latency.json``), the allocation, and the
    uniform and allocated runs; returns everything the report needs."""
    out = Path(out)
    results_file, done = finished_runs(out, resume)
    problem = problems.get(study.problem, study.size)
    start = solvers.pretrained(problem, seed=study.seed, quiet=quiet)
    cached = out / "latency.json"
    if resume and cached.exists():
        table = json.loads(cached.read_text())
    else:
        if progress:
            progress(f"timing every prunable layer at {len(LATENCY_SPARSITIES)} sparsities")
        table = latency_table(problem, *start, repeats=study.repeats, seed=study.seed)
        cached.write_text(json.dumps(table))
    blocks = None
    if problem.name == "bert":
        cached_blocks = out / "block_latency.json"
        if resume and cached_blocks.exists():
            blocks = json.loads(cached_blocks.read_text())
        else:
            if progress:
                progress(f"timing the 16x16 block-sparse matmul at sparsity {BLOCK_SPARSITIES}")
            blocks = block_comparison(problem, start[0], seed=study.seed)
            cached_blocks.write_text(json.dumps(blocks))
    chosen = allocation(study, problem, start[0], table)
    uniform = family(problem, STRUCTURES[problem.name])(study.sparsity)
    specs = {
        "uniform": spec([(problem.prunable, uniform)]),
        "allocated": chosen.spec,
    }
    rows = []
    for key, pruned_spec in specs.items():
        if key in done:
            if key == "allocated" and done[key].get("allocation") != chosen.sparsities:
                raise ValueError(
                    f"{out}: the finished allocated run used another allocation than the one computed "
                    "now (changed code or latency table); resume into a fresh --out"
                )
            rows.append(done[key])
            continue
        if progress:
            progress(f"{study.problem}/{study.size}: {key}")
        row = one_run(study, problem, start, pruned_spec, key, out, resume, quiet)
        if key == "allocated":
            row["allocation"] = chosen.sparsities
        with results_file.open("a") as f:
            f.write(json.dumps(row) + "\n")
        rows.append(row)
    return {
        "table": table,
        "sizes": layer_sizes(problem, *start, seed=study.seed),
        "allocation": chosen.sparsities,
        "rows": rows,
        "problem": problem,
        "blocks": blocks,
    }


def latency_at(table: dict, sparsities: dict) -> float:
    grid = np.asarray(LATENCY_SPARSITIES)
    return float(sum(table[p][int(np.argmin(np.abs(grid - s)))] for p, s in sparsities.items()))


def report(result: dict, study: AllocationStudy, out: Path) -> str:
    """Markdown: per layer the latency at 0, at the uniform sparsity and at its allocated one;
    then accuracy of the two specs after the hard prune and each retraining epoch."""
    out = Path(out)
    table, chosen, rows = result["table"], result["allocation"], result["rows"]
    grid = np.asarray(LATENCY_SPARSITIES)
    at = int(np.argmin(np.abs(grid - study.sparsity)))
    sizes = result["sizes"]
    lines = [
        "| layer | params | MFLOPs / example | dense ms | uniform s | ms | allocated s | ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for path, times in table.items():
        mine = int(np.argmin(np.abs(grid - chosen[path])))
        lines.append(
            f"| {path} | {sizes[path]['params']} | {sizes[path]['flops'] / 1e6:.2f} | {1e3 * times[0]:.3f} "
            f"| {study.sparsity:g} | {1e3 * times[at]:.3f} "
            f"| {chosen[path]:g} | {1e3 * times[mine]:.3f} |"
        )
    uniform_ms = 1e3 * sum(t[at] for t in table.values())
    allocated_ms = 1e3 * latency_at(table, chosen)
    dense_ms = 1e3 * sum(t[0] for t in table.values())
    params = sum(v["params"] for v in sizes.values())
    flops = sum(v["flops"] for v in sizes.values()) / 1e6
    lines.append(
        f"| **total** | {params} | {flops:.2f} | {dense_ms:.2f} | | {uniform_ms:.2f} | | {allocated_ms:.2f} |"
    )
    head = "| spec | achieved sparsity | hard prune | " + " | ".join(
        f"retrain {e + 1}" for e in range(study.retrain_epochs)
    )
    acc = [head + " |", "|---|---|---|" + "---|" * study.retrain_epochs]
    for r in rows:
        cells = [percent_cell([r["hard_prune"]])] + [percent_cell([v]) for v in r["retrain"]]
        acc.append(f"| {r['key']} | {r['sparsity']:.3f} | " + " | ".join(cells) + " |")
    problem = result["problem"]
    sections = []
    if result.get("blocks"):
        totals = np.sum([times for times in result["blocks"].values()], axis=0) * 1e3
        sections.append(
            "Summed over the same layers, the 16×16 block-sparse matmul (gather, per-block products, "
            "scatter-add) takes "
            + ", ".join(f"{t:.1f} ms at s = {g:g}" for g, t in zip(BLOCK_SPARSITIES[1:], totals[1:]))
            + f" against {totals[0]:.1f} ms for the dense matmuls: on XLA:CPU, tiles of this size do not pay."
        )
    text = "\n\n".join(
        [
            f"# Latency-budgeted allocation: {problem.name}/{problem.size}, "
            f"{STRUCTURES[problem.name]} pruning",
            (__doc__ or "").strip(),
            f"Dense {problem.metric} {100 * rows[0]['dense']:.1f} %. Budget: the summed layer latency at "
            f"uniform sparsity {study.sparsity:g} ({uniform_ms:.2f} ms of {dense_ms:.2f} ms dense); gradual "
            f"magnitude, {study.solve_epochs} solve + {study.retrain_epochs} retraining epochs, "
            f"Adam {study.lr:g}.",
            "\n".join(lines),
            *sections,
            "\n".join(acc),
        ]
    )
    (out / "report.md").write_text(text + "\n")
    return text

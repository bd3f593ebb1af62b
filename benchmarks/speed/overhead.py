"""Solver overhead: the step time of each solver against the plain optax step on the same problem
and batch, measured side by side in one process (docs/benchmarks.md).

For every solver two jitted steps are timed: one whose periodic work never comes due (the cost
between updates) and one that does it on every step (Z-update, multiplier update, reweighting
or mask recomputation). Reported: ``between`` = t_never / t_plain (target ≤ 1.05) and
``update`` = (t_every − t_never) / t_plain, the cost of one update in plain steps (target ≤ 2).
"""

from __future__ import annotations

import jax
import optax

from prunax import problems
from prunax.constraints import Unstructured

from ..configs import OVERHEAD_METHODS as METHODS
from ..harness import markdown_table, median_ms
from ..methods import OVERHEAD, Plain, SolvePhase, lookup


def _stepper(problem, tx, params, state, batch):
    """A jitted step on ``batch`` that carries its own (params, state, optimizer state): each
    call takes one more step and returns the new carry."""
    tx = optax.with_extra_args_support(tx)

    @jax.jit
    def step(params, state, opt_state, key):
        (value, (state, _)), grads = jax.value_and_grad(problem.loss, has_aux=True)(params, state, batch, key)
        updates, opt_state = tx.update(grads, opt_state, params, value=value)
        return optax.apply_updates(params, updates), state, opt_state

    carry = [(params, state, tx.init(params))]
    key = jax.random.key(0)

    def next_step():
        carry[0] = step(*carry[0], key)
        return carry[0]

    return next_step


def run(
    problem_name="resnet",
    size="default",
    sparsity=0.9,
    batch_size=64,
    repeats=20,
    methods=METHODS,
    progress=None,
) -> list[dict]:
    """One row per method: the plain, between-update and every-step times and their ratios. The
    three steps are timed in interleaved rounds, so drift in the machine's speed cancels; each is
    first stepped 3 times (compilation, one-shot masks, SLR's first loss)."""
    chosen = {method: lookup(OVERHEAD, method) for method in methods}
    problem = problems.get(problem_name, size)
    params, state = problem.init(jax.random.key(0))
    batch = next(problem.batches("train", jax.random.key(1), batch_size))
    spec = problem.spec(Unstructured(sparsity))
    rows = []
    for method, solver in chosen.items():
        if progress:
            progress(f"timing {method}")
        steps = [
            _stepper(problem, kind.transform(SolvePhase(spec, 1e-3, every)), params, state, batch)
            for kind, every in ((Plain(), None), (solver, None), (solver, 1))
        ]
        (plain, never, always), _ = median_ms(*steps, repeats=repeats, warmup=3)
        rows.append(
            {
                "method": method,
                "plain_ms": plain,
                "between_ms": never,
                "every_step_ms": always,
                "between": never / plain,
                "update": (always - never) / plain,
            }
        )
    return rows


def report(rows: list[dict], problem_name: str, size: str, batch_size: int) -> str:
    """Markdown: the setting, then per solver the step times and their ratios to the plain step."""
    header = ["solver", "plain ms", "between updates ms", "ratio (≤ 1.05)", "every step ms"]
    cells = [
        [
            r["method"],
            f"{r['plain_ms']:.1f}",
            f"{r['between_ms']:.1f}",
            f"{r['between']:.3f}",
            f"{r['every_step_ms']:.1f}",
            f"{r['update']:.2f}",
        ]
        for r in rows
    ]
    return "\n".join(
        [
            f"Step times on {problem_name}/{size}, batch {batch_size}, Adam, unstructured 90 % over the "
            "prunable leaves (median ms; ratios against the plain step measured in the same run).",
            "",
            markdown_table([*header, "update in steps (≤ 2)"], cells),
        ]
    )

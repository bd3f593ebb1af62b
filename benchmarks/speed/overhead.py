"""Solver overhead: the step time of each solver against the plain optax step on the same problem
and batch, measured side by side in one process (docs/benchmarks.md).

For every solver two jitted steps are timed: one whose periodic work never comes due (the cost
between updates) and one that does it on every step (Z-update, multiplier update, reweighting
or mask recomputation). Reported: ``between`` = t_never / t_plain (target ≤ 1.05) and
``update`` = (t_every − t_never) / t_plain, the cost of one update in plain steps (target ≤ 2).
"""

from __future__ import annotations

import time

import jax
import numpy as np
import optax

from prunax import problems, solvers
from prunax.constraints import Unstructured

METHODS = ("admm", "slr", "rgl", "rgl_prox", "magnitude")
NEVER = 10**9


def _transform(method: str, spec, lr: float, every: int | None):
    """``every`` None: the periodic work never comes due; 1: it runs on every step."""
    period = NEVER if every is None else every
    if method == "plain":
        return optax.adam(lr)
    if method == "admm":
        return optax.chain(solvers.admm(spec, 1e-2, every=period), optax.adam(lr))
    if method == "slr":
        return optax.chain(solvers.slr(spec, every=period), optax.adam(lr))
    if method == "rgl":
        return optax.chain(solvers.reweighted_group_lasso(spec, 1e-4, reweight_every=period), optax.adam(lr))
    if method == "rgl_prox":
        prox = solvers.reweighted_group_lasso(spec, 1e-4, reweight_every=period, prox=True, learning_rate=lr)
        return optax.chain(optax.adam(lr), prox)
    if method == "magnitude":  # a fraction alternating 0.5 / 0.6 recomputes the masks every step
        schedule = None if every is None else (lambda count: 0.5 + 0.1 * (count % 2))
        return optax.chain(optax.adam(lr), solvers.magnitude(spec, schedule))
    raise ValueError(f"unknown method {method!r}; valid: {METHODS}")


def _stepper(problem, tx, params, state, batch):
    """A jitted step on ``batch`` that is compiled and past its first steps (one-shot masks,
    SLR's first loss); calling it times one more step and returns the seconds."""
    tx = optax.with_extra_args_support(tx)

    @jax.jit
    def step(params, state, opt_state, key):
        (value, (state, _)), grads = jax.value_and_grad(problem.loss, has_aux=True)(params, state, batch, key)
        updates, opt_state = tx.update(grads, opt_state, params, value=value)
        return optax.apply_updates(params, updates), state, opt_state

    carry = [(params, state, tx.init(params))]
    key = jax.random.key(0)

    def timed() -> float:
        began = time.perf_counter()
        carry[0] = jax.block_until_ready(step(*carry[0], key))
        return time.perf_counter() - began

    for _ in range(3):
        timed()
    return timed


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
    three steps are timed in interleaved rounds, so drift in the machine's speed cancels."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; valid: {METHODS}")
    problem = problems.get(problem_name, size)
    params, state = problem.init(jax.random.key(0))
    batch = next(problem.batches("train", jax.random.key(1), batch_size))
    spec = problem.spec(Unstructured(sparsity))
    rows = []
    for method in methods:
        if progress:
            progress(f"timing {method}")
        steps = [
            _stepper(problem, _transform(name, spec, 1e-3, every), params, state, batch)
            for name, every in (("plain", None), (method, None), (method, 1))
        ]
        times = np.array([[timed() for timed in steps] for _ in range(repeats)])
        plain, never, always = 1e3 * np.median(times, axis=0)
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
    lines = [
        f"Step times on {problem_name}/{size}, batch {batch_size}, Adam, unstructured 90 % over the prunable "
        "leaves (median ms; ratios against the plain step measured in the same run).",
        "",
        "| solver | plain ms | between updates ms | ratio (≤ 1.05) | every step ms | update in steps (≤ 2) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['plain_ms']:.1f} | {r['between_ms']:.1f} | {r['between']:.3f} | "
            f"{r['every_step_ms']:.1f} | {r['update']:.2f} |"
        )
    return "\n".join(lines)

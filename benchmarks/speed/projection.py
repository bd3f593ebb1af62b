"""Top-k selection speed: the project's kernel against the usual ways, in read-pass units.

For each size n and kept fraction k/n, on a seeded Gaussian float32 array, the median wall time of:

* ``prunax``     — ``top_k_mask(x, k, magnitude=True)``: the exact kept mask (jitted);
* ``lax.top_k``  — ``lax.top_k(|x|, k)`` (a full sort on CPU);
* ``sort``       — ``jnp.sort(|x|)`` then the k-th value as a threshold;
* ``np.partition`` — host introselect on ``|x|`` (not jit-able; NumPy's SIMD partition);
* ``read pass``  — one jitted ``max(|x|)``: the floor any exact method pays at least once.

Ratios are taken inside one run (docs/conventions.md: speed is measured side by side, never asserted).
Slow baselines are timed fewer times (``budget_s``) so that the 3e7 row stays affordable.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from prunax.constraints import top_k_mask

METHODS = ("prunax", "lax.top_k", "sort", "np.partition", "read pass")


@dataclass(frozen=True)
class Timing:
    n: int
    fraction: float
    method: str
    median_ms: float
    runs: int


def _median_ms(fn: Callable[[], object], repeats: int, budget_s: float) -> tuple[float, int]:
    jax.block_until_ready(fn())  # compile and warm up
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeats and (len(times) < 1 or time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3, len(times)


def _callables(x: jax.Array, host: np.ndarray, k: int) -> dict[str, Callable[[], object]]:
    n = x.shape[0]
    ours = jax.jit(lambda v: top_k_mask(v, k, magnitude=True))
    top_k = jax.jit(lambda v: lax.top_k(jnp.abs(v), k))
    by_sort = jax.jit(lambda v: jnp.abs(v) >= jnp.sort(jnp.abs(v))[n - k])
    read = jax.jit(lambda v: jnp.max(jnp.abs(v)))
    return {
        "prunax": lambda: ours(x),
        "lax.top_k": lambda: top_k(x),
        "sort": lambda: by_sort(x),
        "np.partition": lambda: np.partition(np.abs(host), n - k)[n - k],
        "read pass": lambda: read(x),
    }


def run(
    sizes=(10**5, 10**6, 10**7),
    fractions=(0.5, 0.1, 0.01),
    methods=METHODS,
    repeats: int = 7,
    budget_s: float = 3.0,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> list[Timing]:
    """Time every method at every (size, kept fraction); returns one ``Timing`` per cell."""
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise ValueError(f"unknown methods {sorted(unknown)}; valid: {list(METHODS)}")
    rows = []
    for n in sizes:
        host = np.random.default_rng(seed).standard_normal(int(n)).astype(np.float32)
        x = jnp.asarray(host)
        for fraction in fractions:
            k = max(1, int(round(fraction * n)))
            fns = _callables(x, host, k)
            for method in methods:
                if progress:
                    progress(f"n={int(n):.0e} k/n={fraction} {method}")
                ms, runs = _median_ms(fns[method], repeats, budget_s)
                rows.append(Timing(int(n), fraction, method, ms, runs))
    return rows


def report(rows: list[Timing]) -> str:
    """Markdown table: median ms per method, with (x read pass); then prunax's speed-up over each."""
    methods = [m for m in METHODS if any(r.method == m for r in rows)]
    cells = sorted({(r.n, r.fraction) for r in rows}, key=lambda c: (c[0], -c[1]))
    table = {(r.n, r.fraction, r.method): r for r in rows}
    header = "| n | k/n | " + " | ".join(methods) + " |"
    lines = [
        "Median ms (multiple of one read pass). Exact kept mask for prunax; thresholds for the others.",
        "",
        header,
        "|" + "---|" * (len(methods) + 2),
    ]
    for n, fraction in cells:
        floor = table.get((n, fraction, "read pass"))
        entries = []
        for m in methods:
            r = table.get((n, fraction, m))
            if r is None:
                entries.append("-")
            elif floor:
                entries.append(f"{r.median_ms:.2f} (x{r.median_ms / floor.median_ms:.1f})")
            else:
                entries.append(f"{r.median_ms:.2f}")
        lines.append(f"| {n:.0e} | {fraction} | " + " | ".join(entries) + " |")
    ours = [m for m in methods if m not in ("prunax", "read pass")]
    if "prunax" in methods and ours:
        lines += ["", "prunax speed-up (baseline time / prunax time):", ""]
        lines += ["| n | k/n | " + " | ".join(ours) + " |", "|" + "---|" * (len(ours) + 2)]
        for n, fraction in cells:
            base = table[(n, fraction, "prunax")].median_ms
            ratios = [
                f"{table[(n, fraction, m)].median_ms / base:.2f}x" if (n, fraction, m) in table else "-"
                for m in ours
            ]
            lines.append(f"| {n:.0e} | {fraction} | " + " | ".join(ratios) + " |")
    return "\n".join(lines)

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

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from prunax.constraints import top_k_mask

from ..configs import PROJECTION_METHODS as METHODS
from ..harness import markdown_table, median_ms


@dataclass(frozen=True)
class Timing:
    n: int
    fraction: float
    method: str
    median_ms: float
    runs: int


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
                (ms,), runs = median_ms(fns[method], repeats=repeats, budget_s=budget_s)
                rows.append(Timing(int(n), fraction, method, ms, runs))
    return rows


def report(rows: list[Timing]) -> str:
    """Markdown table: median ms per method, with (x read pass); then prunax's speed-up over each."""
    methods = [m for m in METHODS if any(r.method == m for r in rows)]
    cells = sorted({(r.n, r.fraction) for r in rows}, key=lambda c: (c[0], -c[1]))
    table = {(r.n, r.fraction, r.method): r for r in rows}
    timings = []
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
        timings.append([f"{n:.0e}", str(fraction), *entries])
    lines = [
        "Median ms (multiple of one read pass). Exact kept mask for prunax; thresholds for the others.",
        "",
        markdown_table(["n", "k/n", *methods], timings),
    ]
    ours = [m for m in methods if m not in ("prunax", "read pass")]
    if "prunax" in methods and ours:
        speedups = []
        for n, fraction in cells:
            base = table[(n, fraction, "prunax")].median_ms
            ratios = [
                f"{table[(n, fraction, m)].median_ms / base:.2f}x" if (n, fraction, m) in table else "-"
                for m in ours
            ]
            speedups.append([f"{n:.0e}", str(fraction), *ratios])
        lines += ["", "prunax speed-up (baseline time / prunax time):", ""]
        lines.append(markdown_table(["n", "k/n", *ours], speedups))
    return "\n".join(lines)

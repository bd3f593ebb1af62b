"""Projection speed: the project's kernel against the usual ways and the floor, in one run.

For each size n and kept fraction k/n, on a seeded Gaussian float32 vector, the median wall time of:

* ``prunax project`` — ``keep_top_k(x, k)`` (``Unstructured(1 - k/n).project``): the projection;
* ``prunax mask``    — ``top_k_mask(x, k, magnitude=True)``: the exact kept mask;
* ``floor``          — ``where(|x| > t, x, 0)`` with the threshold t known: one read and one write
  pass, the least any projection costs;
* ``NumPy``          — the host projection: ``np.partition`` of |x| for the threshold, then ``where``;
* ``lax.top_k``      — ``lax.top_k(|x|, k)`` (a full sort on CPU);
* ``sort``           — ``jnp.sort(|x|)`` then the k-th value as a threshold;
* ``read pass``      — one jitted ``max(|x|)``.

``sharded`` (``run_sharded``) times ``keep_top_k`` on 8 forced host devices (the vector sharded in
8) next to one device, in a subprocess started with the device count forced (it is fixed when JAX
starts). Ratios are taken inside one run (docs/conventions.md: speed is measured side by side,
never asserted). The fast methods are timed in interleaved rounds, so that the floor and the
projection see the same state of the machine; the two slow baselines alone, fewer times
(``budget_s``).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from prunax.constraints import keep_top_k, top_k_mask

from ..configs import PROJECTION_METHODS as METHODS
from ..harness import markdown_table, median_ms

SHARDED_DEVICES = 8
_SLOW = ("lax.top_k", "sort")  # timed alone under the time budget; the rest in interleaved rounds


@dataclass(frozen=True)
class Timing:
    n: int
    fraction: float
    method: str
    median_ms: float
    runs: int


def _vector(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(int(n)).astype(np.float32)


def _callables(x: jax.Array, host: np.ndarray, k: int) -> dict[str, Callable[[], object]]:
    n = x.shape[0]
    threshold = float(np.partition(np.abs(host), n - k)[n - k])
    project = jax.jit(lambda v: keep_top_k(v, k))
    mask = jax.jit(lambda v: top_k_mask(v, k, magnitude=True))
    floor = jax.jit(lambda v, t: jnp.where(jnp.abs(v) > t, v, 0))
    top_k = jax.jit(lambda v: lax.top_k(jnp.abs(v), k))
    by_sort = jax.jit(lambda v: jnp.abs(v) >= jnp.sort(jnp.abs(v))[n - k])
    read = jax.jit(lambda v: jnp.max(jnp.abs(v)))

    def numpy_projection():
        magnitude = np.abs(host)
        return np.where(magnitude >= np.partition(magnitude, n - k)[n - k], host, 0)

    return {
        "prunax project": lambda: project(x),
        "prunax mask": lambda: mask(x),
        "floor": lambda: floor(x, jnp.float32(threshold)),
        "NumPy": numpy_projection,
        "lax.top_k": lambda: top_k(x),
        "sort": lambda: by_sort(x),
        "read pass": lambda: read(x),
    }


def _kept(n: int, fraction: float) -> int:
    return max(1, int(round(fraction * n)))


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
        host = _vector(n, seed)
        x = jnp.asarray(host)
        for fraction in fractions:
            fns = _callables(x, host, _kept(int(n), fraction))
            together = [m for m in methods if m not in _SLOW]
            groups = [together] if together else []
            groups += [[m] for m in methods if m in _SLOW]
            for group in groups:
                if progress:
                    progress(f"n={int(n):.0e} k/n={fraction} {', '.join(group)}")
                slow = group[0] in _SLOW
                times, runs = median_ms(
                    *(fns[m] for m in group), repeats=repeats, budget_s=budget_s if slow else math.inf
                )
                rows += [Timing(int(n), fraction, m, ms, runs) for m, ms in zip(group, times)]
    return rows


def _time_sharded(sizes, fractions, repeats: int, seed: int) -> list[dict]:
    """In a process with 8 forced host devices: ``keep_top_k`` on one device and on the vector
    sharded over all 8, per (size, fraction) that 8 divides."""
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    mesh = Mesh(np.asarray(jax.devices()[:SHARDED_DEVICES]), ("x",))
    out = []
    for n in sizes:
        if n % SHARDED_DEVICES:
            continue
        host = _vector(n, seed)
        one = jnp.asarray(host)
        sharded = jax.device_put(host, NamedSharding(mesh, PartitionSpec("x")))
        for fraction in fractions:
            project = jax.jit(partial(keep_top_k, k=_kept(n, fraction)))
            same = bool(np.array_equal(np.asarray(project(one)), np.asarray(project(sharded))))
            (single, many), _ = median_ms(partial(project, one), partial(project, sharded), repeats=repeats)
            out.append({"n": n, "fraction": fraction, "one": single, "sharded": many, "identical": same})
    return out


def run_sharded(sizes=(10**5, 10**6, 10**7), fractions=(0.5, 0.1, 0.01), repeats: int = 7, seed: int = 0):
    """``_time_sharded`` in a subprocess with 8 forced host devices; one dict per cell."""
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={SHARDED_DEVICES}"
    request = json.dumps(
        {"sizes": [int(n) for n in sizes], "fractions": list(fractions), "repeats": repeats, "seed": seed}
    )
    done = subprocess.run(
        [sys.executable, "-m", "prunax.benchmarks.speed.projection", request],
        env={**os.environ, "XLA_FLAGS": flags},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"the sharded projection benchmark failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _cell(table, n, fraction, method, unit):
    r = table.get((n, fraction, method))
    if r is None:
        return "-"
    return f"{r.median_ms:.2f}" + (f" (x{r.median_ms / unit.median_ms:.1f})" if unit else "")


def report(rows: list[Timing], sharded: list[dict] | None = None) -> str:
    """Markdown: median ms per method with (x the read+write floor); prunax project's speed-up over
    each alternative; the 2x-floor and NumPy targets per cell; the sharded table if given."""
    methods = [m for m in METHODS if any(r.method == m for r in rows)]
    cells = sorted({(r.n, r.fraction) for r in rows}, key=lambda c: (c[0], -c[1]))
    table = {(r.n, r.fraction, r.method): r for r in rows}
    timings = [
        [f"{n:.0e}", str(f), *(_cell(table, n, f, m, table.get((n, f, "floor"))) for m in methods)]
        for n, f in cells
    ]
    lines = [
        "Median ms (multiple of the read+write floor: `where(|x| > t, x, 0)` with t known).",
        "",
        markdown_table(["n", "k/n", *methods], timings),
    ]
    ours = "prunax project"
    others = [m for m in methods if m not in (ours, "floor", "read pass")]
    if ours in methods and others:
        speedups = []
        for n, f in cells:
            base = table[(n, f, ours)].median_ms
            speedups.append(
                [f"{n:.0e}", str(f)]
                + [f"{table[(n, f, m)].median_ms / base:.2f}x" if (n, f, m) in table else "-" for m in others]
            )
        lines += ["", "prunax project's speed-up (alternative's time / prunax project's time):", ""]
        lines.append(markdown_table(["n", "k/n", *others], speedups))
    if {ours, "floor", "NumPy"} <= set(methods):
        targets = []
        for n, f in cells:
            ratio = table[(n, f, ours)].median_ms / table[(n, f, "floor")].median_ms
            faster = table[(n, f, "NumPy")].median_ms / table[(n, f, ours)].median_ms
            targets.append(
                [f"{n:.0e}", str(f), f"{ratio:.2f}", "met" if ratio <= 2 else "missed"]
                + [f"{faster:.2f}", "met" if faster >= 1.5 else "missed"]
            )
        lines += ["", "Targets: project ≤ 2× the floor, and ≥ 1.5× faster than NumPy's projection:", ""]
        header = ["n", "k/n", "project / floor", "≤ 2×", "NumPy / project", "≥ 1.5×"]
        lines.append(markdown_table(header, targets))
    if sharded:
        lines += [
            "",
            f"`keep_top_k` on {SHARDED_DEVICES} forced host devices (vector sharded in 8) vs one device:",
            "",
        ]
        body = [
            [f"{c['n']:.0e}", str(c["fraction"]), f"{c['one']:.2f}", f"{c['sharded']:.2f}"]
            + [f"{c['sharded'] / c['one']:.2f}x", "yes" if c["identical"] else "NO"]
            for c in sharded
        ]
        lines.append(
            markdown_table(["n", "k/n", "1 device ms", "8 devices ms", "overhead", "identical"], body)
        )
    return "\n".join(lines)


if __name__ == "__main__":  # the sharded half, in the subprocess ``run_sharded`` starts
    request = json.loads(sys.argv[1])
    print(
        json.dumps(_time_sharded(request["sizes"], request["fractions"], request["repeats"], request["seed"]))
    )

"""Projection speed of every constraint family, in units of the read+write floor of the same leaf
(one jitted ``where(|w| > 1, w, 0)``: a read and a write pass, the least any projection costs).

Each family projects a seeded Gaussian float32 leaf of about n entries (jitted ``project``):
a (n/1024, 1024) matrix for Unstructured, N:M, rows, 16×16 tiles and column-sign polarity, and a
(3, 3, cin, cout) conv kernel for PatDNN kernel patterns (8 patterns of 4, connectivity 0.5).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from prunax.constraints import NM, Block, ColumnSign, Pattern, Unstructured, mine_patterns

from ..harness import markdown_table, median_ms

FAMILIES = ("unstructured 0.9", "2:4", "rows 0.9", "16x16 tiles 0.9", "column sign f=8", "3x3 patterns")


def _case(family: str, n: int, rng) -> tuple[object, np.ndarray]:
    if family == "3x3 patterns":
        channels = max(int(np.sqrt(n / 9)), 1)
        w = rng.standard_normal((3, 3, channels, channels)).astype(np.float32)
        patterns = mine_patterns(w[..., : min(channels, 16)], (0, 1), (3, 3), 4, 8, always=((1, 1),))
        return Pattern(patterns, axes=(0, 1), connectivity=0.5), w
    w = rng.standard_normal((max(n // 1024, 1), 1024)).astype(np.float32)
    constraint = {
        "unstructured 0.9": Unstructured(0.9),
        "2:4": NM(2, 4, axis=1),
        "rows 0.9": Block((1,), 0.9, axes=(0,)),
        "16x16 tiles 0.9": Block((16, 16), 0.9, axes=(0, 1)),
        "column sign f=8": ColumnSign(8, axis=0),
    }[family]
    return constraint, w


@jax.jit
def _floor(w):
    return jnp.where(jnp.abs(w) > 1, w, 0)


def run(
    sizes=(10**5, 10**6, 10**7),
    families=FAMILIES,
    repeats: int = 5,
    budget_s: float = 2.0,
    seed: int = 0,
    progress=None,
) -> list[dict]:
    """Time every family's projection and the floor of the same leaf at every size; one row each."""
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown families {unknown}; valid: {list(FAMILIES)}")
    rows = []
    for n in sizes:
        for family in families:
            if progress:
                progress(f"n={int(n):.0e} {family}")
            constraint, host = _case(family, int(n), np.random.default_rng(seed))
            w = jnp.asarray(host)
            project = partial(jax.jit(constraint.project), w)
            (ms, floor), _ = median_ms(project, partial(_floor, w), repeats=repeats, budget_s=budget_s)
            rows.append(
                {"size": int(n), "entries": int(w.size), "family": family, "ms": ms, "floor_ms": floor}
            )
    return rows


def report(rows: list[dict]) -> str:
    """Markdown table: per family the median ms of ``project`` at each size, with (x the floor)."""
    sizes = sorted({r["size"] for r in rows})
    cells = []
    for family in dict.fromkeys(r["family"] for r in rows):
        cells.append([family])
        for n in sizes:
            r = next((r for r in rows if r["family"] == family and r["size"] == n), None)
            cells[-1].append("-" if r is None else f"{r['ms']:.2f} (x{r['ms'] / r['floor_ms']:.1f})")
    return "\n".join(
        [
            "Median ms of a jitted `project` (multiple of the read+write floor of the same leaf).",
            "",
            markdown_table(["family", *(f"n ≈ {n:.0e}" for n in sizes)], cells),
        ]
    )

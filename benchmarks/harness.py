"""The study harness: what every study repeats, written once.

* ``run_prune`` — one pruning run within a ``Budget`` through ``solvers.prune`` (checkpointed
  under ``out/checkpoints/<key>``, resumable), timed and summarised into the row a study records;
  ``constraint_spec`` the spec of a structure name, ``summarize``/``final_metric`` the numbers a
  run is judged by.
* ``RunLog`` — ``out/runs.jsonl``, one JSON row per finished run, so that a resumed study skips
  what is done.
* ``percent_cell`` and ``markdown_table`` — the Markdown of the reports.
* ``median_ms`` — the one timer: median milliseconds of interleaved, blocked calls.
* ``figure`` — the one matplotlib setup (imported only when a figure is drawn).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
import optax

from prunax import solvers
from prunax.constraints import Spec, Unstructured

DPI = 110  # of every saved figure


def check_structures(problem, structures) -> None:
    """A ValueError naming the first structure that is neither "unstructured" nor one of the
    problem's ``groups``: studies call it before any training."""
    for structure in structures:
        if structure != "unstructured" and structure not in problem.groups:
            raise ValueError(
                f"unknown structure {structure!r} for {problem.name}; valid: unstructured, "
                + ", ".join(problem.groups)
            )


def constraint_spec(problem, structure: str, sparsity: float) -> Spec:
    """``Unstructured(sparsity)`` on the prunable leaves, or the problem's group ``structure``."""
    check_structures(problem, [structure])
    if structure == "unstructured":
        return problem.spec(Unstructured(sparsity))
    return problem.groups[structure](sparsity)


def summarize(records: list[dict], metric: str) -> dict:
    """The numbers one run is judged by, from its ``prune`` records. ``hard_prune`` is the model
    retraining starts from: after the BatchNorm recalibration when the run did one ("pruned+bn"),
    and ``hard_prune_stale`` the same weights with the solve's statistics (None without BN)."""
    by_phase = {}
    for r in records:
        by_phase.setdefault(r["phase"], []).append(r)
    dense = by_phase["dense"][0]["metrics"][metric]
    stale = by_phase["pruned"][0]["metrics"][metric]
    recalibrated = by_phase.get("pruned+bn")
    pruned = recalibrated[0]["metrics"][metric] if recalibrated else stale
    retrain = [r["metrics"][metric] for r in by_phase.get("retrain", [])]
    curve = [pruned, *retrain]
    within = next((epoch for epoch, value in enumerate(curve) if value >= dense - 0.01), None)
    solve = by_phase["solve"][-1]
    others = lambda r: {k: v for k, v in r["metrics"].items() if k != metric}  # noqa: E731
    return {
        "dense": dense,
        "solved": solve["metrics"][metric],
        "hard_prune": pruned,
        "hard_prune_stale": stale if recalibrated else None,
        "retrain": retrain,
        "epochs_to_dense_minus_1pt": within,  # None: not within 1 point in the budget
        "residual": solve["residual"],
        "achieved_sparsity": by_phase["pruned"][0]["sparsity"],
        # the problem's other measurements (e.g. binary operations, gate counts), dense and at the end
        "other_metrics": {"dense": others(by_phase["dense"][0]), "final": others(records[-1])},
    }


def final_metric(row: dict) -> float:
    """A summary row's metric at the end of its budget: the last retraining epoch, else the hard prune."""
    return row["retrain"][-1] if row["retrain"] else row["hard_prune"]


@dataclass(frozen=True)
class Budget:
    """One run's epochs and seed (of its batches and keys), its retraining optimizer (None: the
    problem's recipe optimizer) and whether BatchNorm statistics are recalibrated after the hard
    prune (``solvers.prune``'s ``recalibrate``)."""

    solve_epochs: int
    retrain_epochs: int
    retrain_optimizer: optax.GradientTransformation | None = None
    seed: int = 0
    recalibrate: bool = True


def run_prune(
    problem,
    spec: Spec,
    tx: optax.GradientTransformation,
    start,
    budget: Budget,
    *,
    key: str,
    out: Path | None,
    resume: bool = False,
    quiet: bool = True,
    fields: dict | None = None,
    measure: Callable[[solvers.PruneResult], dict] | None = None,
) -> tuple[dict, solvers.PruneResult]:
    """Solve with ``tx`` from ``start`` (params, state), hard prune and retrain within ``budget``
    (``solvers.prune``, checkpointed in ``out/checkpoints/<key>``; ``out`` None: no checkpoints).
    Returns the row — ``key``, the study's ``fields``, the ``summarize`` numbers, the columns
    ``measure(result)`` adds and the prune's ``wall_seconds`` — and the result itself, for the
    studies that keep the pruned weights."""
    began = time.perf_counter()
    result = solvers.prune(
        problem,
        spec,
        tx,
        solve_epochs=budget.solve_epochs,
        retrain_epochs=budget.retrain_epochs,
        retrain_optimizer=budget.retrain_optimizer,
        start=start,
        seed=budget.seed,
        recalibrate=budget.recalibrate,
        run_dir=None if out is None else Path(out) / "checkpoints" / key,
        resume=resume,
        quiet=quiet,
    )
    seconds = time.perf_counter() - began
    row = {"key": key, **(fields or {}), **summarize(result.records, problem.metric)}
    return {**row, **(measure(result) if measure else {}), "wall_seconds": seconds}, result


class RunLog:
    """``out/runs.jsonl``: one JSON row per finished run, appended as it finishes. Resuming reads
    the finished rows by key (a ValueError names a line that is not one); otherwise an old file is
    removed and nothing counts as finished."""

    def __init__(self, out: Path, resume: bool):
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        self.path = out / "runs.jsonl"
        self.finished: dict[str, dict] = {}
        if resume and self.path.exists():
            for number, line in enumerate(self.path.read_text().splitlines(), 1):
                try:
                    row = json.loads(line)
                    self.finished[row["key"]] = row
                except (ValueError, TypeError, KeyError):
                    raise ValueError(
                        f"resume: line {number} of {self.path} is not a finished run's row (a JSON "
                        "object with a 'key'); delete that line to redo its run, or start over "
                        "without --resume"
                    ) from None
        elif self.path.exists():
            self.path.unlink()

    def append(self, row: dict) -> dict:
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        return row

    def rows(
        self, runs: Sequence[tuple[str, Callable[[], dict]]], progress=None, label: str = ""
    ) -> list[dict]:
        """The row of every (key, run) in order: a finished one as recorded, the others run and
        appended; ``progress`` hears "[i/n] <label><key>" before each run."""
        rows = []
        for i, (key, run) in enumerate(runs):
            if key in self.finished:
                rows.append(self.finished[key])
                continue
            if progress:
                progress(f"[{i + 1}/{len(runs)}] {label}{key}")
            rows.append(self.append(run()))
        return rows


def percent_cell(values) -> str:
    """Values in (0, 1) as a percentage cell: one value, mean ± std of several, "—" for none."""
    values = [v for v in values if v is not None]
    if not values:
        return "—"
    if len(values) == 1:
        return f"{100 * values[0]:.1f}"
    return f"{100 * np.mean(values):.1f} ± {100 * np.std(values):.1f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table of string cells."""
    line = lambda cells: "| " + " | ".join(cells) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "---|" * len(header), *map(line, rows)])


def median_ms(
    *calls: Callable[[], object], repeats: int, warmup: int = 1, budget_s: float = math.inf
) -> tuple[list[float], int]:
    """Median wall milliseconds of each of ``calls``, blocking on its result, after ``warmup``
    untimed calls each (compilation). The calls are timed in interleaved rounds (call 1, call 2,
    ..., then again), so drift in the machine's speed hits them alike: ``repeats`` rounds, fewer
    once ``budget_s`` seconds have passed (one at least). Returns the medians and the rounds."""
    for call in calls:
        for _ in range(warmup):
            jax.block_until_ready(call())
    times: list[list[float]] = []
    began = time.perf_counter()
    while len(times) < repeats and (not times or time.perf_counter() - began < budget_s):
        times.append([])
        for call in calls:
            t0 = time.perf_counter()
            jax.block_until_ready(call())
            times[-1].append(time.perf_counter() - t0)
    return [1e3 * float(t) for t in np.median(times, axis=0)], len(times)


@contextmanager
def figure(path: Path, **subplots) -> Iterator[tuple]:
    """``(fig, axes)`` of ``plt.subplots(**subplots)`` on the Agg backend; on leaving the block
    the figure is laid out tight, saved to ``path`` as PNG at ``DPI`` and closed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(**subplots)
    try:
        yield fig, axes
        fig.tight_layout()
        fig.savefig(path, dpi=DPI)
    finally:
        plt.close(fig)

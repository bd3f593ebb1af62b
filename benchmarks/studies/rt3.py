"""RT3 on MiniLM (DAC 2021; docs/benchmarks.md, "RT3"): block pruning, then pattern sets of several
sparsities on the surviving tiles, one set per frequency level chosen by the REINFORCE controller,
and run-time switching between levels on the shared weights.

1. Block pruning: every encoder kernel in b×b tiles by reweighted group lasso (λ per matrix from
   the step budget, as ``prunax bench blocks``), hard prune, masked retraining.
2. Candidates: for each tile density d and set size K, each kernel's K most frequent top-n masks
   (n = d·b²) of its surviving tiles (``mine_patterns``), projected per tile with ``Pattern``
   (the pattern of most kept energy) on the block-pruned weights; a candidate is a mask set, the
   weights stay shared. Candidate 0 is the block-pruned model itself.
3. Level-aware training: the shared weights are trained for a few epochs with one candidate's
   masks drawn per step (``solvers.switchable``), so every mask set, not only the block-pruned one,
   has weights fitted to it; the weights stay shared and the block support stays fixed.
4. Levels: at frequency f the deadline admits f times the work of the block-pruned model at full
   frequency (latency ∝ nonzeros / f), so a level's budget is f · (its nonzero fraction). The
   controller's reward is the accuracy on the training sentences (the test sentences stay unseen
   by the choice) minus a penalty per unit of budget overshoot; the report gives test accuracy.
5. Switching a level applies its mask set to the shared weights (one jitted ``where``).
"""

from __future__ import annotations

import itertools
import re
import time
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from prunax import problems, solvers
from prunax.constraints import Block, Pattern, apply_masks, leaves_with_paths, mine_patterns, spec

from .. import harness
from ..configs import RT3Study
from ..methods import CONVERGENCE, SolvePhase


def candidate_key(candidate: tuple[float, int] | None) -> str:
    return "block" if candidate is None else f"d{candidate[0]:g}-K{candidate[1]}"


def block_pruned(study: RT3Study, problem, out: Path, resume: bool, quiet: bool):
    """The block-pruned (params, state) and its summary row; resumable from ``out/checkpoints``."""
    block = spec([(problem.prunable, Block((study.tile, study.tile), study.block_sparsity, axes=(0, 1)))])
    start = solvers.pretrained(problem, seed=study.seed, quiet=quiet)
    phase = SolvePhase.of(
        problem, block, study.lr, study.solve_epochs, start=start[0], sparsity=study.block_sparsity
    )
    budget = harness.Budget(study.solve_epochs, study.retrain_epochs, optax.adam(study.lr), study.seed)
    tx = CONVERGENCE["rgl"].transform(phase)
    row, result = harness.run_prune(
        problem, block, tx, start, budget, key="block", out=out, resume=resume, quiet=quiet
    )
    return result.params, result.state, row


def pattern_spec(problem, params, tile: int, density: float, count: int):
    """Per prunable kernel, ``Pattern`` with the ``count`` most frequent top-n masks of its
    nonzero tiles, n = round(density · tile²)."""
    nonzeros = max(1, round(density * tile * tile))
    rules = []
    for path, w in problem.prunable_leaves(params).items():
        patterns = mine_patterns(w, (0, 1), (tile, tile), nonzeros, count)
        rules.append((f"^{re.escape(path)}$", Pattern(patterns, axes=(0, 1), tiles=True)))
    return spec(rules)


def candidate_masks(problem, params, tile: int, candidate):
    """The candidate's mask set on the shared weights: the pattern projection's mask and the
    block-pruned support of the prunable kernels (a pattern on a pruned tile keeps nothing);
    every other leaf is kept whole."""
    paths, leaves, treedef = leaves_with_paths(params)
    support = jax.tree_util.tree_unflatten(
        treedef,
        [
            w != 0 if re.search(problem.prunable, p) else jnp.ones(w.shape, bool)
            for p, w in zip(paths, leaves)
        ],
    )
    if candidate is None:
        return support
    masks = pattern_spec(problem, params, tile, *candidate).mask(params)
    return jax.tree_util.tree_map(lambda m, s: m & s, masks, support)


def density(problem, params) -> float:
    """Nonzero fraction of the prunable kernels: the level's work relative to the dense ones."""
    leaves = problem.prunable_leaves(params).values()
    return float(sum(int(np.count_nonzero(w)) for w in leaves) / sum(w.size for w in leaves))


def shared_training(study: RT3Study, problem, params, state, mask_sets, out: Path, resume: bool, quiet: bool):
    """``study.shared_epochs`` of Adam on the shared weights, a candidate's masks drawn per step;
    the block-pruned support stays exactly zero (``keep_masked``)."""
    names = ",".join(candidate_key(c) for c in study.candidates)
    trained = solvers.fit(
        solvers.switchable(problem, mask_sets, f"tile {study.tile}: {names}"),
        optax.chain(optax.adam(study.lr), solvers.keep_masked(mask_sets[0])),
        epochs=study.shared_epochs,
        seed=study.seed,
        start=(params, state),
        run_dir=out / "checkpoints" / "shared",
        resume=resume,
        quiet=quiet,
    )
    return trained.params, trained.state


_switch = jax.jit(apply_masks)


def switch(params, masks):
    """The weights of a level: the shared (block-pruned) weights under that level's mask set."""
    return _switch(params, masks)


def switch_milliseconds(params, mask_sets, repeats: int = 20) -> float:
    """Median time of switching to each mask set in turn (compiled once: same shapes), in ms."""
    levels = itertools.cycle(mask_sets)
    (ms,), _ = harness.median_ms(lambda: switch(params, next(levels)), repeats=repeats)
    return ms


def candidate_row(problem, block, shared, state, candidate, masks) -> dict:
    """A candidate's density and accuracy on the shared weights, and its test accuracy on the
    block-pruned weights before level-aware training."""
    began = time.perf_counter()
    level = switch(shared, masks)
    return {
        "key": candidate_key(candidate),
        "density": density(problem, level),
        "tile_density": None if candidate is None else candidate[0],
        "set_size": None if candidate is None else candidate[1],
        "test_before": problem.evaluate(switch(block, masks), state, "test")[problem.metric],
        "train": problem.evaluate(level, state, "train")[problem.metric],
        "test": problem.evaluate(level, state, "test")[problem.metric],
        "wall_seconds": time.perf_counter() - began,
    }


def run(study: RT3Study, out: Path, resume: bool = False, quiet: bool = True, progress=None) -> dict:
    """Block pruning, the candidates' mask sets, level-aware training, every candidate's accuracy
    before and after it (``out/runs.jsonl``, one row each; finished ones are kept when resuming),
    the controller's choice per level and the switch time."""
    out = Path(out)
    log = harness.RunLog(out, resume)
    problem = problems.get("bert", study.size)
    if progress:
        progress(f"block pruning bert/{study.size} in {study.tile}x{study.tile} tiles")
    block, state, block_row = block_pruned(study, problem, out, resume, quiet)
    mask_sets = [candidate_masks(problem, block, study.tile, c) for c in study.candidates]
    if progress:
        progress(f"level-aware training of the shared weights over {len(mask_sets)} mask sets")
    shared, state = shared_training(study, problem, block, state, mask_sets, out, resume, quiet)
    evaluate = partial(candidate_row, problem, block, shared, state)
    runs = [(candidate_key(c), partial(evaluate, c, m)) for c, m in zip(study.candidates, mask_sets)]
    rows = log.rows(runs, progress, "candidate ")
    budgets = [f * rows[0]["density"] for f in study.frequencies]
    choice = solvers.reinforce(
        lambda i: rows[i]["train"],
        [r["density"] for r in rows],
        budgets,
        steps=study.steps,
        penalty=study.penalty,
        seed=study.seed,
    )
    return {
        "block": block_row,
        "rows": rows,
        "budgets": budgets,
        "choice": choice,
        "best": [best_within(rows, b) for b in budgets],
        "switch_ms": switch_milliseconds(shared, [mask_sets[i] for i in choice.picks]),
    }


def best_within(rows: list[dict], budget: float) -> int | None:
    """Brute force: the candidate of highest training accuracy within ``budget`` (the oracle the
    controller should find; ties: the lower index)."""
    fits = [i for i, r in enumerate(rows) if r["density"] <= budget]
    return max(fits, key=lambda i: (rows[i]["train"], -i)) if fits else None


def plot(result: dict, study: RT3Study, out: Path) -> Path:
    """Test accuracy against density for every candidate, the levels' budgets and their picks."""
    rows = result["rows"]
    path = out / "rt3.png"
    with harness.figure(path, figsize=(7, 4.5)) as (_, ax):
        for k in study.set_sizes:
            mine = [r for r in rows if r["set_size"] == k]
            x = [r["density"] for r in mine]
            (line,) = ax.plot(x, [100 * r["test"] for r in mine], "o-", label=f"K = {k} patterns")
            ax.plot(x, [100 * r["test_before"] for r in mine], "x--", color=line.get_color(), alpha=0.6)
        ax.plot(rows[0]["density"], 100 * rows[0]["test"], "ks", label="block-pruned (no patterns)")
        ax.plot(rows[0]["density"], 100 * rows[0]["test_before"], "kx", alpha=0.6)
        for f, budget, pick in zip(study.frequencies, result["budgets"], result["choice"].picks):
            ax.axvline(budget, ls=":", color="grey")
            ax.annotate(f" f = {f:g}", (budget, 0.02), xycoords=("data", "axes fraction"), fontsize=8)
            ax.plot(rows[pick]["density"], 100 * rows[pick]["test"], "o", ms=14, mfc="none", color="red")
        ax.set_xlabel("nonzero fraction of the encoder kernels")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(
            "dotted: level budgets; red: the controller's picks; x: before level-aware training", fontsize=9
        )
        ax.legend(loc="center right")
    return path


def tables(result: dict, study: RT3Study) -> str:
    """Markdown: the candidates, then per level the budget, the pick, the brute-force best and accuracy."""
    rows, choice = result["rows"], result["choice"]
    header = ["candidate", "tile density", "patterns per kernel", "encoder density"]
    header += ["test acc before level-aware training", "train acc", "test acc"]
    candidates = [
        [
            r["key"],
            f"{r['tile_density'] or '—'}",
            f"{r['set_size'] or '—'}",
            f"{r['density']:.3f}",
            *(harness.percent_cell([r[k]]) for k in ("test_before", "train", "test")),
        ]
        for r in rows
    ]
    levels = []
    for level, (f, budget, pick) in enumerate(zip(study.frequencies, result["budgets"], choice.picks)):
        best = result["best"][level]
        levels.append(
            [
                f"{f:g}",
                f"{budget:.3f}",
                rows[pick]["key"],
                f"{choice.probabilities[level, pick]:.2f}",
                "—" if best is None else rows[best]["key"],
                f"{rows[pick]['density']:.3f}",
                harness.percent_cell([rows[pick]["test"]]),
            ]
        )
    level_header = ["frequency", "budget (density)", "controller's pick", "p(pick)", "brute-force best"]
    return (
        harness.markdown_table(header, candidates)
        + "\n\n"
        + harness.markdown_table([*level_header, "density", "test acc"], levels)
    )


def report(result: dict, study: RT3Study, out: Path) -> str:
    """``report.md`` and ``rt3.png`` in ``out``; returns the Markdown."""
    out = Path(out)
    plot(result, study, out)
    block = result["block"]
    accuracy = " → ".join(
        f"{name} {harness.percent_cell([block[k]] if k else [harness.final_metric(block)])}"
        for name, k in (("dense", "dense"), ("hard prune", "hard_prune"), ("retrained", None))
    )
    text = "\n\n".join(
        [
            f"# RT3: run-time reconfigurable pattern sets on bert/{study.size}",
            (__doc__ or "").strip(),
            f"Block pruning ({study.tile}×{study.tile} tiles at sparsity {study.block_sparsity:g}, "
            f"reweighted group lasso, {study.solve_epochs} solve + {study.retrain_epochs} retraining "
            f"epochs, Adam {study.lr:g}, seed {study.seed}): test accuracy {accuracy} %. Level-aware "
            f"training: {study.shared_epochs} epochs, Adam {study.lr:g}. "
            f"Controller: REINFORCE, {study.steps} steps of 8 samples per level, penalty "
            f"{study.penalty:g} per unit of overshoot; the brute-force column is the best training "
            "accuracy within budget.",
            tables(result, study),
            "Switching between the levels' mask sets on the shared weights: "
            f"**{result['switch_ms']:.2f} ms** (median, jitted, this machine).",
            "![rt3](rt3.png)",
        ]
    )
    (out / "report.md").write_text(text + "\n")
    return text

"""Budget allocation (docs/constraints.md, "Specs and global budgets"; the compiler-aware idea of
CANAO): per-layer sparsities that lose the least importance while the network's cost stays within
a budget.

Each constrained layer l may take one sparsity s from a grid. Choosing s costs the magnitude
energy the structure's exact projection removes, E_l(s) = ‖w_l − Π_{family(s)}(w_l)‖², and leaves
a cost C_l(s): parameters or FLOPs kept (n_l·(1 − s)), or a measured latency table. The choice

    minimise Σ_l Σ_j E_l(g_j) x_lj   s.t.   Σ_l Σ_j C_l(g_j) x_lj ≤ budget,   Σ_j x_lj = 1,   x ∈ {0, 1}

is a multiple-choice knapsack, solved exactly as a mixed-integer program with cvxpy (HiGHS). E_l is
convex and piecewise linear in s for magnitude structures; the costs may be any table (measured
latency need not be convex), which is why the choice is discrete rather than a relaxation.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import cvxpy as cp
import jax.numpy as jnp
import numpy as np

from ._paths import leaves_with_paths
from ._spec import Spec, spec

SPARSITY_LEVELS = tuple(round(0.05 * i, 2) for i in range(20))  # 0, 0.05, ..., 0.95


@dataclass(frozen=True)
class Allocation:
    sparsities: dict[str, float]  # leaf path -> chosen sparsity
    removed: float  # Σ E_l(s_l), the lost magnitude energy
    cost: float  # Σ C_l(s_l)
    spec: Spec  # one rule per allocated leaf, in path order


def removed_energy(w, family: Callable[[float], object], grid) -> np.ndarray:
    """E(s) = ‖w − Π_{family(s)}(w)‖² at every sparsity of ``grid`` (s = 0 means the leaf is dense)."""
    w = jnp.asarray(w, jnp.float32)
    out = []
    for s in grid:
        out.append(0.0 if s == 0 else float(jnp.sum((w - family(float(s)).project(w)) ** 2)))
    return np.asarray(out)


def solve_choice(removed: np.ndarray, costs: np.ndarray, budget: float) -> np.ndarray:
    """The grid index per layer minimising Σ removed[l, j] subject to Σ costs[l, j] ≤ budget (one
    choice per layer), as a mixed-integer program. ``removed``/``costs``: (layers, grid)."""
    if removed.shape != costs.shape or removed.ndim != 2:
        raise ValueError(
            f"removed and costs must be same-shape (layers, grid) arrays, got {removed.shape}, {costs.shape}"
        )
    cheapest = float(costs.min(axis=1).sum())
    if not budget > 0:
        raise ValueError(f"budget must be positive, got {budget:g}")
    if budget < cheapest:
        raise ValueError(f"budget {budget:g} is below the cheapest allocation's cost {cheapest:g}")
    x = cp.Variable(removed.shape, boolean=True)
    limit = cp.Parameter()
    scale = max(float(np.abs(removed).max()), 1e-30)  # both sides O(1): the solver's tolerances are absolute
    problem = cp.Problem(
        cp.Minimize(cp.sum(cp.multiply(removed / scale, x))),
        [cp.sum(x, axis=1) == 1, cp.sum(cp.multiply(costs / budget, x)) <= limit],
    )
    rows = np.arange(len(removed))
    limit.value = 1.0
    for _ in range(5):  # a rounded solution may exceed the budget by the solver's tolerance: tighten
        problem.solve(solver=cp.HIGHS)
        if problem.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
            raise RuntimeError(f"budget allocation: the solver returned {problem.status}")
        picks = np.argmax(np.asarray(x.value), axis=1)
        used = float(costs[rows, picks].sum())
        if used <= budget * (1 + 1e-9):  # float summation order aside, within the budget
            return picks
        limit.value -= (used - budget) / budget + 1e-9
    raise RuntimeError(f"budget allocation: no rounded choice within the budget {budget:g} (last {used:g})")


def allocate(
    params,
    include: str,
    family: Callable[[float], object],
    cost: Callable[[str, np.ndarray, np.ndarray], np.ndarray],
    budget: float,
    grid=SPARSITY_LEVELS,
) -> Allocation:
    """Allocate sparsities from ``grid`` to every leaf whose path matches ``include``.

    ``family(s)`` builds the leaf's constraint at sparsity s (e.g. ``Unstructured`` or
    ``lambda s: Block((16, 16), s)``); ``cost(path, leaf, grid)`` gives the leaf's cost at each
    grid sparsity (see ``kept_parameters``); ``budget`` bounds the summed cost.
    """
    grid = np.asarray(grid, float)
    if grid.ndim != 1 or len(grid) == 0 or np.any((grid < 0) | (grid >= 1)):
        raise ValueError(f"grid must be sparsities in [0, 1), got {grid.tolist()}")
    paths, leaves, _ = leaves_with_paths(params)
    chosen = [(p, np.asarray(w)) for p, w in zip(paths, leaves) if re.search(include, p)]
    if not chosen:
        raise ValueError(f"allocate: {include!r} matches no leaf; paths: {paths[:8]}")
    removed = np.stack([removed_energy(w, family, grid) for _, w in chosen])
    costs = np.stack([np.asarray(cost(p, w, grid), float) for p, w in chosen])
    if costs.shape != removed.shape:
        raise ValueError(
            f"cost(path, leaf, grid) must give one value per grid point ({len(grid)}), got {costs.shape[1:]}"
        )
    picks = solve_choice(removed, costs, budget)
    sparsities = {p: float(grid[j]) for (p, _), j in zip(chosen, picks)}
    rules = [(f"^{re.escape(p)}$", family(s) if s > 0 else None) for p, s in sparsities.items()]
    rows = np.arange(len(chosen))
    return Allocation(
        sparsities, float(removed[rows, picks].sum()), float(costs[rows, picks].sum()), spec(rules)
    )


def kept_parameters(path: str, leaf: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The cost ``n·(1 − s)``: parameters (or, times a per-layer factor, FLOPs) kept."""
    return np.size(leaf) * (1 - np.asarray(grid))

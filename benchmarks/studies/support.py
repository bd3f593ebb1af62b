"""Support recovery on tiny k-sparse least squares: do the solvers find the best support?

Each seeded instance is min_x ½‖Ax − b‖²/m s.t. ‖x‖₀ ≤ k with n ≤ 12 unknowns, a design whose
columns are correlated (so the dense least-squares solution's largest entries are often *not*
the best support) and b = A x* + noise. The optimum is found by enumerating all C(n, k) supports.
Every method starts from the dense least-squares solution (the "pretrained model") and ends with
``finalize`` (the hard prune to the k largest |x|):

* ``magnitude`` — one-shot: finalize the dense solution;
* ``admm`` — ρ 0.05 growing ×1.1 per Z-update, ``steps`` Adam steps, Z/U update every ``every``;
* ``slr`` — the reference defaults (ρ 0.1, s⁰ 0.01, M 300, r 0.1), same steps and period;
* ``rgl`` — reweighted group lasso (one group per entry), λ 0.05, proximal form after Adam.

All instances run at once under ``vmap`` (one compile per method). A method succeeds on an
instance when its support equals the enumerated optimum's.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax

from prunax import solvers
from prunax.constraints import Unstructured, spec

from ..configs import SUPPORT_METHODS as METHODS
from ..harness import markdown_table
from ..methods import SUPPORT, SolvePhase, lookup


@dataclass(frozen=True)
class LeastSquaresInstance:
    """A batch of instances: A (B, m, n), b (B, m), k nonzeros allowed, the optimal supports."""

    A: np.ndarray
    b: np.ndarray
    k: int
    best: np.ndarray  # (B, n) bool


def instances(
    count: int, n: int = 12, m: int = 16, k: int = 3, correlation: float = 0.9, seed: int = 0
) -> LeastSquaresInstance:
    """``count`` seeded instances; columns share a common factor with weight ``correlation``."""
    if not 1 <= k < n <= 16:
        raise ValueError(f"instances: need 1 <= k < n <= 16 for enumeration, got k={k}, n={n}")
    rng = np.random.default_rng(seed)
    common = rng.standard_normal((count, m, 1))
    A = correlation * common + math.sqrt(1 - correlation**2) * rng.standard_normal((count, m, n))
    x = np.zeros((count, n))
    for i in range(count):
        x[i, rng.choice(n, k, replace=False)] = rng.choice([-1, 1], k) * rng.uniform(0.5, 1.5, k)
    b = np.einsum("bmn,bn->bm", A, x) + 0.3 * rng.standard_normal((count, m))
    return LeastSquaresInstance(A.astype(np.float32), b.astype(np.float32), k, best_supports(A, b, k))


def best_supports(A: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    """Brute force: for every instance the size-k support of least residual (float64)."""
    count, _, n = A.shape
    best = np.zeros((count, n), bool)
    for i in range(count):
        scores = []
        for support in itertools.combinations(range(n), k):
            cols = A[i][:, support].astype(np.float64)
            coef, *_ = np.linalg.lstsq(cols, b[i].astype(np.float64), rcond=None)
            scores.append((np.sum((cols @ coef - b[i]) ** 2), support))
        best[i, list(min(scores)[1])] = True
    return best


def _loss(params, A, b):
    return 0.5 * jnp.mean(jnp.square(A @ params["x"] - b))


def solve(
    problem: LeastSquaresInstance, method: str, steps: int = 1500, lr: float = 0.02, every: int = 50
) -> np.ndarray:
    """The (B, n) supports ``method`` ends with, after ``finalize``."""
    n = problem.A.shape[-1]
    constraint_spec = spec([("x", Unstructured(1 - problem.k / n))])
    solver = lookup(SUPPORT, method)  # None: no solve phase

    def one(A, b):
        dense = jnp.linalg.lstsq(A, b)[0]
        params = {"x": dense}
        if solver is not None:
            tx = solver.transform(SolvePhase(constraint_spec, lr, every, steps))

            def step(carry, _):
                params, state = carry
                value, grads = jax.value_and_grad(_loss)(params, A, b)
                updates, state = tx.update(grads, state, params, value=value)
                return (optax.apply_updates(params, updates), state), None

            (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), None, length=steps)
        _, masks = solvers.finalize(constraint_spec, params)
        return masks["x"]

    return np.asarray(jax.jit(jax.vmap(one))(jnp.asarray(problem.A), jnp.asarray(problem.b)))


def recovery_rates(problem: LeastSquaresInstance, methods=METHODS, **solve_kwargs) -> dict[str, float]:
    """Fraction of instances on which each method's final support is the optimal one."""
    return {
        method: float(np.mean(np.all(solve(problem, method, **solve_kwargs) == problem.best, axis=1)))
        for method in methods
    }


def study(seeds=(0, 1, 2, 3, 4), count: int = 100, progress=None, **solve_kwargs) -> list[dict]:
    """One row per seed: the recovery rate of every method on ``count`` fresh instances."""
    rows = []
    for seed in seeds:
        if progress:
            progress(f"seed {seed}: {count} instances")
        rates = recovery_rates(instances(count, seed=seed), **solve_kwargs)
        rows.append({"seed": seed, "instances": count} | rates)
    return rows


def report(rows: list[dict]) -> str:
    """Markdown: the rate per seed and method, and the mean ± std over seeds."""
    cells = [[str(row["seed"]), str(row["instances"]), *(f"{row[m]:.2f}" for m in METHODS)] for row in rows]
    means = [np.mean([r[m] for r in rows]) for m in METHODS]
    stds = [np.std([r[m] for r in rows]) for m in METHODS]
    spread = "| mean ± std | | " + " | ".join(f"{a:.2f} ± {b:.2f}" for a, b in zip(means, stds)) + " |"
    return markdown_table(["seed", "instances", *METHODS], cells) + "\n" + spread

"""Budget allocation: the mixed-integer choice against brute force, and against uniform and global
magnitude pruning on a parameter budget."""

import itertools

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prunax import constraints as C
from prunax.constraints import budget


@settings(max_examples=25)
@given(seed=st.integers(0, 2**31 - 1), slack=st.floats(0.0, 1.0), unit=st.sampled_from([1.0, 1e-4]))
def test_the_choice_is_the_brute_force_optimum(seed, slack, unit):
    # unit 1e-4: latencies in seconds, far below the solver's absolute tolerances
    rng = np.random.default_rng(seed)
    removed = np.cumsum(rng.uniform(0, 1, (3, 4)), axis=1)  # more sparsity removes more
    costs = unit * np.cumsum(rng.uniform(0, 1, (3, 4))[:, ::-1], axis=1)[:, ::-1]  # and costs less
    lo, hi = costs.min(1).sum(), costs.max(1).sum()
    limit = lo + slack * (hi - lo)
    picks = budget.solve_choice(removed, costs, limit)
    best = min(
        (sum(removed[layer, j] for layer, j in enumerate(combo)), combo)
        for combo in itertools.product(range(4), repeat=3)
        if sum(costs[layer, j] for layer, j in enumerate(combo)) <= limit * (1 + 1e-9)
    )
    assert sum(costs[layer, j] for layer, j in enumerate(picks)) <= limit * (1 + 1e-9)
    np.testing.assert_allclose(
        sum(removed[layer, j] for layer, j in enumerate(picks)), best[0], rtol=1e-6, atol=1e-9
    )


def _params():
    rng = np.random.default_rng(0)
    # layers of different sizes and scales: a uniform sparsity is not the best use of a budget
    return {
        "a": {"kernel": jnp.asarray(rng.normal(0, 1.0, (32, 32)), jnp.float32)},
        "b": {"kernel": jnp.asarray(rng.normal(0, 0.2, (64, 32)), jnp.float32)},
        "c": {"kernel": jnp.asarray(rng.standard_t(2, (16, 16)), jnp.float32), "bias": jnp.zeros(16)},
    }


def test_allocation_beats_uniform_and_approaches_global_magnitude_on_a_parameter_budget():
    params = _params()
    total = sum(np.size(params[k]["kernel"]) for k in params)
    result = budget.allocate(params, r"kernel$", C.Unstructured, budget.kept_parameters, 0.3 * total)
    assert result.cost <= 0.3 * total + 1e-6
    assert set(result.sparsities) == {"a/kernel", "b/kernel", "c/kernel"}
    uniform = sum(float(budget.removed_energy(params[k]["kernel"], C.Unstructured, [0.7])[0]) for k in params)
    flat = np.sort(np.concatenate([np.ravel(params[k]["kernel"]) ** 2 for k in params]))
    global_removed = float(flat[: int(0.7 * total)].sum())  # the continuous optimum
    assert global_removed - 1e-3 <= result.removed < uniform
    assert result.sparsities["b/kernel"] > result.sparsities["a/kernel"]  # small weights go first
    pruned = result.spec.project(params)
    assert bool(result.spec.is_feasible(pruned))
    for path, s in result.sparsities.items():
        leaf = np.asarray(pruned[path.split("/")[0]]["kernel"])
        assert np.mean(leaf == 0) == pytest.approx(s, abs=1 / leaf.size + 1e-9)


def test_block_families_and_latency_tables_work_the_same_way():
    params = _params()
    table = {"a/kernel": [5.0, 4.0, 2.0], "b/kernel": [9.0, 8.0, 1.0], "c/kernel": [1.0, 1.0, 1.0]}
    result = budget.allocate(
        params,
        r"kernel$",
        lambda s: C.Block((8, 8), s, axes=(0, 1)),
        lambda p, w, g: np.asarray(table[p]),
        10.0,
        grid=(0.0, 0.25, 0.5),
    )
    assert result.cost <= 10.0 and result.sparsities["b/kernel"] == 0.5  # the cheap latency step


def test_bad_input_is_a_clear_error():
    params = _params()
    with pytest.raises(ValueError, match="below the cheapest"):
        budget.allocate(params, r"kernel$", C.Unstructured, budget.kept_parameters, 1.0)
    with pytest.raises(ValueError, match="matches no leaf"):
        budget.allocate(params, r"conv", C.Unstructured, budget.kept_parameters, 1e9)
    with pytest.raises(ValueError, match=r"grid must be sparsities in \[0, 1\)"):
        budget.allocate(params, r"kernel$", C.Unstructured, budget.kept_parameters, 1e9, grid=(0.5, 1.0))
    with pytest.raises(ValueError, match="one value per grid point"):
        budget.allocate(
            params, r"kernel$", C.Unstructured, lambda p, w, g: np.ones(2), 1e9, grid=(0.0, 0.5, 0.9)
        )

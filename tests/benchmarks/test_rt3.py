"""RT3: the REINFORCE controller finds the known best candidate per budget on a toy problem, and
switching levels is a pure mask swap."""

import jax.numpy as jnp
import numpy as np
import pytest

from prunax.benchmarks import rt3


def test_the_controller_picks_the_most_accurate_candidate_within_each_budget():
    # candidates: denser is more accurate and costlier; candidate 3 is a dominated outlier
    accuracies = [0.90, 0.86, 0.80, 0.60, 0.70]
    costs = [0.60, 0.45, 0.30, 0.30, 0.15]
    budgets = [0.65, 0.50, 0.32, 0.20]
    calls = []

    def accuracy(i):
        calls.append(i)
        return accuracies[i]

    for seed in range(3):
        calls.clear()
        choice = rt3.reinforce(accuracy, costs, budgets, steps=400, seed=seed)
        assert choice.picks == (0, 1, 2, 4), seed
        assert sorted(calls) == sorted(set(calls))  # each candidate evaluated once
        assert np.all(choice.probabilities.max(1) > 0.8)
        assert choice.rewards[-50:].mean() > choice.rewards[:50].mean()


def test_switching_swaps_masks_on_shared_weights():
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.standard_normal((4, 8)), jnp.float32), "b": jnp.ones(8)}
    levels = [{"w": jnp.asarray(rng.random((4, 8)) < p), "b": jnp.ones(8, bool)} for p in (0.8, 0.5, 0.2)]
    for masks in levels:
        out = rt3.switch(params, masks)
        np.testing.assert_array_equal(out["w"], np.where(masks["w"], params["w"], 0))
        np.testing.assert_array_equal(out["b"], params["b"])
    assert rt3.switch_milliseconds(params, levels, repeats=3) > 0
    assert rt3.kept_fraction(levels[0]) == pytest.approx((int(jnp.sum(levels[0]["w"])) + 8) / 40)


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="need candidates"):
        rt3.reinforce(lambda i: 0.5, [], [0.5])
    assert rt3.reward(0.9, 0.6, 0.5, 10.0) == pytest.approx(-0.1)

"""The REINFORCE controller (RT3's level choice): it finds the known best candidate per budget on a
toy problem and the reward maximiser of every level, evaluating each candidate once."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from prunax import solvers


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
        choice = solvers.reinforce(accuracy, costs, budgets, seed=seed)
        assert choice.picks == (0, 1, 2, 4), seed
        assert sorted(calls) == sorted(set(calls))  # each candidate evaluated once
        assert np.all(choice.probabilities.max(1) > 0.8)
        assert choice.rewards[-50:].mean() > choice.rewards[:50].mean()


@settings(max_examples=15, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0.3, 1.0), st.floats(0.05, 1.0)), min_size=2, max_size=8),
    st.lists(st.floats(0.05, 1.0), min_size=1, max_size=4),
    st.integers(0, 2**16),
)
def test_the_controller_finds_the_reward_maximiser_of_every_level(candidates, budgets, seed):
    accuracies, costs = zip(*candidates)
    rewards = np.array([[solvers.budget_reward(a, c, b, 10.0) for a, c in candidates] for b in budgets])
    top2 = np.sort(rewards, axis=1)[:, -2:]
    assume(np.all(top2[:, 1] - top2[:, 0] >= 0.01))  # a unique best, a point ahead
    choice = solvers.reinforce(lambda i: accuracies[i], costs, budgets, seed=seed)
    assert choice.picks == tuple(rewards.argmax(1))


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="need candidates"):
        solvers.reinforce(lambda i: 0.5, [], [0.5])
    assert solvers.budget_reward(0.9, 0.6, 0.5, 10.0) == pytest.approx(-0.1)

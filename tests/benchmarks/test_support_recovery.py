"""ADMM and SLR followed by finalize find the brute-force optimal support on most instances."""

import numpy as np
import pytest

from prunax.benchmarks.studies import support as sr


@pytest.fixture(scope="module")
def problem():
    return sr.instances(200, n=12, m=16, k=3, correlation=0.9, seed=0)


def test_brute_force_oracle_on_a_noiseless_instance():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((1, 10, 8))
    x = np.zeros(8)
    x[[1, 4]] = [1.0, -2.0]
    best = sr.best_supports(A, A @ x, 2)
    assert best[0].tolist() == [i in (1, 4) for i in range(8)]


def test_admm_and_slr_recover_the_optimal_support_more_often_than_magnitude(problem):
    rates = sr.recovery_rates(problem)
    message = f"support-recovery rates on 200 instances: {rates}"
    assert rates["admm"] >= 0.8, message
    assert rates["slr"] >= 0.7, message
    assert rates["admm"] > rates["magnitude"] + 0.1 and rates["slr"] > rates["magnitude"] + 0.1, message
    assert rates["rgl"] >= rates["magnitude"], message


def test_unknown_method_lists_the_valid_ones(problem):
    with pytest.raises(ValueError, match="valid"):
        sr.solve(problem, "lasso")

"""Every problem of Problems II on its test size: a few solver steps on a natural structured group,
the hard prune, one retraining epoch; the result is feasible and every metric finite."""

import jax
import numpy as np
import pytest

from prunax import problems, solvers
from prunax.benchmarks import methods

# (problem, structure, solver): one structured constraint per problem, several solvers across them
CASES = [
    ("bcnn", "filter", "admm"),
    ("quantum", "gate", "slr"),
    ("yolo_tiny", "filter", "magnitude"),
    ("pointpillars_lite", "channel", "admm"),
]


# ADMM without ρ growth, SLR's reference constants, one-shot magnitude; Adam 1e-3, 2 updates per epoch
SOLVERS = {
    "admm": methods.ADMM(rho=1e-2, rho_growth=1.0),
    "slr": methods.SLR(),
    "magnitude": methods.Magnitude(),
}


@pytest.mark.parametrize(("name", "structure", "solver"), CASES)
def test_a_structured_pruning_run_ends_feasible_with_finite_metrics(name, structure, solver, tmp_path):
    problem = problems.get(name, "test")
    spec = problem.groups[structure](0.5)
    start = problem.init(jax.random.key(0))
    phase = methods.SolvePhase.of(problem, spec, 1e-3, 1, updates_per_epoch=2)
    result = solvers.prune(
        problem,
        spec,
        SOLVERS[solver].transform(phase),
        solve_epochs=1,
        retrain_epochs=1,
        start=start,
        run_dir=tmp_path,
        quiet=True,
    )
    assert bool(spec.is_feasible(result.params))
    phases = [r["phase"] for r in result.records]
    assert phases == ["dense", "solve", "pruned", *(["pruned+bn"] if problem.recalibrate else []), "retrain"]
    for record in result.records:
        assert all(np.isfinite(v) for v in record["metrics"].values()), record
        assert problem.metric in record["metrics"]
    assert result.records[-1]["sparsity"] > 0


@pytest.mark.parametrize("name", sorted({case[0] for case in CASES}))
def test_the_cache_key_follows_the_generated_training_data(name):
    a, b = problems.get(name, "test"), problems.get(name, "test", seed=1)
    assert a.config["data"] == problems.get(name, "test").config["data"]
    assert a.config["data"] != b.config["data"]

"""The method registry: the names the study settings accept are the registry's, and each method
builds the chain its hyperparameters say (solver before or after Adam, periods, λ)."""

import numpy as np
import optax
import pytest

from prunax.benchmarks import configs, methods
from prunax.constraints import Unstructured, spec


@pytest.mark.parametrize(
    ("names", "registry"),
    [
        (configs.CONVERGENCE_METHODS, methods.CONVERGENCE),
        (configs.SUPPORT_METHODS, methods.SUPPORT),
        (configs.OVERHEAD_METHODS, methods.OVERHEAD),
    ],
)
def test_the_settings_names_are_the_registry(names, registry):
    assert tuple(registry) == names


def test_lookup_lists_the_valid_names():
    assert methods.lookup(methods.CONVERGENCE, "slr") == methods.SLR()
    with pytest.raises(ValueError, match=r"unknown method 'obs'; valid: \('admm', 'slr'"):
        methods.lookup(methods.CONVERGENCE, "obs")


@pytest.mark.parametrize("registry", [methods.CONVERGENCE, methods.SUPPORT, methods.OVERHEAD])
def test_every_method_builds_a_transform_that_steps(registry):
    params = {"w": np.arange(1.0, 13.0, dtype=np.float32).reshape(3, 4)}
    rule = spec([("w", Unstructured(0.5))])
    for phase in (
        methods.SolvePhase(rule, 1e-2, 2, steps=8, start=params, sparsity=0.5),
        methods.SolvePhase(rule, 1e-2, None, steps=8, start=params, sparsity=0.5),
    ):
        for method in filter(None, registry.values()):
            tx = optax.with_extra_args_support(method.transform(phase))
            state = tx.init(params)
            updates, _ = tx.update({"w": np.ones((3, 4), np.float32)}, state, params, value=1.0)
            assert updates["w"].shape == (3, 4), method


def test_the_phase_of_a_problem_counts_its_recipe_steps():
    class Recipe:
        batch_size = 10

    class Problem:
        recipe = Recipe()

        def steps_per_epoch(self, batch_size):
            return 100 // batch_size

    phase = methods.SolvePhase.of(Problem(), None, 1e-3, 3)
    assert (phase.every, phase.steps, phase.period) == (2, 30, 2)
    assert methods.SolvePhase(None, 1e-3, None).period == methods.NEVER

"""The structures study: its specs are the structures it names, and one run goes end to end."""

import jax
import numpy as np
import pytest

from prunax import constraints, problems
from prunax.benchmarks.configs import SettingError, StructuresStudy
from prunax.benchmarks.studies import structures
from tests.assets import needs

pytestmark = needs("sklearn")


@pytest.fixture(scope="module")
def resnet():
    problem = problems.get("resnet", "test")
    return problem, jax.jit(problem.init)(jax.random.key(0))[0]


def test_specs_have_the_named_structure_and_sparsity(resnet):
    problem, params = resnet
    study = StructuresStudy(size="test", sparsity=0.8, fragment=8)
    for structure, expected in (("polarity", 0.8), ("pattern", 0.8), ("2:4", 0.5)):
        spec, sparsity = structures.structure_spec(problem, study, structure, params)
        assert sparsity == expected
        projected = jax.jit(spec.project)(params)
        assert bool(jax.jit(spec.is_feasible)(projected))
        _, leaves, owner, _ = spec.assign(projected)
        kept = [
            np.asarray(w) for w, r in zip(leaves, owner) if r is not None and spec.rules[r][1] is not None
        ]
        density = sum(int((w != 0).sum()) for w in kept) / sum(w.size for w in kept)
        if structure == "polarity":  # signs may zero more than the count asks
            assert 0.1 < density <= 1 - expected + 1e-9
        else:
            assert density == pytest.approx(1 - expected, abs=0.02), structure
    pattern_spec, _ = structures.structure_spec(problem, study, "pattern", params)
    rules = [c for _, c in pattern_spec.rules]
    assert isinstance(rules[0], constraints.Pattern) and len(rules[0].patterns) == structures.PATTERNS
    assert all(np.asarray(p)[1, 1] for p in rules[0].patterns)  # PatDNN keeps the centre


def test_one_run_and_the_report(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNAX_CACHE", str(tmp_path / "cache"))
    study = StructuresStudy(
        size="test", structures=("2:4",), methods=("slr",), solve_epochs=1, retrain_epochs=0
    )
    rows = structures.run(study, tmp_path)
    (row,) = rows
    assert row["structure"] == "2:4" and row["sparsity"] == 0.5 and row["residual"] is not None
    assert row["achieved_sparsity"] == pytest.approx(0.5, abs=0.01)
    text = structures.report(rows, study, tmp_path)
    assert (
        "## 2:4" in text
        and "| slr |" in text
        and "no constrained solver or no magnitude baseline ran" in text
    )
    assert (tmp_path / "cache").exists()  # the dense start was trained into the cache folder above


@pytest.mark.parametrize(
    "kwargs, setting",
    [
        (dict(structures=("nosuch",)), "structures"),
        (dict(sparsity=0.5), "sparsity"),
        (dict(methods=()), "methods"),
    ],
)
def test_bad_settings_name_the_setting(kwargs, setting):
    with pytest.raises(SettingError) as raised:
        StructuresStudy(**kwargs)
    assert raised.value.setting == setting

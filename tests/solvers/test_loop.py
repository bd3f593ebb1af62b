"""The epoch loop: exact resume, non-finite stops, the pretrained cache, records, BatchNorm
recalibration after the hard prune."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from prunax import problems, solvers
from prunax.constraints import Unstructured
from prunax.solvers import _checkpoint as checkpoint
from prunax.solvers import _loop
from tests.assets import needs

pytestmark = needs("sklearn")


@pytest.fixture(scope="module")
def problem():
    return problems.get("resnet", "test")


@pytest.fixture(scope="module")
def start(problem):
    return problem.init(jax.random.key(0))


def _interrupt_after(monkeypatch, saves: int):
    real, count = checkpoint.save, {"n": 0}

    def save(*args, **kwargs):
        real(*args, **kwargs)
        count["n"] += 1
        if count["n"] == saves:
            raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save", save)


def _same(a, b):
    jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)


def test_fit_resumes_bit_exactly(problem, start, tmp_path, monkeypatch):
    whole = solvers.fit(problem, epochs=4, batch_size=32, start=start, quiet=True)
    _interrupt_after(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        solvers.fit(problem, epochs=4, batch_size=32, start=start, run_dir=tmp_path, quiet=True)
    monkeypatch.undo()
    resumed = solvers.fit(
        problem, epochs=4, batch_size=32, start=start, run_dir=tmp_path, resume=True, quiet=True
    )
    _same(resumed.params, whole.params)
    _same(resumed.state, whole.state)
    assert [r["epoch"] for r in resumed.records] == [1, 2, 3, 4]
    assert [r["metrics"] for r in resumed.records] == [r["metrics"] for r in whole.records]


@pytest.mark.parametrize("interrupt_after", [2, 3])  # at the solve/retrain boundary, inside retraining
def test_prune_resumes_bit_exactly_across_the_hard_prune(
    problem, start, tmp_path, monkeypatch, interrupt_after
):
    spec = problem.spec(Unstructured(0.8))

    def run(**kwargs):
        tx = optax.chain(solvers.admm(spec, rho=1e-2, every=problem.steps_per_epoch(32)), optax.adam(1e-3))
        return solvers.prune(
            problem,
            spec,
            tx,
            solve_epochs=2,
            retrain_epochs=2,
            batch_size=32,
            start=start,
            quiet=True,
            **kwargs,
        )

    whole = run()
    _interrupt_after(monkeypatch, interrupt_after)
    with pytest.raises(KeyboardInterrupt):
        run(run_dir=tmp_path)
    monkeypatch.undo()
    with pytest.raises(ValueError, match="different run"):  # recalibration is part of the fingerprint
        run(run_dir=tmp_path, resume=True, recalibrate=False)
    resumed = run(run_dir=tmp_path, resume=True)
    _same(resumed.params, whole.params)
    _same(resumed.state, whole.state)  # recalibrated again after the solve, or restored in retraining
    _same(resumed.masks, whole.masks)
    phases = [(r["phase"], r["epoch"]) for r in resumed.records]
    assert phases == [
        ("dense", 0),
        ("solve", 1),
        ("solve", 2),
        ("pruned", 0),
        ("pruned+bn", 0),
        ("retrain", 1),
        ("retrain", 2),
    ]
    assert [r["metrics"] for r in resumed.records] == [r["metrics"] for r in whole.records]
    assert resumed.records[1]["residual"] is not None and resumed.records[3]["sparsity"] > 0.79
    assert all(r.feasible for r in resumed.report)


def test_prune_recalibrates_batch_norm_after_the_hard_prune_unless_told_not_to(problem, start):
    spec = problem.spec(Unstructured(0.9))

    def run(**kwargs):
        return solvers.prune(
            problem,
            spec,
            optax.adam(1e-3),
            solve_epochs=0,  # the start hard-pruned as it is: no step to compile
            retrain_epochs=0,
            batch_size=32,
            start=start,
            quiet=True,
            **kwargs,
        )

    off = run(recalibrate=False)
    on = run(recalibration_batches=3)
    assert [r["phase"] for r in off.records] == ["dense", "pruned"]
    assert [r["phase"] for r in on.records] == ["dense", "pruned", "pruned+bn"]
    _same(on.params, off.params)
    assert on.records[1] == off.records[1]
    row = on.records[2]
    assert row["metrics"] == {k: float(v) for k, v in problem.evaluate(on.params, on.state).items()}
    assert row["sparsity"] == on.records[1]["sparsity"] > 0.89 and row["train_loss"] is None
    stale, fresh = off.state["batch_stats"]["stem_bn"], on.state["batch_stats"]["stem_bn"]
    assert not np.allclose(stale["var"], fresh["var"])
    with pytest.raises(ValueError, match="recalibration_batches must be an int >= 1, got 0"):
        run(recalibration_batches=0)


def test_resume_refuses_a_checkpoint_of_another_run_and_names_the_first_difference(problem, start, tmp_path):
    def fit(tx=None, **changed):
        settings = {"epochs": 1, "batch_size": 32, "start": start, "run_dir": tmp_path, "quiet": True}
        return solvers.fit(problem, tx or optax.adam(1e-3), **{**settings, **changed})

    fit()
    with pytest.raises(ValueError, match="different run \\(epochs: the checkpoint has 1, this run 2\\)"):
        fit(epochs=2, batch_size=64, resume=True)
    with pytest.raises(
        ValueError, match="different run \\(optimizer.*step_size: the checkpoint has -0.001, this run -0.01"
    ):
        fit(optax.adam(1e-2), resume=True)
    with pytest.raises(ValueError, match="different run \\(start"):
        fit(start=jax.tree_util.tree_map(lambda x: x + 1, start), resume=True)


def test_non_finite_loss_names_the_epoch_and_step_and_keeps_the_last_checkpoint(problem, start, tmp_path):
    steps = problem.steps_per_epoch(32)
    # fine for one epoch, then the first update of epoch 2 makes every weight NaN
    poison = optax.chain(
        optax.sgd(1e-2), optax.scale_by_schedule(lambda c: jnp.where(c >= steps, jnp.nan, 1.0))
    )
    with pytest.raises(
        solvers.NonFiniteLoss, match=r"dense epoch 2, step 1; the last good checkpoint \(dense epoch 1\)"
    ):
        solvers.fit(problem, poison, epochs=3, batch_size=32, start=start, run_dir=tmp_path, quiet=True)
    assert checkpoint.load_meta(tmp_path)["epoch"] == 1
    with pytest.raises(solvers.NonFiniteLoss, match=r"dense epoch 1, step 1; no epoch finished"):
        solvers.fit(problem, optax.scale(float("nan")), epochs=1, batch_size=32, start=start, quiet=True)


def test_pretrained_is_cached_by_configuration(problem, tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNAX_CACHE", str(tmp_path))
    first = solvers.pretrained(problem, seed=0, quiet=True)
    monkeypatch.setattr(_loop, "fit", lambda *a, **k: pytest.fail("retrained despite the cache"))
    again = solvers.pretrained(problem, seed=0, quiet=True)
    _same(first, again)
    assert len(list(tmp_path.iterdir())) == 1


def test_batch_size_is_an_int_from_1_to_the_training_set(problem, start):
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match=f"^fit: batch_size must be an int >= 1, got {bad}$"):
            solvers.fit(problem, epochs=1, batch_size=bad, start=start, quiet=True)
    too_many = problem.train_size + 1
    with pytest.raises(ValueError, match=f"batch_size {too_many} exceeds the {problem.train_size} training"):
        solvers.fit(problem, epochs=1, batch_size=too_many, start=start, quiet=True)
    spec, tx = problem.spec(Unstructured(0.5)), optax.adam(1e-3)
    with pytest.raises(ValueError, match="^prune: batch_size must be an int >= 1, got 0$"):
        solvers.prune(
            problem, spec, tx, solve_epochs=1, retrain_epochs=0, batch_size=0, start=start, quiet=True
        )

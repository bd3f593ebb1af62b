"""``problems.classifier``: a user's Flax model and arrays as a Problem, its defaults and its
argument errors; ``adam_recipe`` and ``Recipe`` checks."""

import re

import flax.linen as nn
import jax
import numpy as np
import pytest

from prunax import problems, solvers
from prunax.constraints import Unstructured


class MLP(nn.Module):
    classes: int = 3

    @nn.compact
    def __call__(self, x):
        return nn.Dense(self.classes, name="head")(nn.relu(nn.Dense(8, name="hidden")(x)))


class Normed(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.BatchNorm(use_running_average=not train, name="bn")(nn.Dense(8, name="hidden")(x))
        return nn.Dense(3, name="head")(x)


def _data(n=120, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5))
    return x, np.argmax(x[:, :3], axis=1)


@pytest.fixture(scope="module")
def problem():
    x, y = _data()
    return problems.classifier("mlp", MLP(), train=(x[:100], y[:100]), test=(x[100:], y[100:]))


def test_defaults_give_a_trainable_prunable_problem(problem):
    assert problem.metric == "accuracy" and problem.train_size == 100 and problem.size == "custom"
    assert problem.recipe.batch_size == 64 and problem.recipe.description == "adam(1e-3) x 5 epochs, bs 64"
    assert problem.config["problem"] == "mlp" and "MLP" in problem.config["model"] and problem.config["data"]
    params, state = problem.init(jax.random.key(0))
    assert set(problem.prunable_leaves(params)) == {"hidden/kernel", "head/kernel"}  # Dense kernels
    batch = next(problem.batches("train", jax.random.key(1), 10))
    assert batch["x"].dtype == np.float32 and batch["y"].dtype == np.int32  # float64/int64 converted
    result = solvers.fit(problem, epochs=1, quiet=True)
    spec = problem.spec(Unstructured(0.5))
    pruned, _ = solvers.finalize(spec, result.params)
    metrics = problem.evaluate(pruned, result.state, split="train")
    assert 0 <= metrics["accuracy"] <= 1 and np.isfinite(metrics["loss"])


def test_a_model_taking_train_keeps_batch_norm_statistics_in_the_state():
    x, y = _data()
    problem = problems.classifier("normed", Normed(), train=(x[:100], y[:100]), test=(x[100:], y[100:]))
    params, state = problem.init(jax.random.key(0))
    batch = next(problem.batches("train", jax.random.key(1), 20))
    _, (new_state, _) = problem.loss(params, state, batch, jax.random.key(2))
    before, after = state["batch_stats"]["bn"]["mean"], new_state["batch_stats"]["bn"]["mean"]
    assert not np.allclose(before, after)  # train=True in the loss updates the running mean
    assert "accuracy" in problem.evaluate(params, new_state)


def test_small_training_sets_get_a_fitting_default_batch():
    x, y = _data(40)
    problem = problems.classifier("tiny", MLP(), train=(x[:30], y[:30]), test=(x[30:], y[30:]))
    assert problem.recipe.batch_size == 30 and problem.steps_per_epoch(problem.recipe.batch_size) == 1


@pytest.mark.parametrize(
    "train, test, model, message",
    [
        ("x", None, MLP(), "train must be a pair (x, y) of arrays, got str"),
        (
            (np.zeros((4, 5)), np.zeros(3, int)),
            None,
            MLP(),
            "train x and y must have one row per example, got x (4, 5) and y (3,)",
        ),
        (
            (np.zeros((4, 5)), np.zeros(4)),
            None,
            MLP(),
            "train y must be integer class labels of shape (examples,), got shape (4,) and dtype float64",
        ),
        (
            (np.zeros((4, 5), int), np.zeros(4, int)),
            None,
            MLP(),
            "train x must be a float array of shape (examples, ...), got shape (4, 5) and dtype int64",
        ),
        (
            None,
            (np.zeros((4, 6)), np.zeros(4, int)),
            MLP(),
            "train and test x must have the same example shape, got (5,) and (6,)",
        ),
        ((np.zeros((4, 5)), np.full(4, 3)), None, MLP(), "model gives 3 logits but the labels reach 3"),
        (
            (np.zeros((4, 5)), -np.ones(4, int)),
            None,
            MLP(),
            "train y must be class labels >= 0, got a minimum of -1",
        ),
        ((np.zeros((0, 5)), np.zeros(0, int)), None, MLP(), "train has no examples (x (0, 5))"),
        (None, None, "MLP", "model must be a flax.linen Module, got str"),
    ],
)
def test_bad_arguments_name_the_argument_and_shapes(train, test, model, message):
    good = (np.zeros((4, 5), np.float32), np.zeros(4, np.int32))
    with pytest.raises(ValueError, match=re.escape(f"mine: {message}")):
        problems.classifier(
            "mine", model, train=good if train is None else train, test=good if test is None else test
        )


def test_bad_problem_fields_raise_at_construction():
    x, y = _data()
    with pytest.raises(ValueError, match=r"Problem 'mine': prunable '\[' is not a valid regex"):
        problems.classifier("mine", MLP(), train=(x, y), test=(x, y), prunable="[")
    with pytest.raises(ValueError, match=r"Problem 'mine': groups must map .*\['filter'\]"):
        problems.classifier("mine", MLP(), train=(x, y), test=(x, y), groups={"filter": "rows"})


def test_adam_recipe_descriptions_and_recipe_checks():
    assert problems.adam_recipe(5e-3, 12, 32, schedule="warmup-cosine", clip=10.0).description == (
        "adam(warmup-cosine 5e-3, clip 10) x 12 epochs, bs 32"
    )
    assert (
        problems.adam_recipe(3e-3, 15, 128, schedule="cosine").description
        == "adam(cosine 3e-3) x 15 epochs, bs 128"
    )
    tx = problems.adam_recipe(schedule="warmup-cosine", clip=1.0).optimizer(100)
    assert tx.init({"w": np.zeros(2)}) is not None
    with pytest.raises(ValueError, match="schedule must be one of"):
        problems.adam_recipe(schedule="step")
    with pytest.raises(ValueError, match="Recipe: batch_size must be an int >= 1, got 0"):
        problems.Recipe(1, 0, lambda steps: None, "x")
    with pytest.raises(ValueError, match="Recipe: optimizer must be callable"):
        problems.Recipe(1, 8, None, "x")

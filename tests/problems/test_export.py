"""Export: params, state and config through one safetensors file, bit for bit."""

import jax
import numpy as np
import pytest
from safetensors.numpy import save_file

from prunax import problems


def _equal_trees(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()


def test_a_compacted_resnet_round_trips_bit_for_bit(tmp_path):
    problem = problems.get("resnet", "test")
    params, state = problem.init(jax.random.key(0))
    spec = problem.coupled["inner"](0.5)
    compacted = problems.compact(problem, spec.project(params), state, within=spec)
    path = problems.save(tmp_path / "small.safetensors", compacted.params, compacted.state, compacted.config)
    saved = problems.load(path)
    _equal_trees(saved.params, compacted.params)
    _equal_trees(saved.state, compacted.state)
    assert saved.config == {"widths": [8, 16, 32], "inner": [4, 8, 16]}
    # the loaded arrays run the compact model
    batch = {"x": next(problem.batches("test", jax.random.key(0), 2))["x"]}
    np.testing.assert_array_equal(
        compacted.problem.forward(saved.params, saved.state, batch),
        compacted.problem.forward(compacted.params, compacted.state, batch),
    )


def test_empty_subtrees_and_dtypes_come_back(tmp_path):
    params = {"a": {"w": np.arange(6, dtype=np.float16).reshape(2, 3)}, "b": {}, "n": np.int32(3)}
    state = {"batch_stats": {}}
    saved = problems.load(problems.save(tmp_path / "x.safetensors", params, state, {"k": 1}))
    _equal_trees(saved.params, params)
    assert saved.state == {"batch_stats": {}} and saved.params["b"] == {} and saved.config == {"k": 1}


@pytest.mark.parametrize(
    "params, message",
    [
        ({"a/b": np.zeros(2)}, r"save: params: keys must be non-empty strings without '/', got 'a/b'"),
        ({"a": {1: np.zeros(2)}}, r"save: params/a: keys must be non-empty strings without '/', got 1"),
        ([np.zeros(2)], r"save: params must be a nested dict of arrays, got list"),
    ],
)
def test_trees_that_do_not_name_their_leaves_are_refused(tmp_path, params, message):
    with pytest.raises(ValueError, match=message):
        problems.save(tmp_path / "x.safetensors", params)


def test_files_not_written_by_save_are_one_error(tmp_path):
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": np.zeros(2, np.float32)}, str(foreign))
    with pytest.raises(ValueError, match="not written by prunax's save"):
        problems.load(foreign)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(ValueError, match="broken.safetensors is not a readable safetensors file"):
        problems.load(broken)

"""Compaction: the smaller dense model computes what the masked model computes, for every problem
with coupled structures; infeasible params and problems without couplings are clear errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prunax import problems
from prunax.constraints import leaves_with_paths
from prunax.problems._compaction import kept_channels

COMPACTABLE = {
    "resnet": "channels",
    "bert": "head+neuron",
    "yolo_tiny": "filters",
    "pointpillars_lite": "channels",
    "bcnn": "channels",
    "smollm2": "head+neuron",
}


@pytest.fixture(scope="module")
def built():
    out = {}
    for name in COMPACTABLE:
        problem = problems.get(name, "test")
        params, state = jax.jit(problem.init)(jax.random.key(0))
        # running statistics away from their init, so that a stale slice would show
        keys = jax.random.split(jax.random.key(1), len(jax.tree.leaves(state)))
        noisy = [x + 0.1 * jax.random.normal(k, x.shape) ** 2 for x, k in zip(jax.tree.leaves(state), keys)]
        state = jax.tree.unflatten(jax.tree.structure(state), noisy)
        out[name] = problem, params, state
    return out


def _inputs(problem, count=3):
    batch = next(problem.batches("test", jax.random.key(0), count))
    return {k: v for k, v in batch.items() if k not in ("y", "target")}


def _channel_zeroed(params, couplings, removed):
    """``params`` with the chosen channels of each coupled group zeroed in every member slice."""
    paths, leaves, treedef = leaves_with_paths(params)
    leaves = dict(zip(paths, leaves))
    for name, members in couplings.items():
        for path, axis, size, start in members:
            drop = np.zeros(np.shape(leaves[path])[axis], bool)
            for j in removed[name]:
                drop[(start or 0) + j * size : (start or 0) + (j + 1) * size] = True
            shape = [-1 if a == axis % leaves[path].ndim else 1 for a in range(leaves[path].ndim)]
            leaves[path] = jnp.where(drop.reshape(shape), 0.0, leaves[path])
    return jax.tree_util.tree_unflatten(treedef, [leaves[p] for p in paths])


@pytest.mark.parametrize("name", sorted(COMPACTABLE))
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_compact_model_computes_what_the_masked_model_computes(built, name, data):
    problem, params, state = built[name]
    groups = [
        (rule, c)
        for rule in problem.coupled[COMPACTABLE[name]](0.5).rules
        for c in range(len(rule.couplings))
    ]
    leaves = dict(zip(*leaves_with_paths(params)[:2]))
    extents = {rule.couplings[c][0]: rule.extent(c, leaves) for rule, c in groups}
    removed = {g: data.draw(st.sets(st.integers(0, n - 1), max_size=n), label=g) for g, n in extents.items()}
    masked = _channel_zeroed(params, dict(rule.couplings[c] for rule, c in groups), removed)
    compacted = problems.compact(problem, masked, state)
    smaller = dict(zip(*leaves_with_paths(compacted.params)[:2]))
    # every removed channel is gone; a group that lost them all keeps one zero channel
    assert [rule.extent(c, smaller) for rule, c in groups] == [
        max(n - len(removed[g]), 1) for g, n in extents.items()
    ]
    batch = _inputs(problem)
    want = jax.tree.leaves(jax.jit(problem.forward)(masked, state, batch))
    got = jax.tree.leaves(jax.jit(compacted.problem.forward)(compacted.params, compacted.state, batch))
    for g, w in zip(got, want, strict=True):
        w = np.asarray(w, np.float64)
        np.testing.assert_allclose(np.asarray(g, np.float64), w, rtol=1e-5, atol=1e-5 * np.abs(w).max())
    size = lambda tree: sum(np.size(x) for x in jax.tree.leaves(tree))  # noqa: E731
    assert size(compacted.params) <= size(params)


def test_params_outside_the_spec_are_refused_naming_the_group_and_leaf(built):
    problem, params, state = built["resnet"]
    spec = problem.coupled["inner"](0.5)
    message = (
        r"compact: coupled group 'stage3_block1/inner' has 32 channels with a nonzero slice but the spec "
        r"allows 16 \(leaf 'stage3_block1/conv1/kernel' \(3, 3, 16, 32\): 32 nonzero channels along axis 3"
    )
    with pytest.raises(ValueError, match=message):
        problems.compact(problem, params, state, within=spec)
    assert problems.compact(problem, spec.project(params), state, within=spec).config["inner"] == (4, 8, 16)


def test_a_problem_without_coupled_structures_has_no_compaction():
    problem = problems.get("quantum", "test")
    params, state = problem.init(jax.random.key(0))
    with pytest.raises(ValueError, match="quantum: has no compaction"):
        problems.compact(problem, params, state)


def test_a_coupling_that_would_leave_mismatched_widths_is_refused(built):
    _, params, _ = built["resnet"]
    # a residual add joins stage 1's conv2 filters with the stem's, not with stage 2's
    wrong = {"stream": [("stage1_block1/conv2/kernel", 3), ("stage2_block1/conv2/kernel", 3)]}
    message = (
        r"coupled group 'stream': its slices disagree in size \(channels per leaf: "
        r"stage1_block1/conv2/kernel \(3, 3, 8, 8\) axis 3: 8, "
        r"stage2_block1/conv2/kernel \(3, 3, 16, 16\) axis 3: 16\)"
    )
    with pytest.raises(ValueError, match=message):
        kept_channels(params, wrong)

"""Checkpoints: one atomic file, every dtype round-trips, torn or corrupt files are one clear error;
run fingerprints name the solver's and optimizer's settings and the first field that differs."""

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from prunax import problems, solvers
from prunax.constraints import Pattern, Spec, Unstructured
from prunax.solvers import _checkpoint as checkpoint
from prunax.solvers._fingerprint import describe, first_difference


def _tree():
    return {
        "bf16": jnp.asarray([1.5, -2.25, 3e-3], jnp.bfloat16),
        "f16": jnp.asarray([[0.5, 65504.0]], jnp.float16),
        "f32": jnp.arange(6, dtype=jnp.float32).reshape(2, 3) / 7,
        "i32": jnp.asarray(7, jnp.int32),
        "mask": jnp.asarray([True, False]),
        "key": jax.random.key(3),
        "empty": jnp.zeros((0, 4), jnp.float32),
    }


def test_every_dtype_round_trips_bit_exactly(tmp_path):
    tree = _tree()
    checkpoint.save(tmp_path, tree, {"epoch": 1})
    back = checkpoint.load(tmp_path, jax.tree_util.tree_map(jnp.zeros_like, tree))
    for name in tree:
        if name == "key":
            np.testing.assert_array_equal(jax.random.key_data(back[name]), jax.random.key_data(tree[name]))
            continue
        assert back[name].dtype == tree[name].dtype, name
        np.testing.assert_array_equal(np.asarray(back[name]), np.asarray(tree[name]))
    assert checkpoint.load_meta(tmp_path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == [checkpoint.FILE]  # one file, no leftovers


def test_a_write_killed_before_its_commit_leaves_the_previous_checkpoint_whole(tmp_path, monkeypatch):
    checkpoint.save(tmp_path, {"w": jnp.ones(3)}, {"epoch": 1})

    def killed(*args):
        raise KeyboardInterrupt  # the process dies after writing the new file, before the rename

    monkeypatch.setattr(checkpoint.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(tmp_path, {"w": jnp.full(3, 2.0)}, {"epoch": 2})
    monkeypatch.undo()
    assert checkpoint.load_meta(tmp_path)["epoch"] == 1  # arrays and bookkeeping of one epoch
    np.testing.assert_array_equal(checkpoint.load(tmp_path, {"w": jnp.zeros(3)})["w"], jnp.ones(3))


@pytest.mark.parametrize("damage", ["truncate", "garble", "empty"])
def test_a_torn_or_corrupt_checkpoint_is_one_error_naming_the_file_and_the_way_out(tmp_path, damage):
    checkpoint.save(tmp_path, {"w": jnp.arange(1000.0)}, {"epoch": 1})
    path = tmp_path / checkpoint.FILE
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garble": b"x" * len(data), "empty": b""}[damage])
    for read in (
        lambda: checkpoint.load_meta(tmp_path),
        lambda: checkpoint.load(tmp_path, {"w": jnp.zeros(1000)}),
    ):
        with pytest.raises(solvers.CheckpointError, match=f"{path}.*unreadable.*start over"):
            read()


def test_a_checkpoint_of_another_shape_or_dtype_is_refused(tmp_path):
    checkpoint.save(tmp_path, {"w": jnp.ones(3, jnp.bfloat16)}, {})
    with pytest.raises(
        solvers.CheckpointError, match="array 0 is \\(3,\\) bfloat16, this run expects \\(3,\\) float32"
    ):
        checkpoint.load(tmp_path, {"w": jnp.zeros(3)})
    with pytest.raises(solvers.CheckpointError, match="holds 1 arrays, this run has 2"):
        checkpoint.load(tmp_path, {"w": jnp.zeros(3), "v": jnp.zeros(1)})


def _roundtrip(description):
    return json.loads(json.dumps(description))


def test_fingerprints_of_solvers_differ_in_exactly_the_changed_setting():
    spec = Spec([("kernel", Unstructured(0.9))])
    a = _roundtrip(describe(optax.chain(solvers.admm(spec, rho=1e-2, every=10), optax.adam(1e-3))))
    b = _roundtrip(describe(optax.chain(solvers.admm(spec, rho=1e-2, every=10), optax.adam(1e-3))))
    c = _roundtrip(describe(optax.chain(solvers.admm(spec, rho=1.0, every=10), optax.adam(1e-3))))
    assert first_difference(a, b) is None
    assert "the checkpoint has 0.01, this run 1.0" in first_difference(a, c)
    decoupled = [
        _roundtrip(describe(solvers.slr(spec, every=10, inner=optax.adam(lr), updates=7)))
        for lr in (1e-3, 1e-2)
    ]
    assert "step_size: the checkpoint has -0.001, this run -0.01" in first_difference(*decoupled)
    schedules = [_roundtrip(describe(optax.adam(optax.cosine_decay_schedule(1e-3, n)))) for n in (100, 200)]
    assert "decay_steps: the checkpoint has 100, this run 200" in first_difference(*schedules)


def test_fingerprints_of_pattern_sets_differ_by_content():
    one = np.zeros((2, 3, 3), bool)
    one[0, 1, 1] = one[1, 0, 0] = True
    other = one.copy()
    other[1] = np.eye(3, dtype=bool)
    a, b = (describe(Spec([("kernel", Pattern(p, axes=(0, 1)))])) for p in (one, other))
    assert describe(Spec([("kernel", Pattern(one.copy(), axes=(0, 1)))])) == a
    assert first_difference(_roundtrip(a), _roundtrip(b)) is not None


_SOAK = """
import os, signal, sys
import jax, numpy as np
from prunax import problems, solvers
from prunax.solvers import _checkpoint

run_dir, out, die_in_save = sys.argv[1], sys.argv[2], int(sys.argv[3])
if die_in_save:  # SIGKILL inside the given save, after the new file is written, before its rename
    real, saves = os.replace, {"n": 0}

    def replace(src, dst):
        saves["n"] += 1
        if saves["n"] == die_in_save:
            os.kill(os.getpid(), signal.SIGKILL)
        real(src, dst)

    _checkpoint.os.replace = replace
problem = problems.get("resnet", "test")
result = solvers.fit(problem, epochs=3, batch_size=32, run_dir=run_dir, resume=True, quiet=True)
np.savez(out, *jax.tree_util.tree_leaves(result.params))
"""


def test_runs_killed_at_any_moment_resume_to_the_uninterrupted_result(tmp_path):
    import random
    import subprocess
    import sys
    import time

    problem = problems.get("resnet", "test")
    whole = solvers.fit(problem, epochs=3, batch_size=32, quiet=True)
    script, run_dir, out = tmp_path / "soak.py", tmp_path / "run", tmp_path / "params.npz"
    script.write_text(_SOAK)

    def launch(die_in_save: int):
        return subprocess.Popen([sys.executable, str(script), str(run_dir), str(out), str(die_in_save)])

    assert launch(2).wait() == -9  # killed while committing epoch 2: epoch 1 stays the checkpoint
    assert checkpoint.load_meta(run_dir)["epoch"] == 1
    process = launch(0)  # resumed, then SIGKILLed at a random moment (seeded)
    time.sleep(random.Random(0).uniform(2.0, 8.0))
    process.kill()
    process.wait()
    assert launch(0).wait() == 0
    with np.load(out) as saved:
        for i, leaf in enumerate(jax.tree_util.tree_leaves(whole.params)):
            np.testing.assert_array_equal(saved[f"arr_{i}"], np.asarray(leaf))


class _SmallNet(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
        x = nn.BatchNorm(use_running_average=not train)(nn.Dense(16)(x))
        return nn.Dense(3)(nn.relu(x))


def test_a_bfloat16_prune_resumes_bit_exactly(tmp_path, monkeypatch):
    """bf16 params, optimizer state, ADMM's Z and U and masks through a checkpoint mid-prune (the
    old format stored bf16 as |V2 and refused to load it, blaming "a different configuration")."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((192, 8)).astype(np.float32)
    y = np.argmax(x @ rng.standard_normal((8, 3)), axis=1)
    problem = problems.classifier("bf16", _SmallNet(), train=(x[:128], y[:128]), test=(x[128:], y[128:]))
    params, state = problem.init(jax.random.key(0))
    start = (jax.tree_util.tree_map(lambda leaf: leaf.astype(jnp.bfloat16), params), state)
    spec = problem.spec(Unstructured(0.75))

    def run(**kwargs):
        every = problem.steps_per_epoch(32)
        tx = optax.chain(solvers.admm(spec, rho=1e-2, every=every), optax.adam(1e-3))
        return solvers.prune(
            problem,
            spec,
            tx,
            solve_epochs=2,
            retrain_epochs=1,
            batch_size=32,
            start=start,
            quiet=True,
            **kwargs,
        )

    whole = run()
    real, saves = checkpoint.save, {"n": 0}

    def save_then_stop(*args, **kwargs):
        real(*args, **kwargs)
        saves["n"] += 1
        if saves["n"] == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run(run_dir=tmp_path)
    monkeypatch.undo()
    resumed = run(run_dir=tmp_path, resume=True)
    assert {jnp.result_type(leaf).name for leaf in jax.tree_util.tree_leaves(resumed.params)} == {"bfloat16"}
    for a, b in ((resumed.params, whole.params), (resumed.state, whole.state), (resumed.masks, whole.masks)):
        jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)
    assert [r["metrics"] for r in resumed.records] == [r["metrics"] for r in whole.records]

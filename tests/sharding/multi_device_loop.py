"""On 8 forced host devices: ``prune`` on the test ResNet with batches sharded over a data axis
gives the records of the one-device run (to float tolerance), compiles each phase's step once,
and resumes from a checkpoint into the same shardings bit-exactly.

Collected only by ``test_forced_devices.py`` (see ``multi_device_projections.py``).
"""

import jax
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from prunax import problems, solvers
from prunax.constraints import Unstructured
from prunax.solvers import _checkpoint as checkpoint
from prunax.solvers import _placement
from tests.assets import needs
from tests.sharding.hlo import DEVICES

pytestmark = [
    pytest.mark.skipif(jax.device_count() < DEVICES, reason="needs 8 (forced host) devices"),
    needs("sklearn"),
]

BATCH = 64


@pytest.fixture(scope="module")
def problem():
    return problems.get("resnet", "test")


def _prune(problem, **kwargs):
    spec = problem.spec(Unstructured(0.8))
    tx = optax.chain(solvers.admm(spec, rho=1e-2, every=problem.steps_per_epoch(BATCH)), optax.adam(1e-3))
    start = problem.init(jax.random.key(0))
    return solvers.prune(
        problem,
        spec,
        tx,
        solve_epochs=1,
        retrain_epochs=1,
        batch_size=BATCH,
        start=start,
        quiet=True,
        **kwargs,
    )


@pytest.fixture(scope="module")
def one_device(problem):
    return _prune(problem)


@pytest.fixture(scope="module")
def compiles():
    """The jitted step functions the runs below create, to count their compiles."""
    steps = []
    real = _placement.Placement.jit_step

    def counted(self, step, carry):
        jitted = real(self, step, carry)
        steps.append(jitted)
        return jitted

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_placement.Placement, "jit_step", counted)
        yield steps


@pytest.fixture(scope="module")
def eight_devices(problem, compiles):
    return _prune(problem, mesh="local")


def test_records_match_one_device(one_device, eight_devices):
    """Same batches, keys and updates; only the order of float additions differs (gradients and
    BatchNorm statistics are summed over 8 shards), so losses and metrics agree to ~1e-5."""
    assert [(r["phase"], r["epoch"]) for r in eight_devices.records] == [
        (r["phase"], r["epoch"]) for r in one_device.records
    ]
    for one, many in zip(one_device.records, eight_devices.records):
        assert many["sparsity"] == one["sparsity"]
        for name, value in one["metrics"].items():
            assert many["metrics"][name] == pytest.approx(value, rel=1e-4, abs=1e-5), (one["phase"], name)
        if one["train_loss"] is not None:
            assert many["train_loss"] == pytest.approx(one["train_loss"], rel=1e-4)
    kept = jax.tree_util.tree_map(lambda m: int(np.sum(m)), eight_devices.masks)
    assert kept == jax.tree_util.tree_map(lambda m: int(np.sum(m)), one_device.masks)


def test_each_phase_compiles_its_step_once(eight_devices, compiles):
    assert len(compiles) == 2  # solve and retrain
    assert all(step._cache_size() == 1 for step in compiles)


def test_parameters_and_masks_live_on_the_mesh(eight_devices):
    for leaf in jax.tree_util.tree_leaves((eight_devices.params, eight_devices.masks)):
        assert isinstance(leaf.sharding, NamedSharding) and leaf.sharding.mesh.shape == {"data": DEVICES}


def test_resume_restores_the_shardings_bit_exactly(problem, eight_devices, tmp_path, monkeypatch):
    real, saves = checkpoint.save, []

    def interrupt_after_the_solve(*args, **kwargs):
        real(*args, **kwargs)
        saves.append(1)
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save", interrupt_after_the_solve)
    with pytest.raises(KeyboardInterrupt):
        _prune(problem, mesh="local", run_dir=tmp_path)
    monkeypatch.undo()
    resumed = _prune(problem, mesh="local", run_dir=tmp_path, resume=True)
    jax.tree_util.tree_map(np.testing.assert_array_equal, resumed.params, eight_devices.params)
    assert [r["metrics"] for r in resumed.records] == [r["metrics"] for r in eight_devices.records]
    with pytest.raises(ValueError, match="different run"):  # a checkpoint belongs to its mesh
        _prune(problem, run_dir=tmp_path, resume=True)


def test_parameters_sharded_by_a_rule(problem, one_device):
    """Kernels sharded over a second mesh axis (by output channel), the rest replicated."""
    mesh = Mesh(np.asarray(jax.devices()[:DEVICES]).reshape(4, 2), ("data", "model"))

    def by_output(path, leaf):
        return P(None, None, None, "model") if path.endswith("kernel") and leaf.ndim == 4 else P()

    result = _prune(problem, mesh=mesh, param_sharding=by_output)
    conv = next(leaf for leaf in jax.tree_util.tree_leaves(result.params) if leaf.ndim == 4)
    assert conv.sharding.spec == P(None, None, None, "model")
    final = result.records[-1]["metrics"]["accuracy"]
    assert final == pytest.approx(one_device.records[-1]["metrics"]["accuracy"], abs=1e-2)


def test_bad_meshes_are_named(problem):
    with pytest.raises(ValueError, match="no 'data' axis"):
        _prune(problem, mesh=Mesh(np.asarray(jax.devices()), ("x",)))
    with pytest.raises(ValueError, match="batch_size 60 is not a multiple"):
        solvers.prune(
            problem,
            problem.spec(Unstructured(0.5)),
            optax.sgd(0.1),
            solve_epochs=0,
            retrain_epochs=0,
            batch_size=60,
            mesh="local",
            start=problem.init(jax.random.key(0)),
            quiet=True,
        )

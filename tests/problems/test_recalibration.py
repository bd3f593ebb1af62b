"""BatchNorm recalibration: the averaged batch statistics of ``nn.BatchNorm``, bcnn's complex BN and
quantum's N-LYR against NumPy recomputations from the layers' captured inputs; on the ResNet, a
recalibrated state is deterministic, independent of the stale statistics, and, over one batch,
makes evaluation mode reproduce training mode; construction-time and call-time errors."""

import itertools

import flax.linen as nn
import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prunax import problems
from prunax.constraints import leaves_with_paths
from prunax.problems.bcnn.model import ComplexBatchNorm
from tests.assets import needs

BATCH, COUNT = 8, 3


class TwoNorms(nn.Module):
    """A conv BN over NHWC (statistics over batch, height, width) and a dense BN over (B, F)."""

    fast: bool = True

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Conv(4, (3, 3), name="conv")(x)
        x = nn.BatchNorm(use_running_average=not train, use_fast_variance=self.fast, name="conv_bn")(x)
        x = nn.Dense(5, name="dense")(nn.relu(x).reshape(len(x), -1))
        x = nn.BatchNorm(use_running_average=not train, name="dense_bn")(x)
        return nn.Dense(3, name="head")(nn.relu(x))


class ComplexNorm(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        re, im = ComplexBatchNorm(name="bn")(x[..., :3], x[..., 3:], train)
        return nn.Dense(2, name="head")((re + im).mean(1))


def _classifier(name, model, shape):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4 * BATCH, *shape)).astype(np.float32)
    y = rng.integers(0, 2, 4 * BATCH)
    problem = problems.classifier(name, model, train=(x, y), test=(x, y))
    return problem, *problem.init(jax.random.key(0))


def _inputs_of(model, params, state, x, layers):
    """The captured training-mode outputs of ``layers`` (the inputs of the norms after them)."""
    _, variables = model.apply(
        {"params": params, **state},
        x,
        train=True,
        mutable=["batch_stats", "intermediates"],
        capture_intermediates=lambda module, method: module.name in layers and method == "__call__",
    )
    return {name: variables["intermediates"][name]["__call__"][0] for name in layers}


def _batches(seed: int, shape, shift: float, scale: float):
    rng = np.random.default_rng(seed)
    for _ in range(COUNT):
        x = (shift + scale * rng.normal(size=(BATCH, *shape))).astype(np.float32)
        yield {"x": x, "y": np.zeros(BATCH, np.int32)}


@pytest.fixture(scope="module", params=[True, False], ids=["fast_variance", "two_pass_variance"])
def two_norms(request):
    model = TwoNorms(request.param)
    return model, *_classifier(f"two_norms_{request.param}", model, (6, 6, 2))


@settings(max_examples=10)
@given(st.integers(0, 2**16), st.floats(-2.0, 2.0), st.floats(0.1, 4.0))
def test_batch_norm_statistics_are_the_batch_averages_of_mean_and_biased_variance(
    two_norms, seed, shift, scale
):
    model, problem, params, state = two_norms
    batches = list(_batches(seed, (6, 6, 2), shift, scale))
    new = problem.recalibrate(params, state, batches)["batch_stats"]
    captured = [_inputs_of(model, params, state, b["x"], ("conv", "dense")) for b in batches]
    for layer, axes in (("conv", (0, 1, 2)), ("dense", (0,))):
        inputs = [np.asarray(c[layer], np.float64) for c in captured]
        mean = np.mean([a.mean(axes) for a in inputs], 0)
        var = np.mean([a.var(axes) for a in inputs], 0)  # ddof=0: the biased variance
        np.testing.assert_allclose(new[f"{layer}_bn"]["mean"], mean, rtol=1e-5, atol=1e-5 * scale)
        np.testing.assert_allclose(new[f"{layer}_bn"]["var"], var, rtol=1e-4, atol=1e-5 * scale**2)


def test_recalibration_ignores_the_stale_statistics_and_never_changes_the_params(two_norms):
    _, problem, params, state = two_norms
    stale = jax.tree_util.tree_map(lambda s: s + 3.0, state)
    before = jax.tree_util.tree_map(np.array, params)
    batches = list(_batches(0, (6, 6, 2), 0.0, 1.0))
    a, b = problem.recalibrate(params, state, batches), problem.recalibrate(params, stale, iter(batches))
    jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)
    jax.tree_util.tree_map(np.testing.assert_array_equal, params, before)
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(state)


def test_complex_batch_norm_statistics_are_the_averaged_mean_and_covariance():
    problem, params, state = _classifier("complex_norm", ComplexNorm(), (10, 6))
    batches = list(_batches(1, (10, 6), 0.5, 2.0))
    new = problem.recalibrate(params, state, batches)["batch_stats"]["bn"]
    means, covs = [], []
    for batch in batches:
        x = np.asarray(batch["x"], np.float64)
        re, im = x[..., :3], x[..., 3:]
        cr, ci = re - re.mean((0, 1)), im - im.mean((0, 1))
        means.append([re.mean((0, 1)), im.mean((0, 1))])
        covs.append([(cr * cr).mean((0, 1)), (ci * ci).mean((0, 1)), (cr * ci).mean((0, 1))])
    np.testing.assert_allclose(new["mean"], np.mean(means, 0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new["cov"], np.mean(covs, 0), rtol=1e-5, atol=1e-6)


@needs("sklearn")
def test_n_layer_running_mean_is_the_averaged_batch_mean():
    problem = problems.get("quantum", "test", arch="qf_deep")
    params, state = problem.init(jax.random.key(0))
    batches = list(itertools.islice(problem.batches("train", jax.random.key(1), BATCH), COUNT))
    new = problem.recalibrate(params, state, batches)["batch_stats"]
    model = problems.quantum.nets.QuantumNet("qf_deep", 2)
    captured = [_inputs_of(model, params, state, b["x"], ("u1", "p2")) for b in batches]
    for norm, layer in (("n1", "u1"), ("n2", "p2")):
        mean = np.mean([np.asarray(c[layer], np.float64).mean(0) for c in captured], 0)
        np.testing.assert_allclose(new[norm]["mean"], mean, rtol=1e-5, atol=1e-7)


@pytest.fixture(scope="module")
def resnet():
    problem = problems.get("resnet", "test")
    return problem, *problem.init(jax.random.key(0))


def _magnitude_pruned(problem, params, sparsity: float):
    """``params`` with the smallest-magnitude ``sparsity`` of each default prunable leaf zeroed."""
    paths, leaves, treedef = leaves_with_paths(params)
    prunable = set(problem.prunable_leaves(params))
    kept = lambda w: w * (np.abs(w) >= np.quantile(np.abs(w), sparsity))  # noqa: E731
    return jax.tree_util.tree_unflatten(
        treedef, [kept(w) if p in prunable else w for p, w in zip(paths, leaves)]
    )


@needs("sklearn")
def test_resnet_recalibration_is_deterministic_and_follows_the_hard_prune(resnet):
    problem, params, state = resnet
    batches = list(itertools.islice(problem.batches("train", jax.random.key(1), 32), 2))
    dense = problem.recalibrate(params, state, batches)
    jax.tree_util.tree_map(np.testing.assert_array_equal, dense, problem.recalibrate(params, state, batches))
    assert set(dense) == {"batch_stats"}
    pruned = _magnitude_pruned(problem, params, 0.9)
    after = problem.recalibrate(pruned, state, batches)["batch_stats"]["stage3_block1"]["bn2"]
    before = dense["batch_stats"]["stage3_block1"]["bn2"]
    assert not np.allclose(after["var"], before["var"]) and not np.allclose(after["mean"], before["mean"])


@needs("sklearn")
def test_over_one_batch_evaluation_mode_reproduces_training_mode(resnet):
    """Every running statistic equals the batch statistic of its layer, so every normalization
    and hence the logits agree: the statistics land at the right layers, as variances."""
    problem, params, state = resnet
    batch = next(problem.batches("train", jax.random.key(2), 32))
    new = problem.recalibrate(params, state, [batch])
    model = problems.resnet.model_of(problem)
    train, _ = model.apply({"params": params, **state}, batch["x"], train=True, mutable=["batch_stats"])
    evaluation = model.apply({"params": params, **new}, batch["x"], train=False)
    np.testing.assert_allclose(evaluation, train, rtol=1e-4, atol=1e-4)
    stale = model.apply({"params": params, **state}, batch["x"], train=False)
    assert not np.allclose(stale, train, rtol=1e-4, atol=1e-4)


def test_errors_name_the_layer_and_the_shapes(two_norms):
    _, problem, params, state = two_norms
    batches = list(_batches(0, (6, 6, 2), 0.0, 1.0))
    missing = {"batch_stats": {"conv_bn": state["batch_stats"]["conv_bn"]}}
    with pytest.raises(
        ValueError, match=r"layer 'dense_bn' computes a batch 'mean', but .* no dense_bn/mean"
    ):
        problem.recalibrate(params, missing, batches)
    wrong = jax.tree_util.tree_map(lambda s: s, state)
    wrong["batch_stats"]["dense_bn"]["var"] = np.ones(1, np.float32)  # broadcasts in the forward pass
    with pytest.raises(
        ValueError, match=r"batch 'var' of layer 'dense_bn' has shape \(5,\), .* shape \(1,\)"
    ):
        problem.recalibrate(params, wrong, batches)
    with pytest.raises(ValueError, match="needs at least one batch"):
        problem.recalibrate(params, state, [])


class Shared(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        norm = nn.BatchNorm(use_running_average=not train, name="bn")
        return nn.Dense(2, name="head")(norm(norm(x)))


class Frozen(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.BatchNorm(use_running_average=True, name="frozen")(x)
        return nn.Dense(2, name="head")(nn.BatchNorm(use_running_average=not train, name="bn")(x))


def test_construction_refuses_a_reused_norm_and_warns_of_statistics_it_leaves():
    with pytest.raises(ValueError, match=r"layer 'bn' runs more than once per forward pass"):
        _classifier("shared", Shared(), (3,))
    with pytest.warns(UserWarning, match=r"leaves the running statistics \['frozen/mean', 'frozen/var'\]"):
        problem, params, state = _classifier("frozen", Frozen(), (3,))
    new = problem.recalibrate(params, state, _batches(0, (3,), 1.0, 2.0))["batch_stats"]
    jax.tree_util.tree_map(np.testing.assert_array_equal, new["frozen"], state["batch_stats"]["frozen"])
    assert not np.allclose(new["bn"]["mean"], state["batch_stats"]["bn"]["mean"])


def test_a_model_without_running_statistics_has_no_recalibrate():
    model = nn.Sequential([nn.Dense(4), nn.relu, nn.Dense(2)])
    assert _classifier("plain", model, (3,))[0].recalibrate is None


def test_register_statistics_checks_its_arguments():
    with pytest.raises(ValueError, match="module_type must be a flax.linen Module class"):
        problems.register_statistics(object, lambda module, arguments: {})
    with pytest.raises(ValueError, match="rule must be callable"):
        problems.register_statistics(nn.BatchNorm, None)

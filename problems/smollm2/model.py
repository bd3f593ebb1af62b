"""A LLaMA decoder in Flax (docs/problems.md, "smollm2"): RMSNorm, rotary position embeddings,
grouped-query attention and a SwiGLU MLP, with the head tied to the embedding or not.

For tokens x (B, L, d), block i computes

    h = x + Attention(RMSNorm(x)),    out = h + W_down (silu(W_gate RMSNorm(h)) ⊙ W_up RMSNorm(h)),

RMSNorm(x) = x / sqrt(mean(x²) + ε) · g. Attention has ``heads`` query heads of width d_h and
``kv_heads`` key/value heads; query head j reads key/value head j // (heads / kv_heads). Queries
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

    def __post_init__(self):
        if self.hidden % self.heads or (self.hidden // self.heads) % 2:
            raise ValueError(
                f"LlamaConfig: hidden {self.hidden} must split into {self.heads} heads of even width"
            )
        if self.heads % self.kv_heads:
            raise ValueError(
                f"LlamaConfig: {self.heads} query heads do not share {self.kv_heads} kv heads evenly"
            )

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


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

    @nn.compact
    def __call__(self, x, positions):
        c = self.config
        b, length, _ = x.shape
        dense = partial(nn.Dense, use_bias=False)
        q = dense(c.heads * c.head_dim, name="query")(x).reshape(b, length, c.heads, c.head_dim)
        k = dense(c.kv_heads * c.head_dim, name="key")(x).reshape(b, length, c.kv_heads, c.head_dim)
        v = dense(c.kv_heads * c.head_dim, name="value")(x).reshape(b, length, c.kv_heads, c.head_dim)
        q, k = rope(q, positions, c.rope_base), rope(k, positions, c.rope_base)
        group = c.heads // c.kv_heads
        q = q.reshape(b, length, c.kv_heads, group, c.head_dim)
        scores = jnp.einsum("blkgd,bmkd->bkglm", q, k) / np.sqrt(c.head_dim)
        causal = jnp.tril(jnp.ones((length, length), bool))
        probs = jax.nn.softmax(jnp.where(causal, scores, -jnp.inf), axis=-1)
        out = jnp.einsum("bkglm,bmkd->blkgd", probs, v).reshape(b, length, c.hidden)
        return dense(c.hidden, name="output")(out)


class MLP(nn.Module):
    config: LlamaConfig

    @nn.compact
    def __call__(self, x):
        dense = partial(nn.Dense, use_bias=False)
        gate = dense(self.config.intermediate, name="gate")(x)
        up = dense(self.config.intermediate, name="up")(x)
        return dense(self.config.hidden, name="down")(nn.silu(gate) * up)


class Block(nn.Module):
    config: LlamaConfig

    @nn.compact
    def __call__(self, x, positions):
        eps = self.config.eps
        x = x + Attention(self.config, name="attention")(RMSNorm(eps, name="attention_norm")(x), positions)
        return x + MLP(self.config, name="mlp")(RMSNorm(eps, name="mlp_norm")(x))


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
            x = Block(c, name=f"block_{i}")(x, positions)
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

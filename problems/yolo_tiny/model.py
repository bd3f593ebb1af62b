"""YOLOv3-tiny (darknet layout, channels × ``width``) as a Flax module.

Backbone of CBL blocks (conv 3×3 + BatchNorm + leaky ReLU 0.1): 16 → mp → 32 → mp → 64 → mp → 128
→ mp → 256 (route r26, stride 16) → mp → 512 → mp(2, stride 1) → 1024 → 256 (1×1) = r (stride 32).
Heads: stride 32 = CBL 512 → 1×1 conv with 3(5+C) outputs; stride 16 = CBL 128 (1×1) on r →
upsample ×2 → concat r26 → CBL 256 → 1×1 conv.
"""

from __future__ import annotations

from functools import partial

import flax.linen as nn
import jax.numpy as jnp

_BN = partial(nn.BatchNorm, momentum=0.9, epsilon=1e-5)


class CBL(nn.Module):
    features: int
    size: int = 3

    @nn.compact
    def __call__(self, x, train: bool):
        x = nn.Conv(self.features, (self.size, self.size), padding="SAME", use_bias=False, name="conv")(x)
        return nn.leaky_relu(_BN(use_running_average=not train, name="bn")(x), 0.1)


BASE = (16, 32, 64, 128, 256, 512, 1024, 256, 512, 128, 256)  # cbl1 .. cbl11 at width 1


class YoloTiny(nn.Module):
    """Images (B, S, S, 3) → raw head outputs (B, S/16, S/16, 3, 5+C) and (B, S/32, S/32, 3, 5+C).
    ``channels``: the filters of cbl1 .. cbl11 (after compaction); None: ``BASE`` × ``width``."""

    width: float
    classes: int
    channels: tuple[int, ...] | None = None

    def widths(self) -> tuple[int, ...]:
        if self.channels is not None:
            return tuple(self.channels)
        return tuple(max(int(round(c * self.width)), 4) for c in BASE)

    @nn.compact
    def __call__(self, x, train: bool = False):
        ch = dict(zip(range(1, 12), self.widths()))
        pool = lambda z: nn.max_pool(z, (2, 2), (2, 2))  # noqa: E731
        for i in range(1, 5):
            x = pool(CBL(ch[i], name=f"cbl{i}")(x, train))
        r26 = CBL(ch[5], name="cbl5")(x, train)
        x = CBL(ch[6], name="cbl6")(pool(r26), train)
        x = nn.max_pool(x, (2, 2), (1, 1), padding=((0, 1), (0, 1)))
        r = CBL(ch[8], 1, name="cbl8")(CBL(ch[7], name="cbl7")(x, train), train)
        outputs = 3 * (5 + self.classes)
        coarse = nn.Conv(outputs, (1, 1), name="out32")(CBL(ch[9], name="cbl9")(r, train))
        up = jnp.repeat(jnp.repeat(CBL(ch[10], 1, name="cbl10")(r, train), 2, 1), 2, 2)
        fine = nn.Conv(outputs, (1, 1), name="out16")(
            CBL(ch[11], name="cbl11")(jnp.concatenate([up, r26], -1), train)
        )
        shape = lambda z: z.reshape(z.shape[:3] + (3, 5 + self.classes))  # noqa: E731
        return shape(fine), shape(coarse)

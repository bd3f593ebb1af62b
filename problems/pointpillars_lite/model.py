"""PointPillars-lite (after Lang et al. 2019) as a Flax module.

Pillar feature net: Dense(9 → C, no bias) + BatchNorm + ReLU per point, padded points zeroed, max
over a pillar's points → scatter to the BEV grid → backbone of three blocks (conv 3×3 stride 2,
then conv 3×3, each + BN + ReLU) whose outputs are deconvolved to the first block's resolution and
concatenated → SSD head (1×1 convs): per cell and anchor (car at 0° and 90°) a class logit, 7
box residuals and 2 direction logits.
"""

from __future__ import annotations

from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

YAWS = (0.0, np.pi / 2)  # of the anchors at every head cell
_BN = partial(nn.BatchNorm, momentum=0.9, epsilon=1e-3)


class Stage(nn.Module):
    """conv 3×3 stride 2 + BN + ReLU, conv 3×3 + BN + ReLU (``inner``: conv1's filters, None:
    ``features``)."""

    features: int
    inner: int | None = None

    @nn.compact
    def __call__(self, x, train: bool):
        widths = (self.features if self.inner is None else self.inner, self.features)
        for j, stride in enumerate((2, 1)):
            x = nn.Conv(widths[j], (3, 3), stride, padding="SAME", use_bias=False, name=f"conv{j + 1}")(x)
            x = nn.relu(_BN(use_running_average=not train, name=f"bn{j + 1}")(x))
        return x


class PointPillars(nn.Module):
    """Pillars (B, P, N, 9) and their cells (B, P; −1 unused) → class logits (B, X, Y, 2), box
    residuals (B, X, Y, 2, 7) and direction logits (B, X, Y, 2, 2). ``inner`` (per block, conv1's
    filters) and ``ups`` (per block, its deconv's filters) come from compaction; None: ``widths``
    and ``up``."""

    cells: tuple[int, int]
    pfn: int
    widths: tuple[int, ...]
    up: int
    inner: tuple[int, ...] | None = None
    ups: tuple[int, ...] | None = None

    @nn.compact
    def __call__(self, features, cells, train: bool = False):
        bn = lambda name: _BN(use_running_average=not train, name=name)  # noqa: E731
        mask = jnp.any(features != 0, -1, keepdims=True)
        x = nn.relu(bn("pfn_bn")(nn.Dense(self.pfn, use_bias=False, name="pfn")(features)))
        pillars = jnp.max(x * mask, axis=2)  # (B, P, C); ReLU ≥ 0, so zeroed padding never wins
        nx, ny = self.cells
        slots = jnp.where(cells >= 0, cells, nx * ny)  # unused slots land in a dropped extra cell
        canvas = jax.vmap(lambda s, p: jnp.zeros((nx * ny + 1, self.pfn)).at[s].set(p))(slots, pillars)
        x = canvas[:, :-1].reshape(-1, nx, ny, self.pfn)
        ups = []
        inner = self.inner or (None,) * len(self.widths)
        for i, width in enumerate(self.widths):
            x = Stage(width, inner[i], name=f"block{i + 1}")(x, train)
            stride = 2**i
            up = nn.ConvTranspose(
                self.up if self.ups is None else self.ups[i],
                (stride, stride),
                (stride, stride),
                use_bias=False,
                name=f"up{i + 1}",
            )(x)
            ups.append(nn.relu(bn(f"up{i + 1}_bn")(up)))
        x = jnp.concatenate(ups, -1)
        split = lambda z, k: z.reshape(z.shape[:3] + (len(YAWS), k))  # noqa: E731
        return (
            split(nn.Conv(len(YAWS), (1, 1), name="head_cls")(x), 1)[..., 0],
            split(nn.Conv(7 * len(YAWS), (1, 1), name="head_box")(x), 7),
            split(nn.Conv(2 * len(YAWS), (1, 1), name="head_dir")(x), 2),
        )

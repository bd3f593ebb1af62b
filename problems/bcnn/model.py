"""The binarized complex 1-D CNN of ``bcnn`` as Flax modules (docs/problems.md, "bcnn").

Complex activations travel as (real, imaginary) pairs of (B, L, C) arrays. A complex conv with
kernel A + iB computes (A∗x − B∗y) + i(B∗x + A∗y): the four real convolutions, done as one real
conv over the stacked channels [x, y] with the block kernel [[A, B], [−B, A]]. Each kernel is one
leaf of shape (k, cin, cout, 2) (last axis: A, B), so a structured group that spans the last axis
holds a whole complex filter.

Layout: a full-precision complex stem conv → pool, then blocks of complex BatchNorm (Trabelsi et
al. 2018: 2×2 whitening, running statistics) → sign → binary complex conv → max-pool (real and
imaginary parts separately), then complex BN → mean over time of the real and imaginary parts →
a full-precision Dense head. Binary convs use sign(A), sign(B) in the forward pass and the
straight-through estimator (gradient 1 where |u| ≤ 1) backwards; activations are binarized the
same way. sign(0) = 0, so a pruned weight is a ternary zero. A filter whose latent weights are all
zero is removed: its output channel is zeroed after the next BN and sign, so the next layer's input
channel k is dead too (the BN parameters of a dead channel no longer matter).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from .._binary import ste_sign
from .._recalibration import register_statistics

_EPS = 1e-5


def complex_conv(re, im, kernel):
    """(re + i·im) ∗ (A + iB) for kernel (k, cin, cout, 2), 'SAME' padding, stride 1."""
    a, b = kernel[..., 0], kernel[..., 1]
    block = jnp.concatenate([jnp.concatenate([a, b], 2), jnp.concatenate([-b, a], 2)], 1)
    out = jax.lax.conv_general_dilated(
        jnp.concatenate([re, im], -1), block, (1,), "SAME", dimension_numbers=("NWC", "WIO", "NWC")
    )
    return jnp.split(out, 2, axis=-1)


def alive_filters(kernel):
    """1.0 for each output filter with any nonzero latent weight (real or imaginary), else 0.0."""
    return jnp.any(kernel != 0, axis=(0, 1, 3)).astype(kernel.dtype)


class ComplexConv(nn.Module):
    features: int
    width: int
    binary: bool

    @nn.compact
    def __call__(self, re, im):
        init = nn.initializers.variance_scaling(1.0, "fan_in", "uniform", in_axis=(0, 1, 3), out_axis=2)
        kernel = self.param("kernel", init, (self.width, re.shape[-1], self.features, 2))
        used = ste_sign(kernel, zero_is_zero=True) if self.binary else kernel
        return (*complex_conv(re, im, used), alive_filters(kernel))


def complex_moments(re, im):
    """Per channel over batch and time: the mean (2, C) of (re, im) and the biased covariance
    [Vrr, Vii, Vri] (3, C), e.g. Vri = E[(re − E re)(im − E im)]."""
    mu = jnp.stack([re.mean((0, 1)), im.mean((0, 1))])
    cr, ci = re - mu[0], im - mu[1]
    return mu, jnp.stack([(cr * cr).mean((0, 1)), (ci * ci).mean((0, 1)), (cr * ci).mean((0, 1))])


class ComplexBatchNorm(nn.Module):
    """Trabelsi et al. complex BN: whiten (re, im) per channel with V^{-1/2} of the 2×2 covariance
    V, V^{-1/2} = [[Vii + s, −Vri], [−Vri, Vrr + s]]/(s·t), s = √det V, t = √(Vrr + Vii + 2s),
    then y = Γ x̃ + β with Γ = [[γrr, γri], [γri, γii]] (init 1/√2, 0, 1/√2)."""

    momentum: float = 0.9

    @nn.compact
    def __call__(self, re, im, train: bool):
        c = re.shape[-1]
        mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((2, c)))
        cov = self.variable("batch_stats", "cov", lambda: jnp.stack([jnp.ones(c), jnp.ones(c), jnp.zeros(c)]))
        if train:
            mu, v = complex_moments(re, im)
            if not self.is_initializing():
                mean.value = self.momentum * mean.value + (1 - self.momentum) * mu
                cov.value = self.momentum * cov.value + (1 - self.momentum) * v
        else:
            mu, v = mean.value, cov.value
        cr, ci = re - mu[0], im - mu[1]
        vrr, vii, vri = v[0] + _EPS, v[1] + _EPS, v[2]
        s = jnp.sqrt(vrr * vii - vri * vri)
        t = jnp.sqrt(vrr + vii + 2 * s)
        wrr, wii, wri = (vii + s) / (s * t), (vrr + s) / (s * t), -vri / (s * t)
        xr, xi = wrr * cr + wri * ci, wri * cr + wii * ci
        diag = nn.initializers.constant(1 / np.sqrt(2))
        g_rr = self.param("gamma_rr", diag, (c,))
        g_ii = self.param("gamma_ii", diag, (c,))
        g_ri = self.param("gamma_ri", nn.initializers.zeros, (c,))
        beta = self.param("beta", nn.initializers.zeros, (2, c))
        return g_rr * xr + g_ri * xi + beta[0], g_ri * xr + g_ii * xi + beta[1]


def _complex_statistics(module: ComplexBatchNorm, arguments: dict) -> dict:
    """Recalibration: the batch ``mean`` and ``cov`` of the training-mode branch."""
    if not arguments["train"]:
        return {}
    return dict(zip(("mean", "cov"), complex_moments(arguments["re"], arguments["im"])))


register_statistics(ComplexBatchNorm, _complex_statistics)


def _pool(re, im):
    pool = lambda z: nn.max_pool(z, (2,), (2,))  # noqa: E731
    return pool(re), pool(im)


class BinaryBlock(nn.Module):
    features: int
    width: int

    @nn.compact
    def __call__(self, re, im, alive, train: bool):
        re, im = ComplexBatchNorm(name="bn")(re, im, train)
        re, im = ste_sign(re, False) * alive, ste_sign(im, False) * alive
        re, im, alive = ComplexConv(self.features, self.width, binary=True, name="conv")(re, im)
        return (*_pool(re, im), alive)


class BCNN(nn.Module):
    stem: int
    widths: tuple[int, ...]
    width: int
    classes: int

    @nn.compact
    def __call__(self, x, train: bool = False):
        re, im = x[..., :1], x[..., 1:]
        re, im, alive = ComplexConv(self.stem, self.width, binary=False, name="stem")(re, im)
        re, im = _pool(re, im)
        for i, features in enumerate(self.widths):
            re, im, alive = BinaryBlock(features, self.width, name=f"block{i + 1}")(re, im, alive, train)
        re, im = ComplexBatchNorm(name="head_bn")(re, im, train)
        pooled = jnp.concatenate([(re * alive).mean(1), (im * alive).mean(1)], -1)
        return nn.Dense(self.classes, name="head")(pooled)


def filter_couplings(model: BCNN, layers: tuple[str, ...]) -> dict:
    """{"<conv>/filters": members} for the convs ``layers`` ("stem", "block1", ...): a complex
    filter (A and B) with the next block's complex BatchNorm parameters and input channel — or,
    after the last block, the head BatchNorm's and the head's rows for the real and imaginary
    means."""
    convs = ["stem", *(f"block{i + 1}" for i in range(len(model.widths)))]
    widths = [model.stem, *model.widths]
    out = {}
    for i, conv in enumerate(convs):
        if conv not in layers:
            continue
        kernel = "stem/kernel" if conv == "stem" else f"{conv}/conv/kernel"
        last = i + 1 == len(convs)
        bn = "head_bn" if last else f"{convs[i + 1]}/bn"
        members = [(kernel, 2), *_norm_members(bn, "")]
        if last:
            members += [("head/kernel", 0, 1, 0), ("head/kernel", 0, 1, widths[i])]
        else:
            members.append((f"{convs[i + 1]}/conv/kernel", 1))
        out[f"{conv}/filters"] = members
    return out


def _norm_members(bn: str, prefix: str) -> list:
    """A complex BatchNorm's per-channel slices: parameters (``prefix`` "") or statistics."""
    if prefix:
        return [(f"{prefix}{bn}/mean", 1), (f"{prefix}{bn}/cov", 1)]
    return [(f"{bn}/gamma_rr", 0), (f"{bn}/gamma_ii", 0), (f"{bn}/gamma_ri", 0), (f"{bn}/beta", 1)]


def statistics_couplings(couplings: dict) -> dict:
    """The running statistics of the BatchNorm in each of ``couplings``."""
    return {
        name: _norm_members(members[1][0].rsplit("/", 1)[0], "batch_stats/")
        for name, members in couplings.items()
    }


def binary_operations(params, length: int) -> dict[str, int]:
    """Binary multiply-accumulates of one forward pass: per binary conv, (live ternary weights
    whose input channel is alive) × 2 (A and B each meet both x and y) × output positions. Both
    before any pruning (``dense``: every weight counted) and as the weights stand (``live``)."""
    dense = live = 0
    alive_in = np.asarray(alive_filters(params["stem"]["kernel"]))
    positions = length // 2
    for name in sorted((k for k in params if k.startswith("block")), key=lambda k: int(k[5:])):
        kernel = np.asarray(params[name]["conv"]["kernel"])
        dense += kernel.size * 2 * positions
        live += int(np.sum((kernel != 0) * alive_in[None, :, None, None])) * 2 * positions
        alive_in = np.asarray(alive_filters(kernel))
        positions //= 2
    return {"dense": dense, "live": live}

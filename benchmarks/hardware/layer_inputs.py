"""What each conv of a Flax model sees: its inputs (recorded with a method interceptor) and
im2col windows of them, in the crossbar/GEMM row order (kh, kw, cin)."""

from __future__ import annotations

import flax.linen as nn
import numpy as np


def conv_inputs(model, variables, x) -> dict[str, tuple[np.ndarray, tuple, tuple]]:
    """The input of every ``nn.Conv`` in an evaluation forward pass, by kernel path, with the
    conv's strides and kernel size (recorded with a Flax method interceptor)."""
    seen = {}

    def record(next_fun, args, kwargs, context):
        if isinstance(context.module, nn.Conv) and context.method_name == "__call__":
            path = "/".join(context.module.scope.path) + "/kernel"
            strides = context.module.strides or 1
            strides = (strides,) * 2 if isinstance(strides, int) else tuple(strides)
            seen[path] = (np.asarray(args[0]), strides, tuple(context.module.kernel_size))
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(record):
        model.apply(variables, x, train=False)
    return seen


def im2col_windows(x: np.ndarray, kernel_size, strides, count: int, rng) -> tuple[np.ndarray, tuple]:
    """``count`` random im2col rows (kh·kw·cin, C order = the crossbar's rows) of a 'SAME' conv
    over NHWC input ``x``, with XLA's padding split (the extra pixel at the end), and the output
    positions (image, row, column) they produce."""
    n, h, w, _ = x.shape
    pads = []
    for size, k, s in zip((h, w), kernel_size, strides):
        out = -(-size // s)
        total = max((out - 1) * s + k - size, 0)
        pads.append((total // 2, total - total // 2, out))
    padded = np.pad(x, ((0, 0), pads[0][:2], pads[1][:2], (0, 0)))
    b = rng.integers(0, n, count)
    out_y, out_x = rng.integers(0, pads[0][2], count), rng.integers(0, pads[1][2], count)
    oy, ox = out_y * strides[0], out_x * strides[1]
    dy, dx = np.meshgrid(np.arange(kernel_size[0]), np.arange(kernel_size[1]), indexing="ij")
    patches = padded[b[:, None, None], oy[:, None, None] + dy, ox[:, None, None] + dx]  # (count, kh, kw, cin)
    return patches.reshape(count, -1), (b, out_y, out_x)

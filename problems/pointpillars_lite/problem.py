"""``pointpillars_lite``: a small PointPillars detecting cars in synthetic LiDAR scenes, BEV AP.

After Lang et al. 2019 (docs/problems.md, "pointpillars_lite"); the metric is BEV centre-distance AP averaged over 0.5, 1
and 2 m.

Pillar feature net: Dense(9 → C, no bias) + BatchNorm + ReLU per point, padded points zeroed, max
over a pillar's points → scatter to the BEV grid → backbone of three blocks (conv 3×3 stride 2,
then conv 3×3, each + BN + ReLU) whose outputs are deconvolved to the first block's resolution and
concatenated → SSD head (1×1 convs): per cell and anchor (car at 0° and 90°) a class logit, 7
box residuals and 2 direction logits.

Anchors are matched to cars by BEV IoU of axis-aligned boxes, the car box rotated to its nearest
axis (as SECOND/PointPillars do): positive ≥ 0.6 or the best anchor of a car, negative < 0.45,
ignored between. Residuals (Δx, Δy)/d with d the anchor diagonal, Δz/h_a, log size ratios, Δθ;
direction = whether the yaw lies in [0, π) or [π, 2π). Loss: focal (α 0.25, γ 2) + 2 · smooth-L1
(β 1/9; sin(Δθ_pred − Δθ) for the angle) + 0.2 · direction cross-entropy, each over the positive
count. Decoding: the 100 best anchors, greedy 1.5 m centre-distance NMS, score > 0.05. Pruned by
default: the backbone convs (the pillar net, deconvs and head stay dense).
"""

from __future__ import annotations

from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from prunax.constraints import Block, spec

from .. import detection
from .._groups import conv_groups
from .._protocol import Problem, Recipe, check_batch, data_digest, epoch_batches, padded_batches
from . import scenes as lidar_scenes

# size -> (grid, PFN width, block widths, upsampled width, train scenes, test scenes, epochs)
SIZES = {
    "test": (lidar_scenes.PillarGrid(pillar=0.8, max_pillars=256), 16, (16, 32, 64), 32, 64, 16, 2),
    "default": (lidar_scenes.PillarGrid(), 32, (32, 64, 128), 64, 600, 150, 15),
}
PRUNABLE = r"^block\d/conv\d/kernel$"
YAWS = (0.0, np.pi / 2)
_BN = partial(nn.BatchNorm, momentum=0.9, epsilon=1e-3)


class Stage(nn.Module):
    """conv 3×3 stride 2 + BN + ReLU, conv 3×3 + BN + ReLU."""

    features: int

    @nn.compact
    def __call__(self, x, train: bool):
        for j, stride in enumerate((2, 1)):
            x = nn.Conv(self.features, (3, 3), stride, padding="SAME", use_bias=False, name=f"conv{j + 1}")(x)
            x = nn.relu(_BN(use_running_average=not train, name=f"bn{j + 1}")(x))
        return x


class PointPillars(nn.Module):
    cells: tuple[int, int]
    pfn: int
    widths: tuple[int, ...]
    up: int

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
        for i, width in enumerate(self.widths):
            x = Stage(width, name=f"block{i + 1}")(x, train)
            stride = 2**i
            up = nn.ConvTranspose(
                self.up, (stride, stride), (stride, stride), use_bias=False, name=f"up{i + 1}"
            )(x)
            ups.append(nn.relu(bn(f"up{i + 1}_bn")(up)))
        x = jnp.concatenate(ups, -1)
        split = lambda z, k: z.reshape(z.shape[:3] + (len(YAWS), k))  # noqa: E731
        return (
            split(nn.Conv(len(YAWS), (1, 1), name="head_cls")(x), 1)[..., 0],
            split(nn.Conv(7 * len(YAWS), (1, 1), name="head_box")(x), 7),
            split(nn.Conv(2 * len(YAWS), (1, 1), name="head_dir")(x), 2),
        )


def anchors(grid: lidar_scenes.PillarGrid) -> np.ndarray:
    """(X, Y, 2, 7) car anchors at the head's cell centres (stride 2 pillars), yaw 0 and π/2."""
    nx, ny = (c // 2 for c in grid.cells)
    step = 2 * grid.pillar
    x = grid.x_range[0] + (np.arange(nx) + 0.5) * step
    y = grid.y_range[0] + (np.arange(ny) + 0.5) * step
    out = np.zeros((nx, ny, len(YAWS), 7), np.float32)
    out[..., 0], out[..., 1] = x[:, None, None], y[None, :, None]
    out[..., 2] = lidar_scenes.GROUND_Z + lidar_scenes.CAR[2] / 2
    out[..., 3:6] = lidar_scenes.CAR
    out[..., 6] = YAWS
    return out


def _bev_boxes(boxes: np.ndarray) -> np.ndarray:
    """(x1, y1, x2, y2) of boxes turned to their nearest axis (l and w swap past 45°)."""
    turned = np.abs(np.sin(boxes[..., 6])) > np.abs(np.cos(boxes[..., 6]))
    length = np.where(turned, boxes[..., 4], boxes[..., 3])
    width = np.where(turned, boxes[..., 3], boxes[..., 4])
    return np.stack(
        [
            boxes[..., 0] - length / 2,
            boxes[..., 1] - width / 2,
            boxes[..., 0] + length / 2,
            boxes[..., 1] + width / 2,
        ],
        -1,
    )


def direction(yaw):
    """0 for yaw in [0, π) modulo 2π, 1 for [π, 2π)."""
    return (jnp.mod(yaw, 2 * np.pi) >= np.pi).astype(jnp.int32)


def targets(boxes: np.ndarray, valid: np.ndarray, anchor: np.ndarray):
    """Per scene and anchor: label (1 positive, 0 negative, −1 ignored), 7 residuals and the
    direction class of the matched car."""
    flat = anchor.reshape(-1, 7)
    anchor_bev = _bev_boxes(flat)
    labels = np.zeros((len(boxes), len(flat)), np.int32)
    residuals = np.zeros((len(boxes), len(flat), 7), np.float32)
    dirs = np.zeros((len(boxes), len(flat)), np.int32)
    diagonal = np.hypot(flat[:, 3], flat[:, 4])
    for s in range(len(boxes)):
        cars = boxes[s][valid[s]]
        if not len(cars):
            continue
        iou = np.asarray(detection.box_iou(anchor_bev, _bev_boxes(cars)))  # (A, K)
        match, best = iou.argmax(1), iou.max(1)
        labels[s] = np.where(best >= 0.6, 1, np.where(best < 0.45, 0, -1))
        forced = iou.argmax(0)
        labels[s, forced] = 1
        match[forced] = np.arange(len(cars))
        car = cars[match]
        residuals[s] = np.column_stack(
            [
                (car[:, 0] - flat[:, 0]) / diagonal,
                (car[:, 1] - flat[:, 1]) / diagonal,
                (car[:, 2] - flat[:, 2]) / flat[:, 5],
                np.log(car[:, 3:6] / flat[:, 3:6]),
                car[:, 6] - flat[:, 6],
            ]
        )
        dirs[s] = np.asarray(direction(car[:, 6]))
    shape = anchor.shape[:3]
    return labels.reshape((-1,) + shape), residuals.reshape((-1,) + shape + (7,)), dirs.reshape((-1,) + shape)


def pillars_loss(cls, box, dirs, label, residual, dir_target):
    """Focal + 2·smooth-L1 (sin-difference angle) + 0.2·direction CE, over the positive count."""
    positive = (label == 1).astype(jnp.float32)
    counted = (label >= 0).astype(jnp.float32)
    p = jax.nn.sigmoid(cls)
    p_t = jnp.where(label == 1, p, 1 - p)
    alpha = jnp.where(label == 1, 0.25, 0.75)
    focal = -alpha * (1 - p_t) ** 2 * jnp.log(jnp.clip(p_t, 1e-7, 1.0))
    diff = jnp.concatenate([box[..., :6] - residual[..., :6], jnp.sin(box[..., 6:] - residual[..., 6:])], -1)
    beta = 1 / 9
    smooth = jnp.where(jnp.abs(diff) < beta, 0.5 * diff**2 / beta, jnp.abs(diff) - 0.5 * beta).sum(-1)
    direction_ce = optax.softmax_cross_entropy_with_integer_labels(dirs, dir_target)
    total = jnp.sum(counted * focal) + 2 * jnp.sum(positive * smooth) + 0.2 * jnp.sum(positive * direction_ce)
    return total / jnp.maximum(jnp.sum(positive), 1.0)


def decode(cls, box, dirs, anchor, top: int = 100, radius: float = 1.5, threshold: float = 0.05):
    """One scene's detections: centres (top, 2), scores (top,), boxes (top, 7), kept (top,)."""
    a = anchor.reshape(-1, 7)
    scores, index = jax.lax.top_k(jax.nn.sigmoid(cls.reshape(-1)), top)
    a, r = a[index], box.reshape(-1, 7)[index]
    diagonal = jnp.hypot(a[:, 3], a[:, 4])
    yaw = a[:, 6] + r[:, 6]
    yaw = yaw - np.pi * jnp.floor(yaw / np.pi) + np.pi * jnp.argmax(dirs.reshape(-1, 2)[index], -1)
    boxes = jnp.column_stack(
        [
            a[:, 0] + r[:, 0] * diagonal,
            a[:, 1] + r[:, 1] * diagonal,
            a[:, 2] + r[:, 2] * a[:, 5],
            a[:, 3:6] * jnp.exp(jnp.minimum(r[:, 3:6], 3.0)),
            yaw,
        ]
    )
    centres = boxes[:, :2]
    near = jnp.linalg.norm(centres[:, None] - centres[None], axis=-1) < radius
    kept = detection.greedy_keep(scores, near, threshold)
    return centres, scores, boxes, kept


def _recipe(epochs: int, batch_size: int) -> Recipe:
    def optimizer(total_steps: int):
        schedule = optax.warmup_cosine_decay_schedule(
            1e-4, 2e-3, max(total_steps // 20, 1), max(total_steps, 2)
        )
        return optax.chain(optax.clip_by_global_norm(10.0), optax.adam(schedule))

    return Recipe(
        epochs, batch_size, optimizer, f"adam(warmup-cosine 2e-3, clip 10) x {epochs} epochs, bs {batch_size}"
    )


def problem(size: str = "default", seed: int = 0) -> Problem:
    """The PointPillars-lite problem at ``size`` (see ``SIZES``); ``seed`` fixes the scenes."""
    if size not in SIZES:
        raise ValueError(f"pointpillars_lite: unknown size {size!r}; valid: {sorted(SIZES)}")
    grid, pfn, widths, up, n_train, n_test, epochs = SIZES[size]
    anchor = anchors(grid)
    f_train, c_train, b_train, v_train = lidar_scenes.generate(n_train, 2 * seed, grid)
    f_test, c_test, b_test, v_test = lidar_scenes.generate(n_test, 2 * seed + 1, grid)
    label, residual, dir_target = targets(b_train, v_train, anchor)
    train = {
        "features": f_train,
        "cells": c_train,
        "label": label,
        "residual": residual,
        "direction": dir_target,
    }
    model = PointPillars(grid.cells, pfn, widths, up)
    head = anchor.shape[:3]
    expected = {
        "features": ((None, grid.max_pillars, grid.max_points, 9), "f"),
        "cells": ((None, grid.max_pillars), "i"),
        "label": ((None, *head), "i"),
        "residual": ((None, *head, 7), "f"),
        "direction": ((None, *head), "i"),
    }

    def init(key):
        variables = model.init(
            key,
            jnp.zeros((1, grid.max_pillars, grid.max_points, 9)),
            jnp.zeros((1, grid.max_pillars), jnp.int32),
        )
        return variables["params"], {"batch_stats": variables["batch_stats"]}

    def loss(params, state, batch, key):
        del key
        check_batch(batch, expected, "pointpillars_lite")
        (cls, box, dirs), updated = model.apply(
            {"params": params, **state},
            batch["features"],
            batch["cells"],
            train=True,
            mutable=["batch_stats"],
        )
        value = pillars_loss(cls, box, dirs, batch["label"], batch["residual"], batch["direction"])
        return value, ({"batch_stats": updated["batch_stats"]}, {})

    @jax.jit
    def _detect(params, state, features, cells):
        outputs = model.apply({"params": params, **state}, features, cells, train=False)
        return jax.vmap(lambda c, b, d: decode(c, b, d, jnp.asarray(anchor)))(*outputs)

    def evaluate(params, state):
        found = [[], [], []]
        for batch, valid in padded_batches({"features": f_test, "cells": c_test}, 50):
            centres, scores, _, kept = _detect(params, state, batch["features"], batch["cells"])
            for store, value in zip(found, (centres, scores, kept)):
                store.append(np.asarray(value)[:valid])
        centres, scores, kept = (np.concatenate(f) for f in found)
        ap = detection.centre_distance_ap(centres, scores, kept, b_test[..., :2], v_test)
        return {"bev_ap": ap, "detections_per_scene": float(kept.sum(1).mean())}

    def batches(split, key, batch_size):
        if split == "train":
            return epoch_batches(train, key, batch_size)
        raise ValueError(
            f"pointpillars_lite: batches are for training (split 'train'), got {split!r}; "
            "evaluate scores the test set"
        )

    groups = conv_groups(PRUNABLE)
    groups["pfn_unit"] = lambda s: spec([(r"^pfn/kernel$", Block((1,), s, axes=(1,)))])
    config = {
        "problem": "pointpillars_lite",
        "size": size,
        "grid": repr(grid),
        "pfn": pfn,
        "widths": widths,
        "up": up,
        "train": n_train,
        "test": n_test,
        "seed": seed,
        "data": data_digest(train),  # the cache key changes with the generated training data
    }
    return Problem(
        name="pointpillars_lite",
        size=size,
        config=config,
        init=init,
        loss=loss,
        batches=batches,
        evaluate=evaluate,
        metric="bev_ap",
        prunable=PRUNABLE,
        groups=groups,
        train_size=n_train,
        recipe=_recipe(epochs, 8),
    )

"""PointPillars' anchors, targets, loss and decoder (docs/problems.md, "pointpillars_lite").

Anchors are matched to cars by BEV IoU of axis-aligned boxes, the car box rotated to its nearest
axis (as SECOND/PointPillars do): positive ≥ 0.6 or the best anchor of a car, negative < 0.45,
ignored between. Residuals (Δx, Δy)/d with d the anchor diagonal, Δz/h_a, log size ratios, Δθ;
direction = whether the yaw lies in [0, π) or [π, 2π). Loss: focal (α 0.25, γ 2) + 2 · smooth-L1
(β 1/9; sin(Δθ_pred − Δθ) for the angle) + 0.2 · direction cross-entropy, each over the positive
count. Decoding: the 100 best anchors, greedy 1.5 m centre-distance NMS, score > 0.05.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .. import detection
from . import scenes as lidar_scenes
from .model import YAWS


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

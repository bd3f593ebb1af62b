"""YOLOv3's anchors, targets, loss and decoder (docs/problems.md, "yolo_tiny").

Each ground truth goes to the anchor of best shape IoU among all 6, in the cell holding its
centre; BCE on σ(tx), σ(ty) against the offsets in the cell, squared error on tw, th against
log(w/anchor), BCE objectness on every cell except unassigned predictions whose box already
overlaps a ground truth with IoU > 0.5 (YOLOv3's ignore rule), BCE per class; the sum over cells,
divided by the batch size. Targets are built once per dataset (two objects on one cell and
anchor: the later wins). Decoding: ((σ(tx)+cx)s, (σ(ty)+cy)s, a_w e^tw, a_h e^th), score
σ(obj)σ(cls), per-class NMS at IoU 0.45, confidence 0.05, the top 100 per image.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .. import detection

ANCHORS_128 = np.array([[10, 14], [16, 16], [24, 22], [30, 34], [40, 40], [54, 52]], np.float32)
STRIDES = (16, 16, 16, 32, 32, 32)  # of each anchor


def anchors(side: int) -> np.ndarray:
    return ANCHORS_128 * (side / 128)


def targets(boxes: np.ndarray, labels: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Per scale (stride 16, stride 32) an (N, G, G, 3, 6) array of [objectness, tx, ty, tw, th,
    class] at the best-shape anchor's cell of every ground truth."""
    a = anchors(side)
    grids = (side // 16, side // 32)
    out = [np.zeros((len(boxes), g, g, 3, 6), np.float32) for g in grids]
    image, slot = np.nonzero(labels >= 0)
    b = boxes[image, slot]
    wh = b[:, 2:] - b[:, :2]
    centre = (b[:, :2] + b[:, 2:]) / 2
    inter = np.minimum(wh[:, None, 0], a[:, 0]) * np.minimum(wh[:, None, 1], a[:, 1])
    best = np.argmax(inter / (wh.prod(1)[:, None] + a.prod(1) - inter), axis=1)
    for scale in (0, 1):
        sel = (best >= 3) == bool(scale)
        stride = 16 * 2**scale
        cell = np.clip(np.floor(centre[sel] / stride).astype(int), 0, grids[scale] - 1)
        offset = centre[sel] / stride - cell
        log_ratio = np.log(wh[sel] / a[best[sel]])
        values = np.column_stack([np.ones(sel.sum()), offset, log_ratio, labels[image[sel], slot[sel]]])
        out[scale][image[sel], cell[:, 1], cell[:, 0], best[sel] % 3] = values
    return out[0], out[1]


def yolo_loss(prediction, target, classes: int, ignore):
    """YOLOv3 loss of one scale: prediction (B, G, G, 3, 5+C) raw, target (B, G, G, 3, 6);
    ``ignore`` (B, G, G, 3): unassigned predictions exempt from the no-object loss."""
    bce = optax.sigmoid_binary_cross_entropy
    obj = target[..., 0]
    no_object_weight = jnp.where(ignore, 0.0, 1.0 - obj)
    coords = bce(prediction[..., 0], target[..., 1]) + bce(prediction[..., 1], target[..., 2])
    coords += (prediction[..., 2] - target[..., 3]) ** 2 + (prediction[..., 3] - target[..., 4]) ** 2
    onehot = jax.nn.one_hot(target[..., 5].astype(jnp.int32), classes)
    cls = bce(prediction[..., 5:], onehot).sum(-1)
    total = jnp.sum(obj * (coords + cls)) + jnp.sum((obj + no_object_weight) * bce(prediction[..., 4], obj))
    return total / prediction.shape[0]


def both_scales_loss(fine, coarse, batch, classes: int):
    """The YOLOv3 loss of a batch: both scales, each with its ignore rule."""
    a = jnp.asarray(anchors(batch["x"].shape[1]))
    value = 0.0
    for out, name, stride, scale_anchors in ((fine, "t16", 16, a[:3]), (coarse, "t32", 32, a[3:])):
        ignore = overlapping(out, stride, scale_anchors, batch["boxes"], batch["labels"])
        value += yolo_loss(out, batch[name], classes, ignore)
    return value


def overlapping(prediction, stride: int, scale_anchors, boxes, labels, threshold: float = 0.5):
    """(B, G, G, 3): predicted boxes whose IoU with some ground truth exceeds ``threshold``."""
    decoded = jax.vmap(lambda p: decode(p, stride, scale_anchors)[0])(jax.lax.stop_gradient(prediction))
    iou = jax.vmap(detection.box_iou)(decoded, boxes)
    best = jnp.max(jnp.where(labels[:, None, :] >= 0, iou, 0.0), -1)
    return (best > threshold).reshape(prediction.shape[:4])


def decode(prediction, stride: int, scale_anchors):
    """Boxes (P, 4) as (x1, y1, x2, y2) and class scores (P, C) of one image at one scale."""
    grid = prediction.shape[0]
    cy, cx = jnp.meshgrid(jnp.arange(grid), jnp.arange(grid), indexing="ij")
    centre_x = (jax.nn.sigmoid(prediction[..., 0]) + cx[..., None]) * stride
    centre_y = (jax.nn.sigmoid(prediction[..., 1]) + cy[..., None]) * stride
    w = scale_anchors[:, 0] * jnp.exp(jnp.minimum(prediction[..., 2], 4.0))
    h = scale_anchors[:, 1] * jnp.exp(jnp.minimum(prediction[..., 3], 4.0))
    boxes = jnp.stack([centre_x - w / 2, centre_y - h / 2, centre_x + w / 2, centre_y + h / 2], -1)
    scores = jax.nn.sigmoid(prediction[..., 4:5]) * jax.nn.sigmoid(prediction[..., 5:])
    return boxes.reshape(-1, 4), scores.reshape(-1, scores.shape[-1])


def detect(fine, coarse, side: int, top: int = 100):
    """Detections of a batch: boxes (B, top, 4), scores (B, top), labels (B, top; −1 empty)."""
    a = jnp.asarray(anchors(side))

    def one(f, c):
        b16, s16 = decode(f, 16, a[:3])
        b32, s32 = decode(c, 32, a[3:])
        boxes, scores = jnp.concatenate([b16, b32]), jnp.concatenate([s16, s32])
        return detection.per_class_nms(boxes, scores, 0.45, 0.05, top)

    return jax.vmap(one)(fine, coarse)

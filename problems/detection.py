"""Detection metrics shared by ``yolo_tiny`` and ``pointpillars_lite``: greedy NMS in JAX (jit,
vmapped over classes and images) and VOC all-point average precision, both vectorised.

Average precision (PASCAL VOC 2010+): detections of one class over all images in descending
score order; each detection's candidate is its best-matching ground truth in its image (highest
IoU, or nearest centre); it is a true positive when the match is good enough and no earlier
detection took that ground truth. Since the candidate does not depend on the order, "first in
score order per (image, candidate)" is a ``np.unique`` on the sorted keys — no Python loop. AP is
the area under the precision envelope (precision made non-increasing from the right) at every
recall step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def box_iou(a, b):
    """IoU of (x1, y1, x2, y2) boxes: every box of ``a`` (..., 4) against every box of ``b``
    (M, 4), shape (..., M); NumPy or JAX arrays, jit-able."""
    lo = jnp.maximum(a[..., None, :2], b[:, :2])
    hi = jnp.minimum(a[..., None, 2:], b[:, 2:])
    inter = jnp.prod(jnp.clip(hi - lo, 0), -1)
    area = lambda z: jnp.prod(z[..., 2:] - z[..., :2], -1)  # noqa: E731
    return inter / jnp.maximum(area(a)[..., None] + area(b) - inter, 1e-9)


def greedy_keep(scores, conflicts, score_threshold: float):
    """Greedy suppression: in descending score order, keep an item scoring above
    ``score_threshold`` unless it conflicts with a kept, higher-scoring one. ``conflicts`` (P, P)
    bool in the items' order. Returns a bool mask (P,)."""
    count = scores.shape[0]
    order = jnp.argsort(-scores, stable=True)
    clash = conflicts[order][:, order]
    ranked = scores[order]
    earlier = jnp.arange(count)[:, None] < jnp.arange(count)[None, :]

    def visit(i, keep):
        suppressed = jnp.any(keep & clash[:, i] & earlier[:, i])
        return keep.at[i].set((ranked[i] > score_threshold) & ~suppressed)

    keep = jax.lax.fori_loop(0, count, visit, jnp.zeros(count, bool))
    return jnp.zeros(count, bool).at[order].set(keep)


def nms_keep(boxes, scores, iou_threshold: float, score_threshold: float):
    """Greedy NMS: a box is suppressed by a kept, higher-scoring box with IoU > ``iou_threshold``."""
    return greedy_keep(scores, box_iou(boxes, boxes) > iou_threshold, score_threshold)


def per_class_nms(boxes, class_scores, iou_threshold: float, score_threshold: float, top: int):
    """Per-class NMS then the ``top`` best detections of one image.

    boxes (P, 4), class_scores (P, C) → (boxes (top, 4), scores (top,), labels (top,) with −1 for
    empty slots)."""
    keep = jax.vmap(nms_keep, in_axes=(None, 1, None, None), out_axes=1)(
        boxes, class_scores, iou_threshold, score_threshold
    )
    flat = jnp.where(keep, class_scores, -jnp.inf).reshape(-1)
    scores, index = jax.lax.top_k(flat, top)
    labels = jnp.where(jnp.isfinite(scores), index % class_scores.shape[1], -1)
    return boxes[index // class_scores.shape[1]], jnp.where(jnp.isfinite(scores), scores, 0.0), labels


def voc_ap(tp: np.ndarray, n_gt: int) -> float:
    """All-point AP of detections already sorted by descending score (``tp`` bool per detection)."""
    if n_gt == 0:
        return float("nan")
    hits = np.cumsum(tp)
    recall = np.concatenate([[0.0], hits / n_gt, [hits[-1] / n_gt if len(tp) else 0.0]])
    precision = np.concatenate([[1.0], hits / np.arange(1, len(tp) + 1), [0.0]])
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    return float(np.sum((recall[1:] - recall[:-1]) * envelope[1:]))


def average_precision(scores, images, candidates, good, n_gt: int) -> float:
    """AP of one class. Per detection: ``scores``, ``images`` (its image index), ``candidates``
    (the index of its best-matching ground truth in that image) and ``good`` (the match passes the
    IoU or distance threshold). ``n_gt``: ground truths of the class over all images."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    images, candidates, good = (
        np.asarray(images)[order],
        np.asarray(candidates)[order],
        np.asarray(good)[order],
    )
    tp = np.zeros(len(order), bool)
    hits = np.flatnonzero(good)
    keys = images[hits].astype(np.int64) * (int(candidates.max(initial=0)) + 1) + candidates[hits]
    _, first = np.unique(keys, return_index=True)
    tp[hits[first]] = True
    return voc_ap(tp, n_gt)


def box_mean_ap(det_boxes, det_scores, det_labels, gt_boxes, gt_labels, classes: int, threshold: float = 0.5):
    """VOC mAP@``threshold`` over ``classes``: detections (N, K, ·) with label −1 for empty slots,
    ground truths (N, M, ·) with label −1 for padding; the mean skips classes with no ground truth."""
    iou = np.asarray(jax.vmap(box_iou)(jnp.asarray(det_boxes), jnp.asarray(gt_boxes)))  # (N, K, M)
    aps = []
    for c in range(classes):
        same = np.where((gt_labels == c)[:, None, :], iou, -1.0)
        image, slot = np.nonzero(det_labels == c)
        best = same[image, slot]
        aps.append(
            average_precision(
                det_scores[image, slot],
                image,
                best.argmax(-1),
                best.max(-1, initial=-1.0) >= threshold,
                int(np.sum(gt_labels == c)),
            )
        )
    return float(np.nanmean(aps)) if not np.all(np.isnan(aps)) else 0.0


def centre_distance_ap(
    det_centres, det_scores, det_valid, gt_centres, gt_valid, thresholds=(0.5, 1.0, 2.0)
) -> float:
    """BEV centre-distance AP averaged over ``thresholds`` (metres): a detection (N, K, 2) matches
    its nearest ground-truth centre (N, M, 2) in its scene when that lies within the threshold."""
    distance = np.linalg.norm(det_centres[:, :, None, :] - gt_centres[:, None, :, :], axis=-1)
    distance = np.where(gt_valid[:, None, :], distance, np.inf)
    scene, slot = np.nonzero(det_valid)
    nearest = distance[scene, slot].argmin(-1)
    closest = distance[scene, slot].min(-1, initial=np.inf)
    n_gt = int(gt_valid.sum())
    aps = [average_precision(det_scores[scene, slot], scene, nearest, closest <= t, n_gt) for t in thresholds]
    return float(np.mean(aps))

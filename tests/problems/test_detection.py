"""Detection metrics: NMS and VOC AP against brute-force loops, and a hand-computed AP."""

import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from prunax.problems import detection


def _random_boxes(rng, n):
    xy = rng.uniform(0, 50, (n, 2))
    wh = rng.uniform(5, 30, (n, 2))
    return np.concatenate([xy, xy + wh], 1).astype(np.float32)


def _greedy_nms(boxes, scores, iou_threshold, score_threshold):
    keep = np.zeros(len(scores), bool)
    for i in np.argsort(-scores, kind="stable"):
        if scores[i] <= score_threshold:
            continue
        if not any(
            keep[j] and detection.box_iou(boxes[j][None], boxes[i][None])[0, 0] > iou_threshold
            for j in range(len(keep))
        ):
            keep[i] = True
    return keep


@settings(max_examples=20)
@given(seed=st.integers(0, 2**31 - 1))
def test_nms_matches_a_greedy_loop(seed):
    rng = np.random.default_rng(seed)
    boxes, scores = _random_boxes(rng, 24), rng.uniform(0, 1, 24).astype(np.float32)
    keep = np.asarray(detection.nms_keep(jnp.asarray(boxes), jnp.asarray(scores), 0.45, 0.2))
    np.testing.assert_array_equal(keep, _greedy_nms(boxes, scores, 0.45, 0.2))


def _voc_loop(det_boxes, det_scores, det_labels, gt_boxes, gt_labels, c, threshold):
    """The PASCAL VOC devkit procedure, one detection at a time."""
    dets = [
        (s, i, b)
        for i in range(len(det_boxes))
        for b, s, label in zip(det_boxes[i], det_scores[i], det_labels[i])
        if label == c
    ]
    dets.sort(key=lambda d: -d[0])
    taken = {i: np.zeros(len(gt_boxes[i]), bool) for i in range(len(gt_boxes))}
    tp = []
    for _, i, b in dets:
        ious = np.where(gt_labels[i] == c, np.asarray(detection.box_iou(b[None], gt_boxes[i]))[0], -1)
        j = int(np.argmax(ious))
        hit = ious[j] >= threshold and not taken[i][j]
        if hit:
            taken[i][j] = True
        tp.append(hit)
    return detection.voc_ap(np.array(tp, bool), int(np.sum(gt_labels == c)))


@settings(max_examples=20)
@given(seed=st.integers(0, 2**31 - 1))
def test_vectorised_average_precision_matches_the_devkit_loop(seed):
    rng = np.random.default_rng(seed)
    n, k, m, classes = 5, 12, 4, 2
    gt_boxes = np.stack([_random_boxes(rng, m) for _ in range(n)])
    gt_labels = rng.integers(-1, classes, (n, m))
    # detections: jittered ground truths (some duplicates) and random boxes
    det_boxes = np.stack(
        [
            np.concatenate(
                [
                    gt_boxes[i][rng.integers(0, m, k // 2)] + rng.normal(0, 3, (k // 2, 4)),
                    _random_boxes(rng, k - k // 2),
                ]
            )
            for i in range(n)
        ]
    ).astype(np.float32)
    det_scores = rng.uniform(0, 1, (n, k)).astype(np.float32)
    det_labels = rng.integers(-1, classes, (n, k))
    expected = [
        _voc_loop(det_boxes, det_scores, det_labels, gt_boxes, gt_labels, c, 0.5) for c in range(classes)
    ]
    got = detection.box_mean_ap(det_boxes, det_scores, det_labels, gt_boxes, gt_labels, classes, 0.5)
    np.testing.assert_allclose(
        got, np.nanmean(expected) if not np.all(np.isnan(expected)) else 0.0, atol=1e-9
    )


def test_voc_ap_by_hand():
    # two ground truths; detections TP, FP, TP: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1
    assert np.isclose(detection.voc_ap(np.array([True, False, True]), 2), 0.5 * 1 + 0.5 * (2 / 3))
    assert detection.voc_ap(np.array([False, False]), 1) == 0.0
    assert np.isnan(detection.voc_ap(np.array([], bool), 0))

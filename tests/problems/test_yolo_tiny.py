"""The yolo_tiny problem: targets, decoding, the mirror augmentation and the ignore rule, and the
synthetic shapes; perfect predictions must score mAP 1."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prunax import problems
from prunax.problems import detection
from prunax.problems import yolo_tiny as yt
from prunax.problems.yolo_tiny import shapes


@pytest.fixture(scope="module")
def problem():
    return problems.get("yolo_tiny", "test")


def test_protocol_on_the_test_size(problem):
    params, state = problem.init(jax.random.key(0))
    batch = next(problem.batches("train", jax.random.key(1), 8))
    assert batch["x"].shape == (8, 64, 64, 3) and batch["t16"].shape == (8, 4, 4, 3, 6)
    loss, (new_state, _) = jax.jit(problem.loss)(params, state, batch, jax.random.key(2))
    assert np.isfinite(float(loss))
    assert jax.tree_util.tree_structure(new_state) == jax.tree_util.tree_structure(state)
    metrics = problem.evaluate(params, state)
    assert 0 <= metrics["mAP@0.5"] <= 1
    for path, prunable in [
        ("cbl1/conv/kernel", False),
        ("cbl2/conv/kernel", True),
        ("cbl11/conv/kernel", True),
        ("out16/kernel", False),
    ]:
        assert bool(re.search(problem.prunable, path)) == prunable, path
    with pytest.raises(ValueError, match=r"batch\['t16'\]"):
        problem.loss(params, state, {**batch, "t16": batch["t32"]}, jax.random.key(0))


def _perfect_logits(t16, t32, classes):
    """Raw head outputs that decode exactly to the targets (objectness and class logits ±20)."""
    out = []
    for t in (t16, t32):
        offset = np.clip(t[..., 1:3], 1e-6, 1 - 1e-6)
        obj = np.where(t[..., :1] > 0, 20.0, -20.0)
        cls = np.where(np.eye(classes)[t[..., 5].astype(int)] > 0, 20.0, -20.0)
        out.append(
            np.concatenate([np.log(offset / (1 - offset)), t[..., 3:5], obj, cls], -1).astype(np.float32)
        )
    return out


def test_perfect_predictions_decode_to_the_ground_truth_and_score_map_one():
    side = 128
    images, boxes, labels = shapes.generate(40, seed=5, side=side)
    t16, t32 = yt.targets(boxes, labels, side)
    # two objects on one cell and anchor keep only the later: use the images without a collision
    whole = (t16[..., 0].sum((1, 2, 3)) + t32[..., 0].sum((1, 2, 3))) == (labels >= 0).sum(1)
    assert whole.mean() > 0.8
    fine, coarse = _perfect_logits(t16[whole], t32[whole], 3)
    found = yt.detect(jnp.asarray(fine), jnp.asarray(coarse), side)
    det_boxes, det_scores, det_labels = (np.asarray(v) for v in found)
    assert detection.box_mean_ap(det_boxes, det_scores, det_labels, boxes[whole], labels[whole], 3) == 1.0
    for i in range(len(det_boxes)):
        got = det_boxes[i][det_labels[i] >= 0]
        want = boxes[whole][i][labels[whole][i] >= 0]
        assert len(got) == len(want)
        np.testing.assert_allclose(np.sort(got, 0), np.sort(want, 0), atol=1e-3)


def test_mirroring_flips_images_targets_and_boxes_consistently():
    side = 64
    images, boxes, labels = shapes.generate(16, seed=2, side=side)
    t16, t32 = yt.targets(boxes, labels, side)
    batch = {"x": images, "t16": t16, "t32": t32, "boxes": boxes, "labels": labels}
    out = {k: np.asarray(v) for k, v in yt.mirrored(batch, jax.random.key(3)).items()}
    flipped = ~np.all(out["x"] == images, axis=(1, 2, 3))
    assert 0 < flipped.sum() < 16
    np.testing.assert_array_equal(out["x"][flipped], images[flipped][:, :, ::-1])
    e16, e32 = yt.targets(out["boxes"], labels, side)
    for got, want in ((out["t16"], e16), (out["t32"], e32)):
        obj = want[..., 0] > 0
        np.testing.assert_array_equal(got[..., 0], want[..., 0])
        np.testing.assert_allclose(got[obj], want[obj], atol=1e-5)


def test_ignore_rule_exempts_predictions_that_already_overlap_a_ground_truth():
    a = jnp.asarray(yt.anchors(128))
    boxes = jnp.array([[[40.0, 40.0, 70.0, 74.0], [0, 0, 0, 0]]])
    labels = jnp.array([[1, -1]])
    prediction = jnp.zeros((1, 4, 4, 3, 8))
    # cell (1, 1) at stride 32 centres (48, 48) with sigmoid(0) = 0.5; anchor 1 is 40×40
    prediction = prediction.at[0, 1, 1, 1, 0:2].set(
        jnp.log(np.array([(55 / 32 - 1) / (1 - (55 / 32 - 1))] * 2))
    )
    prediction = prediction.at[0, 1, 1, 1, 2].set(jnp.log(30 / 40)).at[0, 1, 1, 1, 3].set(jnp.log(34 / 40))
    ignore = np.asarray(yt.overlapping(prediction, 32, a[3:], boxes, labels))
    assert ignore[0, 1, 1, 1] and ignore.sum() == 1


def test_shapes_are_in_frame_sized_and_barely_overlapping():
    images, boxes, labels = shapes.generate(50, seed=1)
    assert images.shape == (50, 128, 128, 3) and images.dtype == np.float32
    valid = labels >= 0
    assert np.all(valid[:, 0]) and set(np.unique(labels[valid])) == {0, 1, 2}
    b = boxes[valid]
    assert np.all(b[:, :2] >= 0) and np.all(b[:, 2:] <= 128)
    size = b[:, 2:] - b[:, :2]
    assert np.all((size >= 12) & (size <= 56))
    for i in range(50):
        own = boxes[i][valid[i]]
        iou = np.asarray(detection.box_iou(own, own))
        assert np.all(iou[~np.eye(len(own), dtype=bool)] < 0.2)
    np.testing.assert_array_equal(shapes.generate(3, seed=1)[1], boxes[:3])  # seeded, image by image

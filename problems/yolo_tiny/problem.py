"""``yolo_tiny``: YOLOv3-tiny (darknet layout, widths × w) detecting synthetic shapes, mAP@0.5.

Backbone of CBL blocks (conv 3×3 + BatchNorm + leaky ReLU 0.1): 16 → mp → 32 → mp → 64 → mp → 128
→ mp → 256 (route r26, stride 16) → mp → 512 → mp(2, stride 1) → 1024 → 256 (1×1) = r (stride 32).
Heads: stride 32 = CBL 512 → 1×1 conv with 3(5+C) outputs; stride 16 = CBL 128 (1×1) on r →
upsample ×2 → concat r26 → CBL 256 → 1×1 conv. Channels are scaled by ``width``. Training
mirrors each image left-right with probability ½ (the loss's key; the shapes are symmetric).

Loss as YOLOv3 (docs/problems.md, "yolo_tiny"): each ground truth goes to the anchor of best shape IoU among all 6,
in the cell holding its centre; BCE on σ(tx), σ(ty) against the offsets in the cell, squared error
on tw, th against log(w/anchor), BCE objectness on every cell except unassigned predictions whose
box already overlaps a ground truth with IoU > 0.5 (YOLOv3's ignore rule), BCE per class; the sum
over cells, divided by the batch size. Targets are built once per dataset (two objects on one
cell and anchor: the later wins). Decoding: ((σ(tx)+cx)s, (σ(ty)+cy)s, a_w e^tw, a_h e^th), score
σ(obj)σ(cls), per-class NMS at IoU 0.45, confidence 0.05, the top 100 per image. Pruned by default:
every CBL conv but the first (the two 1×1 output convs stay dense, as in the seed papers).
"""

from __future__ import annotations

from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .. import detection
from .._groups import conv_groups
from .._protocol import Problem, Recipe, check_batch, data_digest, epoch_batches, padded_batches
from . import shapes

# size -> (image side, width multiplier, train images, test images, epochs)
SIZES = {
    "test": (64, 0.125, 256, 64, 2),
    "default": (128, 0.25, 2000, 400, 12),
}
ANCHORS_128 = np.array([[10, 14], [16, 16], [24, 22], [30, 34], [40, 40], [54, 52]], np.float32)
STRIDES = (16, 16, 16, 32, 32, 32)  # of each anchor
PRUNABLE = r"^cbl([2-9]|1[01])/conv/kernel$"
_BN = partial(nn.BatchNorm, momentum=0.9, epsilon=1e-5)


class CBL(nn.Module):
    features: int
    size: int = 3

    @nn.compact
    def __call__(self, x, train: bool):
        x = nn.Conv(self.features, (self.size, self.size), padding="SAME", use_bias=False, name="conv")(x)
        return nn.leaky_relu(_BN(use_running_average=not train, name="bn")(x), 0.1)


class YoloTiny(nn.Module):
    width: float
    classes: int

    @nn.compact
    def __call__(self, x, train: bool = False):
        ch = lambda c: max(int(round(c * self.width)), 4)  # noqa: E731
        pool = lambda z: nn.max_pool(z, (2, 2), (2, 2))  # noqa: E731
        for i, c in enumerate((16, 32, 64, 128)):
            x = pool(CBL(ch(c), name=f"cbl{i + 1}")(x, train))
        r26 = CBL(ch(256), name="cbl5")(x, train)
        x = CBL(ch(512), name="cbl6")(pool(r26), train)
        x = nn.max_pool(x, (2, 2), (1, 1), padding=((0, 1), (0, 1)))
        r = CBL(ch(256), 1, name="cbl8")(CBL(ch(1024), name="cbl7")(x, train), train)
        outputs = 3 * (5 + self.classes)
        coarse = nn.Conv(outputs, (1, 1), name="out32")(CBL(ch(512), name="cbl9")(r, train))
        up = jnp.repeat(jnp.repeat(CBL(ch(128), 1, name="cbl10")(r, train), 2, 1), 2, 2)
        fine = nn.Conv(outputs, (1, 1), name="out16")(
            CBL(ch(256), name="cbl11")(jnp.concatenate([up, r26], -1), train)
        )
        shape = lambda z: z.reshape(z.shape[:3] + (3, 5 + self.classes))  # noqa: E731
        return shape(fine), shape(coarse)


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


def overlapping(prediction, stride: int, scale_anchors, boxes, labels, threshold: float = 0.5):
    """(B, G, G, 3): predicted boxes whose IoU with some ground truth exceeds ``threshold``."""
    decoded = jax.vmap(lambda p: decode(p, stride, scale_anchors)[0])(jax.lax.stop_gradient(prediction))
    iou = jax.vmap(detection.box_iou)(decoded, boxes)
    best = jnp.max(jnp.where(labels[:, None, :] >= 0, iou, 0.0), -1)
    return (best > threshold).reshape(prediction.shape[:4])


def mirrored(batch, key):
    """Flip each example left-right with probability ½: the image, the target grids, and the x
    offsets (a centre at (cx + tx)·s moves to (G − cx − tx)·s = (G−1−cx + 1−tx)·s)."""
    flip = jax.random.bernoulli(key, 0.5, (batch["x"].shape[0],))
    pick = lambda a, b: jnp.where(flip.reshape((-1,) + (1,) * (a.ndim - 1)), b, a)  # noqa: E731
    side = batch["x"].shape[2]
    boxes = batch["boxes"]
    flipped = jnp.stack([side - boxes[..., 2], boxes[..., 1], side - boxes[..., 0], boxes[..., 3]], -1)
    out = {
        "x": pick(batch["x"], batch["x"][:, :, ::-1]),
        "boxes": pick(boxes, flipped),
        "labels": batch["labels"],
    }
    for name in ("t16", "t32"):
        t = jnp.asarray(batch[name])[:, :, ::-1]
        out[name] = pick(batch[name], t.at[..., 1].set(1 - t[..., 1]))
    return out


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


def _adam_recipe(epochs: int) -> Recipe:
    def optimizer(total_steps: int):
        schedule = optax.warmup_cosine_decay_schedule(
            1e-4, 5e-3, max(total_steps // 20, 1), max(total_steps, 2)
        )
        return optax.chain(optax.clip_by_global_norm(10.0), optax.adam(schedule))

    return Recipe(epochs, 32, optimizer, f"adam(warmup-cosine 5e-3, clip 10) x {epochs} epochs, bs 32")


def problem(size: str = "default", seed: int = 0) -> Problem:
    """The YOLO-tiny problem at ``size`` (see ``SIZES``); ``seed`` fixes the generated images."""
    if size not in SIZES:
        raise ValueError(f"yolo_tiny: unknown size {size!r}; valid: {sorted(SIZES)}")
    side, width, n_train, n_test, epochs = SIZES[size]
    classes = len(shapes.CLASSES)
    x_train, boxes_train, labels_train = shapes.generate(n_train, seed=2 * seed, side=side)
    x_test, boxes_test, labels_test = shapes.generate(n_test, seed=2 * seed + 1, side=side)
    t16, t32 = targets(boxes_train, labels_train, side)
    train = {"x": x_train, "t16": t16, "t32": t32, "boxes": boxes_train, "labels": labels_train}
    model = YoloTiny(width, classes)
    expected = {
        "x": ((None, side, side, 3), "f"),
        "t16": ((None, side // 16, side // 16, 3, 6), "f"),
        "t32": ((None, side // 32, side // 32, 3, 6), "f"),
        "boxes": ((None, shapes.MAX_OBJECTS, 4), "f"),
        "labels": ((None, shapes.MAX_OBJECTS), "i"),
    }
    a = jnp.asarray(anchors(side))

    def init(key):
        variables = model.init(key, jnp.zeros((1, side, side, 3), jnp.float32), train=False)
        return variables["params"], {"batch_stats": variables["batch_stats"]}

    def loss(params, state, batch, key):
        check_batch(batch, expected, "yolo_tiny")
        batch = mirrored(batch, key)
        (fine, coarse), updated = model.apply(
            {"params": params, **state}, batch["x"], train=True, mutable=["batch_stats"]
        )
        value = 0.0
        for out, name, stride, scale_anchors in ((fine, "t16", 16, a[:3]), (coarse, "t32", 32, a[3:])):
            ignore = overlapping(out, stride, scale_anchors, batch["boxes"], batch["labels"])
            value += yolo_loss(out, batch[name], classes, ignore)
        return value, ({"batch_stats": updated["batch_stats"]}, {})

    @jax.jit
    def _detect(params, state, x):
        return detect(*model.apply({"params": params, **state}, x, train=False), side)

    def evaluate(params, state):
        found = [[], [], []]
        for batch, valid in padded_batches({"x": x_test}, 100):
            for store, value in zip(found, _detect(params, state, batch["x"])):
                store.append(np.asarray(value)[:valid])
        boxes, scores, labels = (np.concatenate(f) for f in found)
        score = detection.box_mean_ap(boxes, scores, labels, boxes_test, labels_test, classes, 0.5)
        return {"mAP@0.5": score, "detections_per_image": float(np.mean(np.sum(labels >= 0, 1)))}

    def batches(split, key, batch_size):
        if split == "train":
            return epoch_batches(train, key, batch_size)
        raise ValueError(
            f"yolo_tiny: batches are for training (split 'train'), got {split!r}; evaluate scores the test"
        )

    config = {
        "problem": "yolo_tiny",
        "size": size,
        "side": side,
        "width": width,
        "train": n_train,
        "test": n_test,
        "seed": seed,
        "data": data_digest(train),  # the cache key changes with the generated training data
    }
    return Problem(
        name="yolo_tiny",
        size=size,
        config=config,
        init=init,
        loss=loss,
        batches=batches,
        evaluate=evaluate,
        metric="mAP@0.5",
        prunable=PRUNABLE,
        groups=conv_groups(PRUNABLE),
        train_size=n_train,
        recipe=_adam_recipe(epochs),
    )

"""``yolo_tiny``: YOLOv3-tiny (``model``) detecting synthetic shapes (``shapes``), mAP@0.5.

The data, the mirror augmentation and the problem factory; the loss and decoder are in ``loss``.
Training mirrors each image left-right with probability ½ (the loss's key; the shapes are
symmetric). Pruned by default: every CBL conv but the first (the two 1×1 output convs stay dense,
as in the seed papers). Coupled structure ``filters``: each CBL's filters with their BatchNorm
(scale, bias, running statistics) and the input slices of every conv that reads them — cbl5's
feed cbl6 and, after the upsampled cbl10 output in the concatenation, cbl11 — removed by
``compact`` (per-layer widths in the smaller model's config).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from .. import detection
from .._batching import padded_map, select
from .._compaction import Compacted, coupled_structure, kept_channels, take_channels
from .._factory import assemble, size_entry
from .._groups import conv_groups
from .._protocol import Problem, check_batch, data_digest
from .._recalibration import recalibration
from .._recipes import adam_recipe
from . import shapes
from .loss import both_scales_loss, detect, targets
from .model import YoloTiny

# size -> (image side, width multiplier, train images, test images, epochs)
SIZES = {
    "test": (64, 0.125, 256, 64, 2),
    "default": (128, 0.25, 2000, 400, 12),
}
PRUNABLE = r"^cbl([2-9]|1[01])/conv/kernel$"


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


def dataset(count: int, seed: int, side: int) -> dict[str, np.ndarray]:
    """``count`` generated images with their boxes, labels and both target grids."""
    x, boxes, labels = shapes.generate(count, seed=seed, side=side)
    t16, t32 = targets(boxes, labels, side)
    return {"x": x, "t16": t16, "t32": t32, "boxes": boxes, "labels": labels}


def _closures(model: YoloTiny, splits: dict):
    """``(init, loss, evaluate)`` of the detector over ``splits``."""
    side, classes = splits["train"]["x"].shape[1], model.classes
    expected = {
        "x": ((None, side, side, 3), "f"),
        "t16": ((None, side // 16, side // 16, 3, 6), "f"),
        "t32": ((None, side // 32, side // 32, 3, 6), "f"),
        "boxes": ((None, shapes.MAX_OBJECTS, 4), "f"),
        "labels": ((None, shapes.MAX_OBJECTS), "i"),
    }

    def init(key):
        variables = model.init(key, jnp.zeros((1, side, side, 3), jnp.float32), train=False)
        return variables["params"], {"batch_stats": variables["batch_stats"]}

    def loss(params, state, batch, key):
        check_batch(batch, expected, "yolo_tiny")
        batch = mirrored(batch, key)
        (fine, coarse), updated = model.apply(
            {"params": params, **state}, batch["x"], train=True, mutable=["batch_stats"]
        )
        return both_scales_loss(fine, coarse, batch, classes), ({"batch_stats": updated["batch_stats"]}, {})

    @jax.jit
    def _detect(params, state, x):
        return detect(*model.apply({"params": params, **state}, x, train=False), side)

    def evaluate(params, state, split: str = "test"):
        arrays = select("yolo_tiny", splits, split)
        run = lambda batch: _detect(params, state, batch["x"])  # noqa: E731
        boxes, scores, labels = padded_map(run, {"x": arrays["x"]}, 100)
        score = detection.box_mean_ap(boxes, scores, labels, arrays["boxes"], arrays["labels"], classes, 0.5)
        return {"mAP@0.5": score, "detections_per_image": float(np.mean(np.sum(labels >= 0, 1)))}

    def forward(params, state, batch):
        return model.apply({"params": params, **state}, batch["x"], train=False)

    return init, loss, evaluate, forward


# cbl k -> the convs that read its output (cbl11 reads [upsampled cbl10, cbl5] concatenated)
_READERS = {
    1: ["cbl2"],
    2: ["cbl3"],
    3: ["cbl4"],
    4: ["cbl5"],
    5: ["cbl6", "cbl11"],
    6: ["cbl7"],
    7: ["cbl8"],
}
_READERS |= {8: ["cbl9", "cbl10"], 9: ["out32"], 10: ["cbl11"], 11: ["out16"]}


def filter_couplings(widths: tuple[int, ...]) -> dict:
    """{"cbl<k>/filters": members} for the CBL widths ``widths`` (cbl1 .. cbl11)."""
    out = {}
    for k, readers in _READERS.items():
        members = [(f"cbl{k}/conv/kernel", 3), (f"cbl{k}/bn/scale", 0), (f"cbl{k}/bn/bias", 0)]
        for reader in readers:
            conv = "" if reader.startswith("out") else "/conv"
            start = {10: 0, 5: widths[9]}[k] if reader == "cbl11" else None
            members.append(
                (f"{reader}{conv}/kernel", 2, 1, start)
                if start is not None
                else (f"{reader}{conv}/kernel", 2)
            )
        out[f"cbl{k}/filters"] = members
    return out


def _statistics() -> dict:
    return {f"cbl{k}/filters": [(f"batch_stats/cbl{k}/bn/{s}", 0) for s in ("mean", "var")] for k in _READERS}


def _forward(model: YoloTiny) -> Callable:
    """The training-mode pass that recalibration intercepts (unaugmented images)."""
    return lambda variables, batch: model.apply(variables, batch["x"], train=True, mutable=["batch_stats"])


def problem(size: str = "default", seed: int = 0) -> Problem:
    """The YOLO-tiny problem at ``size`` (see ``SIZES``); ``seed`` fixes the generated images."""
    side, width, n_train, n_test, epochs = size_entry("yolo_tiny", SIZES, size)
    splits = {"train": dataset(n_train, 2 * seed, side), "test": dataset(n_test, 2 * seed + 1, side)}
    config = {
        "side": side,
        "width": width,
        "train": n_train,
        "test": n_test,
        "seed": seed,
        "data": data_digest(splits["train"]),  # the cache key changes with the generated training data
    }
    recipe = adam_recipe(5e-3, epochs, 32, schedule="warmup-cosine", clip=10.0)
    return _assembled(size, config, splits, YoloTiny(width, len(shapes.CLASSES)), recipe)


def _assembled(size: str, config: dict, splits: dict, model: YoloTiny, recipe) -> Problem:
    """The Problem of ``model`` (also a compacted one) over ``splits``."""
    *closures, forward = _closures(model, splits)
    couplings = filter_couplings(model.widths())

    def compact(params, state):
        kept = kept_channels(params, couplings)
        widths = {"channels": tuple(int(kept[f"cbl{k}/filters"].sum()) for k in _READERS)}
        smaller = _assembled(
            size,
            {**config, **widths},
            splits,
            YoloTiny(model.width, model.classes, widths["channels"]),
            recipe,
        )
        return Compacted(
            take_channels(params, couplings, kept, "params"),
            take_channels(state, _statistics(), kept, "state"),
            widths,
            smaller,
        )

    return assemble(
        "yolo_tiny",
        size,
        config,
        splits,
        tuple(closures),
        metric="mAP@0.5",
        prunable=PRUNABLE,
        recipe=recipe,
        groups=conv_groups(PRUNABLE),
        recalibrate=recalibration("yolo_tiny", _forward(model), closures[0], splits["train"]),
        coupled={"filters": coupled_structure(couplings)},
        forward=forward,
        compact=compact,
    )

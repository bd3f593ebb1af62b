"""``pointpillars_lite``: a small PointPillars (``model``) detecting cars in synthetic LiDAR
scenes (``scenes``), BEV AP (docs/problems.md, "pointpillars_lite").

The data and the problem factory; anchors, targets, loss and decoder are in ``loss``. The metric
is BEV centre-distance AP averaged over 0.5, 1 and 2 m. Pruned by default: the backbone convs
(the pillar net, deconvs and head stay dense). Coupled structures, removed by ``compact``:
``filters``, the backbone's — each conv's filters with their BatchNorm and the input slices of
the convs that read them (a block's conv2 feeds the next block and its deconv) — and
``channels``, those plus the pillar net's units (read by block 1) and each deconv's filters (read
by the three heads from their range of the concatenation).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from prunax.constraints import Block, spec

from .. import detection
from .._batching import padded_map, select
from .._compaction import Compacted, coupled_structure, kept_channels, take_channels
from .._factory import assemble, size_entry
from .._groups import conv_groups
from .._protocol import Problem, check_batch, data_digest
from .._recalibration import recalibration
from .._recipes import adam_recipe
from . import scenes as lidar_scenes
from .loss import anchors, decode, pillars_loss, targets
from .model import PointPillars

# size -> (grid, PFN width, block widths, upsampled width, train scenes, test scenes, epochs)
SIZES = {
    "test": (lidar_scenes.PillarGrid(pillar=0.8, max_pillars=256), 16, (16, 32, 64), 32, 64, 16, 2),
    "default": (lidar_scenes.PillarGrid(), 32, (32, 64, 128), 64, 600, 150, 15),
}
PRUNABLE = r"^block\d/conv\d/kernel$"


def dataset(count: int, seed: int, grid: lidar_scenes.PillarGrid, anchor: np.ndarray):
    """``count`` generated scenes: the batch arrays (pillars, their cells, the anchor targets) and
    the ground truth ``(boxes, valid)`` that ``evaluate`` scores against."""
    features, cells, boxes, valid = lidar_scenes.generate(count, seed, grid)
    label, residual, dir_target = targets(boxes, valid, anchor)
    arrays = {
        "features": features,
        "cells": cells,
        "label": label,
        "residual": residual,
        "direction": dir_target,
    }
    return arrays, (boxes, valid)


def _closures(
    model: PointPillars, grid: lidar_scenes.PillarGrid, anchor: np.ndarray, splits: dict, truth: dict
):
    """``(init, loss, evaluate)`` of the detector over ``splits``, scored against ``truth``."""
    head = anchor.shape[:3]
    expected = {
        "features": ((None, grid.max_pillars, grid.max_points, 9), "f"),
        "cells": ((None, grid.max_pillars), "i"),
        "label": ((None, *head), "i"),
        "residual": ((None, *head, 7), "f"),
        "direction": ((None, *head), "i"),
    }

    def init(key):
        features = jnp.zeros((1, grid.max_pillars, grid.max_points, 9))
        variables = model.init(key, features, jnp.zeros((1, grid.max_pillars), jnp.int32))
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

    def evaluate(params, state, split: str = "test"):
        arrays = select("pointpillars_lite", splits, split)
        boxes, valid = truth[split]
        run = lambda batch: _detect(params, state, batch["features"], batch["cells"])  # noqa: E731
        centres, scores, _, kept = padded_map(run, {k: arrays[k] for k in ("features", "cells")}, 50)
        ap = detection.centre_distance_ap(centres, scores, kept, boxes[..., :2], valid)
        return {"bev_ap": ap, "detections_per_scene": float(kept.sum(1).mean())}

    def forward(params, state, batch):
        return model.apply({"params": params, **state}, batch["features"], batch["cells"], train=False)

    return init, loss, evaluate, forward


_HEADS = ("head_cls", "head_box", "head_dir")


def _filter(conv: str, bn: str, axis: int = 3) -> list:
    return [(f"{conv}/kernel", axis), (f"{bn}/scale", 0), (f"{bn}/bias", 0)]


def backbone_couplings(blocks: int) -> dict:
    """{"block<i>/conv<j>": members}: the backbone's filters, their BatchNorms and readers."""
    out = {}
    for i in range(1, blocks + 1):
        b = f"block{i}"
        out[f"{b}/conv1"] = [*_filter(f"{b}/conv1", f"{b}/bn1"), (f"{b}/conv2/kernel", 2)]
        readers = [(f"up{i}/kernel", 2)] + ([(f"block{i + 1}/conv1/kernel", 2)] if i < blocks else [])
        out[f"{b}/conv2"] = [*_filter(f"{b}/conv2", f"{b}/bn2"), *readers]
    return out


def channel_couplings(model: PointPillars) -> dict:
    """``backbone_couplings`` plus the pillar net's units and each deconv's filters."""
    ups = model.ups or (model.up,) * len(model.widths)
    out = {"pfn/units": [*_filter("pfn", "pfn_bn", 1), ("block1/conv1/kernel", 2)]}
    for i, start in enumerate(np.cumsum((0, *ups[:-1]))):
        out[f"up{i + 1}/filters"] = [*_filter(f"up{i + 1}", f"up{i + 1}_bn")] + [
            (f"{h}/kernel", 2, 1, int(start)) for h in _HEADS
        ]
    return out | backbone_couplings(len(model.widths))


def _statistics(couplings: dict) -> dict:
    """The running statistics of the BatchNorm in each coupling."""
    return {
        name: [
            (f"batch_stats/{p[: -len('/scale')]}/{s}", 0)
            for p, *_ in members
            if p.endswith("/scale")
            for s in ("mean", "var")
        ]
        for name, members in couplings.items()
    }


def _forward(model: PointPillars) -> Callable:
    """The training-mode pass that recalibration intercepts."""

    def forward(variables, batch):
        return model.apply(variables, batch["features"], batch["cells"], train=True, mutable=["batch_stats"])

    return forward


def problem(size: str = "default", seed: int = 0) -> Problem:
    """The PointPillars-lite problem at ``size`` (see ``SIZES``); ``seed`` fixes the scenes."""
    grid, pfn, widths, up, n_train, n_test, epochs = size_entry("pointpillars_lite", SIZES, size)
    anchor = anchors(grid)
    train, train_truth = dataset(n_train, 2 * seed, grid, anchor)
    test, test_truth = dataset(n_test, 2 * seed + 1, grid, anchor)
    splits, truth = {"train": train, "test": test}, {"train": train_truth, "test": test_truth}
    config = {
        "grid": repr(grid),
        "pfn": pfn,
        "widths": widths,
        "up": up,
        "train": n_train,
        "test": n_test,
        "seed": seed,
        "data": data_digest(train),  # the cache key changes with the generated training data
    }
    recipe = adam_recipe(2e-3, epochs, 8, schedule="warmup-cosine", clip=10.0)
    model = PointPillars(grid.cells, pfn, widths, up)
    return _assembled(size, config, splits, truth, model, grid, anchor, recipe)


def _assembled(size, config, splits, truth, model: PointPillars, grid, anchor, recipe) -> Problem:
    """The Problem of ``model`` (also a compacted one) over ``splits``."""
    *closures, forward = _closures(model, grid, anchor, splits, truth)
    groups = conv_groups(PRUNABLE)
    groups["pfn_unit"] = lambda s: spec([(r"^pfn/kernel$", Block((1,), s, axes=(1,)))])
    couplings = channel_couplings(model)

    def compact(params, state):
        kept = kept_channels(params, couplings)
        count = lambda name: int(kept[name].sum())  # noqa: E731
        blocks = range(1, len(model.widths) + 1)
        widths = {
            "pfn": count("pfn/units"),
            "widths": tuple(count(f"block{i}/conv2") for i in blocks),
            "inner": tuple(count(f"block{i}/conv1") for i in blocks),
            "ups": tuple(count(f"up{i}/filters") for i in blocks),
        }
        smaller_model = PointPillars(model.cells, **widths, up=model.up)
        smaller = _assembled(size, {**config, **widths}, splits, truth, smaller_model, grid, anchor, recipe)
        return Compacted(
            take_channels(params, couplings, kept, "params"),
            take_channels(state, _statistics(couplings), kept, "state"),
            widths,
            smaller,
        )

    return assemble(
        "pointpillars_lite",
        size,
        config,
        splits,
        tuple(closures),
        metric="bev_ap",
        prunable=PRUNABLE,
        recipe=recipe,
        groups=groups,
        recalibrate=recalibration("pointpillars_lite", _forward(model), closures[0], splits["train"]),
        coupled={
            "filters": coupled_structure(backbone_couplings(len(model.widths))),
            "channels": coupled_structure(couplings),
        },
        forward=forward,
        compact=compact,
    )

"""``resnet``: CIFAR-style ResNet-(6n+2) and a small ResNet-18 layout on real digit images
(docs/problems.md, "resnet"). BatchNorm running statistics live in ``state``.

CIFAR ResNet-(6n+2): a 3×3 stem conv, 3 stages of n BasicBlocks (widths 16/32/64, strides
1/2/2), global average pooling, a Dense head; a 1×1 projection shortcut where the shape changes.
ResNet-18-mini: 4 stages × 2 BasicBlocks, widths 16/32/64/128. Pruned by default: every conv of
the blocks (the stem conv and the head stay dense, as in the seed papers).

Coupled structures, removed by ``compact``: ``inner``, each block's inner channels (conv1's
filter, bn1's scale, bias and running statistics, conv2's input slice; the block's ``inner``
width); ``stage``, the channels a stage's residual adds join (every filter written into the stage's
stream — the stem or the first block's projection, each block's conv2 — with its BatchNorm, and
every input slice read from it: the blocks' conv1, the next stage's conv1 and projection, the
head's rows; the stage's width); ``channels``, both in one rule.
"""

from __future__ import annotations

from functools import partial

import flax.linen as nn
import jax.numpy as jnp
import optax

from . import _images as images
from ._classifier import classifier
from ._compaction import coupled_structure, kept_channels, take_channels
from ._factory import size_entry
from ._groups import conv_groups
from ._protocol import Problem, Recipe

# size -> (dataset, blocks per stage, widths, dense epochs, training images or None for all)
SIZES = {
    "test": ("digits", (1, 1, 1), (8, 16, 32), 5, 512),
    "digits": ("digits", (1, 1, 1), (16, 32, 64), 20, None),
    "default": ("mnist5k", (1, 1, 1), (16, 32, 64), 15, None),
    "resnet20": ("mnist5k", (3, 3, 3), (16, 32, 64), 15, None),
    "resnet18": ("mnist5k", (2, 2, 2, 2), (16, 32, 64, 128), 12, None),
}
PRUNABLE = r"^stage\d+_block\d+/(conv\d|proj)/kernel$"
_BN = partial(nn.BatchNorm, momentum=0.9, epsilon=1e-5)


class BasicBlock(nn.Module):
    features: int
    strides: int
    inner: int | None = None  # conv1's filters (None: ``features``)

    @nn.compact
    def __call__(self, x, train: bool):
        inner = self.features if self.inner is None else self.inner
        y = nn.Conv(inner, (3, 3), self.strides, padding="SAME", use_bias=False, name="conv1")(x)
        y = nn.relu(_BN(use_running_average=not train, name="bn1")(y))
        y = nn.Conv(self.features, (3, 3), padding="SAME", use_bias=False, name="conv2")(y)
        y = _BN(use_running_average=not train, name="bn2")(y)
        if self.strides != 1 or x.shape[-1] != self.features:
            x = nn.Conv(self.features, (1, 1), self.strides, use_bias=False, name="proj")(x)
            x = _BN(use_running_average=not train, name="proj_bn")(x)
        return nn.relu(x + y)


class ResNet(nn.Module):
    blocks: tuple[int, ...]
    widths: tuple[int, ...]
    classes: int = 10
    inner: tuple[int, ...] | None = None  # per block (in order), conv1's filters; None: the stage width

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Conv(self.widths[0], (3, 3), padding="SAME", use_bias=False, name="stem")(x)
        x = nn.relu(_BN(use_running_average=not train, name="stem_bn")(x))
        inner = iter(self.inner or [None] * sum(self.blocks))
        for i, (count, width) in enumerate(zip(self.blocks, self.widths)):
            for j in range(count):
                strides = 2 if i > 0 and j == 0 else 1
                x = BasicBlock(width, strides, next(inner), name=f"stage{i + 1}_block{j + 1}")(x, train)
        return nn.Dense(self.classes, name="head")(jnp.mean(x, axis=(1, 2)))


def model_of(problem: Problem) -> ResNet:
    """The Flax module of a ``resnet`` problem (for tools that need its layers, e.g. conv inputs)."""
    inner = problem.config.get("inner")
    return ResNet(
        tuple(problem.config["blocks"]), tuple(problem.config["widths"]), inner=inner and tuple(inner)
    )


def block_names(blocks: tuple[int, ...]) -> list[str]:
    return [f"stage{i + 1}_block{j + 1}" for i, count in enumerate(blocks) for j in range(count)]


def inner_couplings(blocks: tuple[int, ...]) -> dict:
    """{"<block>/inner": members}: conv1's filters, bn1's scale and bias, conv2's input slices."""
    return {
        f"{b}/inner": [
            (f"{b}/conv1/kernel", 3),
            (f"{b}/bn1/scale", 0),
            (f"{b}/bn1/bias", 0),
            (f"{b}/conv2/kernel", 2),
        ]
        for b in block_names(blocks)
    }


def _stage_writers(blocks, stage: int) -> list[str]:
    """The norm layers' owners whose output is stage ``stage``'s stream: (conv, its BatchNorm)."""
    names = [b for b in block_names(blocks) if b.startswith(f"stage{stage + 1}_")]
    first = [("stem", "stem_bn")] if stage == 0 else [(f"{names[0]}/proj", f"{names[0]}/proj_bn")]
    return first + [(f"{b}/conv2", f"{b}/bn2") for b in names]


def stage_couplings(blocks: tuple[int, ...]) -> dict:
    """{"stage<i>/channels": members}: the filters written into stage i's residual stream with
    their BatchNorms, and every input slice that reads the stream."""
    out = {}
    for i in range(len(blocks)):
        writers = [m for conv, bn in _stage_writers(blocks, i) for m in _filter(conv, bn)]
        # a stage's first block reads the stage before it (but stage 1's reads the stem)
        readers = [
            (f"stage{i + 1}_block{j + 1}/conv1/kernel", 2) for j in range(0 if i == 0 else 1, blocks[i])
        ]
        if i + 1 < len(blocks):
            readers += [(f"stage{i + 2}_block1/conv1/kernel", 2), (f"stage{i + 2}_block1/proj/kernel", 2)]
        else:
            readers += [("head/kernel", 0)]
        out[f"stage{i + 1}/channels"] = writers + readers
    return out


def _filter(conv: str, bn: str) -> list:
    return [(f"{conv}/kernel", 3), (f"{bn}/scale", 0), (f"{bn}/bias", 0)]


def _statistics(bn: str) -> list:
    return [(f"batch_stats/{bn}/{s}", 0) for s in ("mean", "var")]


def _compaction(model: ResNet):
    """The coupled structures of ``model`` and (params, state) -> the ResNet without the
    all-zero coupled channels (see ``classifier``)."""
    blocks = model.blocks
    inner, stages = inner_couplings(blocks), stage_couplings(blocks)
    statistics = {name: _statistics(f"{name[: -len('/inner')]}/bn1") for name in inner}
    statistics |= {
        f"stage{i + 1}/channels": [m for _, bn in _stage_writers(blocks, i) for m in _statistics(bn)]
        for i in range(len(blocks))
    }
    couplings = inner | stages

    def compaction(params, state):
        kept = kept_channels(params, couplings)
        config = {
            "widths": tuple(int(kept[name].sum()) for name in stages),
            "inner": tuple(int(kept[name].sum()) for name in inner),
        }
        return (
            take_channels(params, couplings, kept, "params"),
            take_channels(state, statistics, kept, "state"),
            ResNet(blocks, config["widths"], model.classes, inner=config["inner"]),
            config,
        )

    structures = {
        "inner": coupled_structure(inner),
        "stage": coupled_structure(stages),
        "channels": coupled_structure(couplings),
    }
    return structures, compaction


def _sgd_recipe(epochs: int) -> Recipe:
    def optimizer(total_steps: int):
        return optax.chain(
            optax.add_decayed_weights(5e-4),
            optax.sgd(optax.cosine_decay_schedule(0.1, max(total_steps, 1)), momentum=0.9),
        )

    return Recipe(epochs, 64, optimizer, f"sgd(momentum 0.9, cosine 0.1, wd 5e-4) x {epochs} epochs, bs 64")


def problem(size: str = "default", seed: int = 0) -> Problem:
    """The ResNet problem at ``size`` (see ``SIZES``); ``seed`` fixes the train/test split."""
    dataset, blocks, widths, epochs, limit = size_entry("resnet", SIZES, size)
    x_train, y_train, x_test, y_test = images.load(dataset, seed=seed, train_limit=limit)
    config = {"dataset": dataset, "blocks": blocks, "widths": widths, "train_limit": limit, "seed": seed}
    return classifier(
        "resnet",
        ResNet(blocks, widths),
        (x_train, y_train),
        (x_test, y_test),
        prunable=PRUNABLE,
        recipe=_sgd_recipe(epochs),
        groups=conv_groups(PRUNABLE),
        size=size,
        config=config,
        compaction=_compaction,
    )

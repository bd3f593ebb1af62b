"""``bcnn``: the binarized complex CNN (``model``) classifying synthetic RF modulations
(``signals``; docs/problems.md, "bcnn"). Evaluation also counts the binary operations left.

Pruned by default: the binary convs (the stem and head stay full precision, as in the paper).
Coupled structures, removed by ``compact``: ``filters``, each binary conv's complex filters (A
and B) with the next complex BatchNorm's parameters and statistics and the next layer's input
(for the last block, the head's rows of the real and imaginary means); ``channels`` adds the
stem's filters.
"""

from __future__ import annotations

from .._classifier import classifier
from .._compaction import coupled_structure, kept_channels, take_channels
from .._factory import size_entry
from .._groups import block_groups
from .._protocol import Problem, data_digest
from .._recipes import adam_recipe
from . import signals as rf_signals
from .model import BCNN, binary_operations, filter_couplings, statistics_couplings

# size -> (classes, train examples, test examples, stem width, binary widths, kernel, epochs)
SIZES = {
    "test": (("BPSK", "QPSK", "OOK", "CPFSK"), 1536, 512, 8, (8, 16), 5, 4),
    "default": (rf_signals.CLASSES, 8000, 2000, 16, (32, 64, 64), 5, 15),
}
PRUNABLE = r"^block\d+/conv/kernel$"
# natural structures of a (k, cin, cout, 2) complex kernel
LAYOUTS = {
    "filter": ((1,), (2,)),  # a whole complex output filter: A[..., k] and B[..., k]
    "channel": ((1,), (1,)),  # a complex input channel across all filters
    "column": ((1, 1), (0, 1)),  # a (tap, cin) position across filters, real and imaginary
}


def problem(size: str = "default", seed: int = 0) -> Problem:
    """The BCNN problem at ``size`` (see ``SIZES``); ``seed`` fixes the generated signals."""
    classes, n_train, n_test, stem, widths, width, epochs = size_entry("bcnn", SIZES, size)
    x_train, y_train = rf_signals.generate(n_train, seed=2 * seed, classes=classes)
    x_test, y_test = rf_signals.generate(n_test, seed=2 * seed + 1, classes=classes)
    length = x_train.shape[1]

    def operations(params):
        ops = binary_operations(params, length)
        return {"binary_ops": ops["live"], "binary_ops_dense": ops["dense"]}

    config = {
        "classes": classes,
        "train": n_train,
        "test": n_test,
        "stem": stem,
        "widths": widths,
        "kernel": width,
        "seed": seed,
        "data": data_digest({"x": x_train, "y": y_train}),  # the cache key follows the generated data
    }
    return classifier(
        "bcnn",
        BCNN(stem, widths, width, len(classes)),
        (x_train, y_train),
        (x_test, y_test),
        prunable=PRUNABLE,
        recipe=adam_recipe(3e-3, epochs, 128, schedule="cosine"),
        groups=block_groups(PRUNABLE, LAYOUTS),
        metrics=operations,
        size=size,
        config=config,
        compaction=_compaction,
    )


def _compaction(model: BCNN):
    """The coupled structures of ``model`` and (params, state) -> the BCNN without the all-zero
    complex filters (see ``problems.classifier``)."""
    blocks = tuple(f"block{i + 1}" for i in range(len(model.widths)))
    channels = filter_couplings(model, ("stem", *blocks))

    def compaction(params, state):
        kept = kept_channels(params, channels)
        count = lambda name: int(kept[name].sum())  # noqa: E731
        smaller = {"stem": count("stem/filters"), "widths": tuple(count(f"{b}/filters") for b in blocks)}
        return (
            take_channels(params, channels, kept, "params"),
            take_channels(state, statistics_couplings(channels), kept, "state"),
            BCNN(smaller["stem"], smaller["widths"], model.width, model.classes),
            smaller,
        )

    structures = {
        "filters": coupled_structure(filter_couplings(model, blocks)),
        "channels": coupled_structure(channels),
    }
    return structures, compaction

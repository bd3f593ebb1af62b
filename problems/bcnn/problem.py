"""``bcnn``: the binarized complex CNN (``model``) classifying synthetic RF modulations
(``signals``; docs/problems.md, "bcnn"). Evaluation also counts the binary operations left.

Pruned by default: the binary convs (the stem and head stay full precision, as in the paper).
"""

from __future__ import annotations

from .._classifier import classifier
from .._factory import size_entry
from .._groups import block_groups
from .._protocol import Problem, data_digest
from .._recipes import adam_recipe
from . import signals as rf_signals
from .model import BCNN, binary_operations

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
    )

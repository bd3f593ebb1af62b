"""Skip markers for tests that read an offline asset (CI installs them all: nothing skips there)."""

import importlib.util

import pytest

from prunax.problems._assets import install_command


def needs(*modules: str):
    """Skip unless every wheel is installed, giving the command that installs it."""
    absent = [m for m in modules if importlib.util.find_spec(m) is None]
    return pytest.mark.skipif(bool(absent), reason="; ".join(install_command(m) for m in absent))

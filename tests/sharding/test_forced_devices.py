"""Runs the multi-device tests (``multi_device_*.py``) in a subprocess with 8 forced host devices:
JAX fixes its device count when it starts, and this session's JAX has one CPU device."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_multi_device_suite_passes():
    env = {
        **os.environ,
        "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=8",
    }
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-o",
        "python_files=multi_device_*.py",
    ]
    done = subprocess.run(
        [*command, str(Path(__file__).parent)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0, (
        f"multi-device tests failed ({summary}):\n{done.stdout[-6000:]}\n{done.stderr[-3000:]}"
    )
    assert "passed" in summary and "skipped" not in summary, summary

"""The README's examples are code users copy: they must run as written and print what they say."""

import re
from pathlib import Path

RECORD = re.compile(r"^(\w+) (\d+): accuracy ([\d.]+), sparsity ([\d.]+)$", re.M)  # "Prune your own model"


def test_readme_example_runs(capsys, tmp_path, monkeypatch):
    text = (Path(__file__).parents[1] / "README.md").read_text()
    monkeypatch.chdir(tmp_path)  # the examples write their run folders under ./runs
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, "README has no python example"
    assert any("problems.classifier(" in block for block in blocks), "the 'Prune your own model' block"
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "conv2/kernel" in out
    assert "{'widths': (4, 8, 16), 'inner': (4, 8, 16)}" in out and (tmp_path / "small.safetensors").exists()
    rows = {(phase, int(epoch)): (float(a), float(s)) for phase, epoch, a, s in RECORD.findall(out)}
    assert rows[("dense", 0)][1] == 0.0 and rows[("dense", 0)][0] >= 0.9  # the dense MLP learned
    assert rows[("pruned", 0)][1] == rows[("retrain", 2)][1] == 0.7  # the spec's sparsity, kept
    assert rows[("retrain", 2)][0] >= 0.85  # retraining recovers most of the dense accuracy

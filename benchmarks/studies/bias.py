"""Does pruning change the gender bias in MiniLM's attention maps? The detector of
``problems.gender_bias`` on the dense all-MiniLM-L6-v2 encoder and on magnitude-pruned copies
(unstructured, per encoder kernel), both one-shot and after label-free retraining that keeps
the dense sentence embeddings (the ``bert`` problem's ``embedding`` task), so the pruned models
are still working sentence encoders.

Gaps are the normalised male-minus-female bias averaged over male- minus female-labelled
occupations, in percent of the mean relation score at that position; agreement is the fraction
of occupations whose centred bias has its stereotype's sign. The seed paper's observations: Wq
and Wk add more bias than other modules (the embedding included); the bias rises and falls
periodically through each layer (A·V reduces it, the layer output raises it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optax

from prunax import problems, solvers
from prunax.constraints import Unstructured
from prunax.problems.bert import gender_bias, minilm

from .. import harness

ADDED = ("query", "key", "value", "context", "output")


def encoders(sparsities=(0.5, 0.8), epochs: int = 1, out: Path | None = None, quiet: bool = True) -> dict:
    """{name: (encoder params, embedding cosine to dense on the test sentences)}: the dense
    MiniLM, and per sparsity a one-shot magnitude prune and the same retrained ``epochs`` epochs
    (AdamW 5e-5, masked) on the embedding-preservation task; checkpoints under ``out``."""
    problem = problems.get("bert", "default", task="embedding")
    dense = minilm.params()
    models = {"dense": (dense, 1.0)}
    for s in sparsities:
        spec = problem.spec(Unstructured(s))
        one_shot, _ = solvers.finalize(spec, dense)
        models[f"magnitude {s:g}, one-shot"] = (one_shot, problem.evaluate(one_shot, {})["cosine"])
        if epochs:
            tx = optax.chain(optax.adamw(5e-5, weight_decay=0.0), solvers.magnitude(spec))
            row, result = harness.run_prune(
                problem,
                spec,
                tx,
                (dense, {}),
                harness.Budget(epochs, 0),
                key=f"magnitude-s{s:g}",
                out=out,
                resume=True,
                quiet=quiet,
            )
            models[f"magnitude {s:g}, +{epochs} ep"] = (result.params, harness.final_metric(row))
    return models


def study(models: dict) -> dict:
    """{name: {position: PositionBias}} over one shared probe."""
    data = gender_bias.probe()
    return {name: gender_bias.analyse(params, minilm.config(), data) for name, (params, _) in models.items()}


def _cell(bias) -> str:
    return f"{100 * bias.gap:.1f} ({bias.agreement:.2f})"


def layer_table(biases: dict, layers: int) -> str:
    """Layer × position: gap in % (agreement)."""
    header = ["layer", "emb", *(gender_bias.LABELS[p] for p in gender_bias.POSITIONS)]
    cells = [
        [
            f"L{layer}",
            _cell(biases["embedding"]) if layer == 0 else "",
            *(_cell(biases[f"{layer}/{p}"]) for p in gender_bias.POSITIONS),
        ]
        for layer in range(layers)
    ]
    return harness.markdown_table(header, cells)


def observations(biases: dict, layers: int) -> list[str]:
    """The seed paper's two observations, checked with numbers. Q, K and V read the same layer
    input, so what they add is comparable; A·V and the layer output are measured against the
    position before them (V, A·V)."""
    added = gender_bias.contributions(biases, layers)
    mean = {name: float(np.mean(v)) for name, v in added.items()}
    qk = min(mean["query"], mean["key"])
    level = np.mean([biases[f"{i}/{p}"].gap for i in range(layers) for p in ("query", "key")])
    periodic = int(np.sum((added["context"] < 0) & (added["output"] > 0)))
    emb = biases["embedding"].gap
    return [
        "gap added per module, mean over layers (%): "
        + ", ".join(f"{gender_bias.LABELS[n]} {100 * v:+.1f}" for n, v in mean.items()),
        f"Wq and Wk add more than Wv from the same input: {'yes' if qk > mean['value'] else 'no'} "
        f"(Q {100 * mean['query']:+.1f}, K {100 * mean['key']:+.1f}, V {100 * mean['value']:+.1f}); "
        f"mean gap at Q and K {100 * level:.1f} vs the embedding's {100 * emb:.1f}",
        f"periodic (A·V lowers the gap, the layer output raises it): {periodic} of {layers} layers",
    ]


def comparison(results: dict, models: dict) -> str:
    """Per model: the embedding cosine to dense, the mean gap over layers per position and the
    last layer's attention agreement."""
    layers = minilm.config().layers
    header = ["model", "cosine to dense", "emb", *(gender_bias.LABELS[p] for p in gender_bias.POSITIONS)]
    cells = []
    for name, biases in results.items():
        means = [np.mean([biases[f"{i}/{p}"].gap for i in range(layers)]) for p in gender_bias.POSITIONS]
        cells.append(
            [
                name,
                f"{models[name][1]:.3f}",
                f"{100 * biases['embedding'].gap:.1f}",
                *(f"{100 * m:.1f}" for m in means),
                f"{biases[f'{layers - 1}/attention'].agreement:.2f}",
            ]
        )
    return harness.markdown_table([*header, f"L{layers - 1} att agreement"], cells)


def plot(results: dict, layers: int, path: Path) -> Path:
    """The gap along the detector positions, one line per model."""
    keys = ["embedding"] + [f"{i}/{p}" for i in range(layers) for p in gender_bias.POSITIONS]
    ticks = ["emb"] + [f"L{i} {gender_bias.LABELS[p]}" for i in range(layers) for p in gender_bias.POSITIONS]
    with harness.figure(path, figsize=(12, 3.8)) as (_, ax):
        for name, biases in results.items():
            ax.plot(range(len(keys)), [100 * biases[k].gap for k in keys], marker=".", label=name)
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.set_xticks(range(len(keys)), ticks, rotation=90, fontsize=7)
        ax.set(ylabel="gap (% of mean score)", title="gender-bias gap through MiniLM")
        ax.legend(fontsize=7)
    return path


def report(results: dict, models: dict, out: Path) -> str:
    """``report.md`` and ``bias_flow.png`` in ``out``; returns the Markdown."""
    layers = minilm.config().layers
    image = plot(results, layers, Path(out) / "bias_flow.png")
    data = gender_bias.probe()
    lists = gender_bias.word_lists()
    parts = [
        "# Gender bias in MiniLM's attention maps, before and after pruning",
        "",
        (__doc__ or "").strip(),
        "",
        f"{len(lists['templates'])} templates × {len(lists['pairs'])} gendered pairs × "
        f"{len(data.occupations)} occupations ({int(data.male_labelled.sum())} male-, "
        f"{int((~data.male_labelled).sum())} female-labelled) = {len(data.ids)} sentences.",
        "",
        "## Before and after pruning (mean gap over layers, %)",
        "",
        comparison(results, models),
        "",
        f"![gap along the positions]({image.name})",
        "",
    ]
    for name, biases in results.items():
        parts += [f"## {name}: gap % (agreement) per layer and position", "", layer_table(biases, layers), ""]
        parts += [f"* {line}" for line in observations(biases, layers)] + [""]
    text = "\n".join(parts)
    (Path(out) / "report.md").write_text(text)
    return text

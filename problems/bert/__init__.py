"""``bert``: a Flax BERT encoder with real all-MiniLM-L6-v2 weights on real sentences.

``model`` is the encoder, ``minilm`` reads the shipped weights and tokenizer, ``problem`` builds
the sentence-polarity and embedding tasks, ``gender_bias`` is the attention-map bias analysis.
"""

from . import gender_bias, minilm, model
from .model import ENCODER_KERNELS, Bert, BertConfig, normalize
from .problem import SIZES, TASKS, TINY_CONFIG, embed, problem, rotten_tomatoes, structured_groups

__all__ = [
    "ENCODER_KERNELS",
    "SIZES",
    "TASKS",
    "TINY_CONFIG",
    "Bert",
    "BertConfig",
    "embed",
    "gender_bias",
    "minilm",
    "model",
    "normalize",
    "problem",
    "rotten_tomatoes",
    "structured_groups",
]

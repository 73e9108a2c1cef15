#!/usr/bin/env python3
"""Greedy exact match of a merged model folder in transformers (+ bitsandbytes
for a 4-bit folder) on the held-out catalog prompts, as docs/adapters.md
reports it for the QAT experiment.

usage: check_merged.py MERGED_DIR [--tokenizer PATH] [--n 20]
  PATH: a folder with tokenizer.json (+ tokenizer_config.json), or a
  tokenizer.json(.gz) file whose tokenizer_config.json sits beside it; default
  the merged folder itself (a folder merged from a GGUF base has none: use
  tests/ref/tok/smollm2/tokenizer.json.gz for SmolLM2).
"""
import argparse
import gzip
import json
import os
import shutil
import sys
import tempfile

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "examples", "data")
sys.path.insert(0, DATA)
from evaluate import exact_match  # noqa: E402


def tokenizer_folder(path, tmp):
    if os.path.isdir(path):
        return path
    with (gzip.open if path.endswith(".gz") else open)(path, "rb") as src, \
            open(os.path.join(tmp, "tokenizer.json"), "wb") as dst:
        shutil.copyfileobj(src, dst)
    cfg = os.path.join(os.path.dirname(path), "tokenizer_config.json")
    if os.path.exists(cfg):
        shutil.copy(cfg, tmp)
    return tmp


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("merged")
    ap.add_argument("--tokenizer")
    ap.add_argument("--n", type=int, default=20)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tok = AutoTokenizer.from_pretrained(tokenizer_folder(a.tokenizer or a.merged, tmp))
    model = AutoModelForCausalLM.from_pretrained(a.merged, device_map="cpu").eval()
    with open(os.path.join(DATA, "catalog_eval_prompts.jsonl")) as f:
        rows = [json.loads(line) for line in f][:a.n]
    hits = 0
    for r in rows:
        enc = tok.apply_chat_template([{"role": "user", "content": r["prompt"]}], add_generation_prompt=True,
                                      return_tensors="pt", return_dict=True)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=32, do_sample=False)
        pred = tok.decode(out[0][enc["input_ids"].shape[1]:], skip_special_tokens=True)
        ok = exact_match(pred, r["reference"])
        hits += ok
        print("%s %r | %s" % ("ok " if ok else "no ", pred[:60], r["reference"]))
    print("exact match %d/%d (%s)" % (hits, len(rows), type(model.model.layers[0].self_attn.q_proj).__name__))


if __name__ == "__main__":
    main()

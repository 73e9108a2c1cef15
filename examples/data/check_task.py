#!/usr/bin/env python3
"""Checks, with transformers + peft on the CPU, that the catalog task is one
SmolLM2-135M-Instruct cannot do before fine-tuning and learns quickly: greedy
exact match on held-out prompts before training, then after a short LoRA run
(assistant-only loss, the chat template of the model).

usage: check_task.py --gguf SmolLM2-135M-Instruct.Q4_1.gguf [--steps 200] [--lr 5e-4]
                     [--eval 50] [--threads 1] [--baseline-only]
(scripts/get-model.sh prints the GGUF path; the weights are de-quantized to fp32.)
"""
import argparse
import json
import os
import random
import sys
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from evaluate import exact_match  # noqa: E402


def evaluate(model, tok, rows):
    model.eval()
    hits = 0
    for r in rows:
        enc = tok.apply_chat_template([{"role": "user", "content": r["prompt"]}], add_generation_prompt=True,
                                      return_tensors="pt", return_dict=True)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=32, do_sample=False)
        pred = tok.decode(out[0][enc["input_ids"].shape[1]:], skip_special_tokens=True)
        hits += exact_match(pred, r["reference"])
    return hits


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--eval", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--baseline-only", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    d, f = os.path.split(os.path.abspath(a.gguf))
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
    ev = [json.loads(l) for l in open(os.path.join(HERE, "catalog_eval_prompts.jsonl"))][:a.eval]
    print(json.dumps({"stage": "before", "exact_match": evaluate(model, tok, ev), "n": len(ev)}), flush=True)
    if a.baseline_only:
        return
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear",
                                             task_type="CAUSAL_LM"))
    data = []
    for line in open(os.path.join(HERE, "catalog_train_messages.jsonl")):
        m = json.loads(line)["messages"]
        p = tok(tok.apply_chat_template(m[:1], add_generation_prompt=True, tokenize=False), add_special_tokens=False)
        full = tok(tok.apply_chat_template(m, tokenize=False), add_special_tokens=False)["input_ids"]
        n = len(p["input_ids"])
        data.append((full, [-100] * n + full[n:]))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=a.lr)
    rng, bs, t0 = random.Random(0), 8, time.time()
    model.train()
    for s in range(a.steps):
        batch = rng.sample(data, bs)
        L = max(len(x[0]) for x in batch)
        ids = torch.tensor([x[0] + [tok.pad_token_id] * (L - len(x[0])) for x in batch])
        lab = torch.tensor([x[1] + [-100] * (L - len(x[1])) for x in batch])
        att = torch.tensor([[1] * len(x[0]) + [0] * (L - len(x[0])) for x in batch])
        loss = model(input_ids=ids, attention_mask=att, labels=lab).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        if s % 10 == 0:
            print(json.dumps({"step": s, "loss": round(loss.item(), 4), "s": round(time.time() - t0)}), flush=True)
    print(json.dumps({"stage": "after", "steps": a.steps, "exact_match": evaluate(model, tok, ev), "n": len(ev)}))


if __name__ == "__main__":
    main()

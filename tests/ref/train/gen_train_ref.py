#!/usr/bin/env python3
"""Reference for libftq's training step (tests/train/test_train_ref.c):
10 optimizer steps of transformers + PEFT LoRA + torch.optim.AdamW on a tiny
random Llama, with what the trainer does around them: a cosine schedule
with warm-up (transformers' get_cosine_schedule_with_warmup), gradient
clipping (torch.nn.utils.clip_grad_norm_), weight decay on every LoRA
weight, and gradient accumulation over 2 micro-batches with the loss of
each micro-batch normalised by the labelled tokens of the whole
accumulated batch (transformers >= 4.46, num_items_in_batch).

Runs in float64 (the f32 inputs are exact there): libftq's f32 trajectory
is compared with it at ~1e-5. LoRA dropout is 0 (libftq's masks come from
its own generator; the trainer tests cover dropout).

Writes tests/ref/train/train10.safetensors: the model (w.*), the initial
adapter (lora.*, PEFT names), the micro-batches (input_ids, attention_mask,
labels: [steps, accum, rows, seq]), the loss of every step, the learning
rate each update used, the gradient norms, and the adapter after 10 steps
(final.*). The model's configuration is in the file's metadata, in the
form tests/model/ref_model.h reads.

usage: /work/venv/bin/python tests/ref/train/gen_train_ref.py
"""
import json
import math
import os
import sys

import numpy as np
import torch
from peft import LoraConfig, get_peft_model
from safetensors.numpy import save_file
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.optimization import get_cosine_schedule_with_warmup

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "train10.safetensors")
C = dict(hidden_size=40, intermediate_size=76, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
         vocab_size=83, rope_theta=10000.0, rope=None, tie=False, bias=False, dtype="f32",
         lora=dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "gate_proj", "down_proj"],
                   use_rslora=False))
STEPS, ACCUM, ROWS, SEQ = 10, 2, 2, 11
LR, WD, MAX_NORM, WARMUP = 3e-2, 0.01, 0.3, 2
EOS = 2
CFG = LlamaConfig(hidden_size=C["hidden_size"], intermediate_size=C["intermediate_size"],
                  num_hidden_layers=C["num_hidden_layers"], num_attention_heads=C["num_attention_heads"],
                  num_key_value_heads=C["num_key_value_heads"], vocab_size=C["vocab_size"],
                  max_position_embeddings=256, rms_norm_eps=1e-5,
                  rope_parameters={"rope_type": "default", "rope_theta": C["rope_theta"]},
                  tie_word_embeddings=False, attention_bias=False, bos_token_id=1, eos_token_id=EOS,
                  pad_token_id=0, attn_implementation="eager", dtype=torch.float32)


def train(dtype, weights, init, ids, mask, labels):
    """The reference run in `dtype` from the given weights, adapter and batches."""
    torch.manual_seed(0)
    model = LlamaForCausalLM(CFG).to(dtype)
    model.load_state_dict({k: torch.from_numpy(v).to(dtype) for k, v in weights.items()})
    lc = C["lora"]
    pm = get_peft_model(model, LoraConfig(r=lc["r"], lora_alpha=lc["lora_alpha"], target_modules=lc["target_modules"],
                                          lora_dropout=0.0, bias="none", init_lora_weights=False,
                                          task_type="CAUSAL_LM")).to(dtype)
    names, params = [], []
    for n, p in pm.named_parameters():
        if "lora_" in n:
            saved = n.replace(".default", "")
            with torch.no_grad():
                p.copy_(torch.from_numpy(init[saved]).to(dtype))
            names.append(saved)
            params.append(p)
    opt = torch.optim.AdamW(params, lr=LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=WD, foreach=False)
    sched = get_cosine_schedule_with_warmup(opt, WARMUP, STEPS)
    losses, lrs, norms = [], [], []
    pm.train()
    for s in range(STEPS):
        # transformers >= 4.46: labelled (shifted) tokens of the whole accumulated batch
        num_items = sum(int((labels[s, a][:, 1:] != -100).sum()) for a in range(ACCUM))
        opt.zero_grad(set_to_none=True)
        step_loss = 0.0
        for a in range(ACCUM):
            logits = pm(input_ids=torch.from_numpy(ids[s, a]), attention_mask=torch.from_numpy(mask[s, a])).logits
            lab = torch.from_numpy(labels[s, a])
            loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                                     lab[:, 1:].reshape(-1), ignore_index=-100,
                                                     reduction="sum") / num_items
            loss.backward()
            step_loss += float(loss.detach())
        norms.append(float(torch.nn.utils.clip_grad_norm_(params, MAX_NORM)))
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
        losses.append(step_loss)
    final = {n: p.detach().numpy().astype(np.float32) for n, p in zip(names, params)}
    return names, losses, lrs, norms, final


def main():
    rng = np.random.default_rng(2026)
    torch.manual_seed(0)
    out, weights, init = {}, {}, {}
    for k, v in LlamaForCausalLM(CFG).state_dict().items():
        if k.endswith("norm.weight"):
            w = (1.0 + 0.2 * rng.standard_normal(v.shape)).astype(np.float32)
        else:
            w = (rng.standard_normal(v.shape) / np.sqrt(v.shape[-1]) * 1.5).astype(np.float32)
        out["w." + k] = weights[k] = w
    lc = C["lora"]
    shapes = get_peft_model(LlamaForCausalLM(CFG), LoraConfig(r=lc["r"], lora_alpha=lc["lora_alpha"],
                                                              target_modules=lc["target_modules"],
                                                              init_lora_weights=False, task_type="CAUSAL_LM"))
    for n, p in shapes.named_parameters():
        if "lora_" in n:
            init[n.replace(".default", "")] = (0.3 * rng.standard_normal(tuple(p.shape))).astype(np.float32)
    for n, v in init.items():
        out["lora." + n] = v
    ids = rng.integers(3, C["vocab_size"], size=(STEPS, ACCUM, ROWS, SEQ)).astype(np.int64)
    mask = np.ones_like(ids)
    labels = ids.copy()
    for s in range(STEPS):
        for a in range(ACCUM):
            pad = int(rng.integers(0, 5))
            if pad:
                mask[s, a, 1, SEQ - pad:] = 0
                ids[s, a, 1, SEQ - pad:] = 0
            labels[s, a][mask[s, a] == 0] = -100
            labels[s, a, 0, :int(rng.integers(0, 4))] = -100  # a masked prompt
    # float64 is the reference proper; PyTorch's own float32 run is kept beside it ("f32.") to show how far
    # plain f32 arithmetic drifts on this problem
    names, losses, lrs, norms, final = train(torch.float64, weights, init, ids, mask, labels)
    _, losses32, _, norms32, final32 = train(torch.float32, weights, init, ids, mask, labels)
    for n in names:
        out["final." + n] = final[n]
        out["f32.final." + n] = final32[n]
    out["f32.losses"] = np.array(losses32, np.float64)
    out["f32.grad_norms"] = np.array(norms32, np.float64)
    out["input_ids"] = ids.astype(np.int32)
    out["attention_mask"] = mask.astype(np.int32)
    out["labels"] = labels.astype(np.int32)
    out["losses"] = np.array(losses, np.float64)
    out["lrs"] = np.array(lrs, np.float64)
    out["grad_norms"] = np.array(norms, np.float64)
    meta = {k: C[k] for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                              "num_key_value_heads", "vocab_size", "rope_theta", "rope", "tie", "bias", "dtype")}
    meta.update(rms_norm_eps=1e-5, eos_token_id=EOS, lora=lc, lora_tensors=names,
                train=dict(steps=STEPS, accum=ACCUM, learning_rate=LR, weight_decay=WD, max_grad_norm=MAX_NORM,
                           warmup_steps=WARMUP, lr_scheduler_type="cosine", optim="adamw_torch"),
                generated_with="torch %s, transformers %s, peft %s" % (
                    torch.__version__, __import__("transformers").__version__, __import__("peft").__version__))
    save_file({k: np.ascontiguousarray(v) for k, v in out.items()}, OUT, metadata={"config": json.dumps(meta)})
    print("wrote", OUT, os.path.getsize(OUT), "bytes; losses", ["%.5f" % l for l in losses])


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Reference data for libftq's Llama graph (tests/model/test_model_ref.c).

Runs transformers' LlamaForCausalLM + PEFT LoRA on the CPU for a few tiny
random configurations and writes, per configuration, one safetensors file
with the weights, the LoRA A/B, the batch, and what PyTorch computes:
logits, loss, the gradient of every LoRA tensor and of the input
embeddings, and greedy generations with and without the adapter. Every
result is computed twice from the same f32 inputs: in float64 (the
reference proper: libftq's f32 error is measured against it) and in
float32 ("f32." keys: PyTorch's own f32 rounding, which libftq must match
as closely as PyTorch matches the float64 result). For two of
the configurations the same is repeated with NF4 base weights: every linear
weight is quantized by an exact numpy emulation of bitsandbytes' NF4
(qlora-spec.md section 1, blocksize 64) and PyTorch runs on the dequantized
weights (exact in f32), so libftq's NF4 dequantization is checked too.

usage: /work/venv/bin/python tests/ref/model/gen_ref.py [out_dir]
"""
import json
import os
import sys

import numpy as np
import torch
from peft import LoraConfig, get_peft_model
from safetensors.numpy import save_file
from transformers import LlamaConfig, LlamaForCausalLM

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))

# NF4 codebook and decision thresholds as fp32 bit patterns (qlora-spec.md 1.1, 1.4)
NF4_LUT = np.array([0xbf800000, 0xbf3239b1, 0xbf066b30, 0xbeca32a0, 0xbe91a24d, 0xbe3d353f, 0xbdba7871,
                    0x00000000, 0x3da2faff, 0x3e24cae3, 0x3e7c04dd, 0x3ead033a, 0x3ee1a4b8, 0x3f1007ab,
                    0x3f3913b3, 0x3f800000], dtype=np.uint32).view(np.float32)
NF4_THR = np.array([0xbf591cd8, 0xbf1c5270, 0xbeeb8480, 0xbeadea76, 0xbe703cec, 0xbe0d38bc, 0xbd3a7871,
                    0x3d22faff, 0x3df64862, 0x3e5067e0, 0x3e9582d4, 0x3ec753f9, 0x3f006d04, 0x3f248daf,
                    0x3f5c89da], dtype=np.uint32).view(np.float32)

CONFIGS = {
    # GQA (6 query heads on 2 kv heads), untied head, default RoPE, all-linear LoRA
    "gqa": dict(hidden_size=48, intermediate_size=80, num_hidden_layers=2, num_attention_heads=6,
                num_key_value_heads=2, vocab_size=97, rope_theta=10000.0, rope=None, tie=False, bias=False,
                dtype="f32", lora=dict(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                                                             "gate_proj", "up_proj", "down_proj"],
                                       use_rslora=False), nf4=True),
    # tied embeddings, attention biases, linear RoPE scaling, bf16 storage, PEFT's default targets, rsLoRA
    "tied": dict(hidden_size=40, intermediate_size=72, num_hidden_layers=2, num_attention_heads=5,
                 num_key_value_heads=5, vocab_size=101, rope_theta=10000.0,
                 rope=dict(rope_type="linear", factor=2.0), tie=True, bias=True, dtype="bf16",
                 lora=dict(r=6, lora_alpha=12, target_modules=["q_proj", "v_proj"], use_rslora=True), nf4=False),
    # llama3 RoPE scaling over all three frequency regimes, odd head_dim/2, MLP + o/k LoRA
    "llama3": dict(hidden_size=72, intermediate_size=120, num_hidden_layers=3, num_attention_heads=4,
                   num_key_value_heads=2, vocab_size=89, rope_theta=10000.0,
                   rope=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                             original_max_position_embeddings=64), tie=False, bias=False, dtype="f32",
                   lora=dict(r=3, lora_alpha=5, target_modules=["k_proj", "o_proj", "gate_proj", "up_proj",
                                                                "down_proj"], use_rslora=False), nf4=True),
}
ROWS, SEQ, PAD = 2, 13, 4   # row 1 ends with PAD padding tokens
PROMPT, NEW = 6, 8          # greedy generation: first PROMPT tokens of row 0, NEW new tokens
EOS = 2


def nf4_quantize(w):
    """bitsandbytes NF4 (blocksize 64) of an f32 [out, in] weight: packed bytes, absmax, dequantized."""
    flat = w.astype(np.float32).reshape(-1)
    n = flat.size
    nb = (n + 63) // 64
    pad = np.zeros(nb * 64, np.float32)
    pad[:n] = flat
    blocks = pad.reshape(nb, 64)
    absmax = np.abs(blocks[:, :]).max(axis=1).astype(np.float32)
    # the last block's padding does not count toward its absmax
    if n % 64:
        absmax[-1] = np.abs(flat[(nb - 1) * 64:]).max()
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = (np.float32(1.0) / absmax).astype(np.float32)
        xn = (blocks * inv[:, None]).astype(np.float32).reshape(-1)[:n]
    codes = (xn[:, None] > NF4_THR[None, :]).sum(axis=1).astype(np.uint8)  # NaN -> 0
    if n % 2:
        codes = np.concatenate([codes, np.array([7], np.uint8)])
    packed = (codes[0::2] << 4) | codes[1::2]
    deq = (NF4_LUT[codes[:n]] * np.repeat(absmax, 64)[:n]).astype(np.float32)
    return packed.astype(np.uint8), absmax, deq.reshape(w.shape)


def bf16_round(x):
    """Round f32 to bf16 (nearest even), returned as f32, and the bf16 bits."""
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(torch.bfloat16)
    return t.to(torch.float32).numpy(), t.view(torch.int16).numpy().view(np.uint16)


def make_config(c):
    rope = {"rope_type": "default", "rope_theta": c["rope_theta"]}
    if c["rope"]:
        rope.update(c["rope"])
    return LlamaConfig(hidden_size=c["hidden_size"], intermediate_size=c["intermediate_size"],
                       num_hidden_layers=c["num_hidden_layers"], num_attention_heads=c["num_attention_heads"],
                       num_key_value_heads=c["num_key_value_heads"], vocab_size=c["vocab_size"],
                       max_position_embeddings=256, rms_norm_eps=1e-5, rope_parameters=rope,
                       tie_word_embeddings=c["tie"], attention_bias=c["bias"], bos_token_id=1, eos_token_id=EOS,
                       pad_token_id=0, attn_implementation="eager", dtype=torch.float32)


def compute(c, weights, lora_values, batch, dtype):
    """transformers + PEFT on the given weights in `dtype`: logits, loss, gradients, generations."""
    cfg = make_config(c)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).to(dtype).eval()
    model.load_state_dict({k: torch.from_numpy(v).to(dtype) for k, v in weights.items()}, strict=False)
    if c["tie"]:
        model.tie_weights()
    lc = c["lora"]
    peft_model = get_peft_model(model, LoraConfig(r=lc["r"], lora_alpha=lc["lora_alpha"],
                                                  target_modules=lc["target_modules"], lora_dropout=0.0,
                                                  use_rslora=lc["use_rslora"], bias="none",
                                                  init_lora_weights=False, task_type="CAUSAL_LM"))
    peft_model.to(dtype).eval()  # no dropout anywhere (lora_dropout is 0 anyway)
    names = []
    for pname, p in peft_model.named_parameters():
        if "lora_" in pname:
            saved = pname.replace(".default", "")
            if saved not in lora_values:
                lora_values[saved] = (0.3 * batch["rng"].standard_normal(tuple(p.shape))).astype(np.float32)
            with torch.no_grad():
                p.copy_(torch.from_numpy(lora_values[saved]).to(dtype))
            names.append(saved)
    ids, mask, labels = batch["ids"], batch["mask"], batch["labels"]
    t_ids, t_mask, t_labels = (torch.from_numpy(a) for a in (ids, mask, labels))
    emb = peft_model.get_input_embeddings()(t_ids).detach().requires_grad_(True)
    res = peft_model(inputs_embeds=emb, attention_mask=t_mask, labels=t_labels)
    res.loss.backward()
    out = {"logits": res.logits.detach(), "loss": res.loss.detach().reshape(1), "grad.inputs_embeds": emb.grad}
    for pname, p in peft_model.named_parameters():
        if "lora_" in pname:
            out["grad." + pname.replace(".default", "")] = p.grad
    with torch.no_grad():
        prompt = t_ids[:1, :PROMPT]
        kw = dict(attention_mask=torch.ones_like(prompt), max_new_tokens=NEW, do_sample=False, eos_token_id=EOS,
                  pad_token_id=0)
        out["generate.lora"] = peft_model.generate(input_ids=prompt, **kw)[0, PROMPT:]
        with peft_model.disable_adapter():
            out["generate.base"] = peft_model.generate(input_ids=prompt, **kw)[0, PROMPT:]
            out["logits.base"] = peft_model(input_ids=t_ids, attention_mask=t_mask).logits
    out["rope.inv_freq"] = peft_model.base_model.model.model.rotary_emb.inv_freq
    return {k: v.numpy() for k, v in out.items()}, names


def run(name, c, rng, nf4):
    cfg = make_config(c)
    torch.manual_seed(0)
    template = LlamaForCausalLM(cfg)
    out = {}
    # random base weights (not HF's init: larger values make every path matter)
    weights = {}
    for k, v in template.state_dict().items():
        if k == "lm_head.weight" and c["tie"]:
            continue
        if k.endswith("norm.weight"):
            w = (1.0 + 0.2 * rng.standard_normal(v.shape)).astype(np.float32)
        elif k.endswith("bias"):
            w = (0.1 * rng.standard_normal(v.shape)).astype(np.float32)
        else:
            w = (rng.standard_normal(v.shape) / np.sqrt(v.shape[-1]) * 1.5).astype(np.float32)
        if c["dtype"] == "bf16":
            w, bits = bf16_round(w)
            out["w." + k] = bits
        else:
            out["w." + k] = w
        weights[k] = w
    if nf4:  # linear weights through NF4: the packed form for libftq, the dequantized one for PyTorch
        for k in list(weights):
            if k.endswith("_proj.weight"):
                packed, absmax, deq = nf4_quantize(weights[k])
                out["nf4." + k + ".packed"] = packed
                out["nf4." + k + ".absmax"] = absmax
                out["nf4." + k + ".dequantized"] = deq
                del out["w." + k]  # the NF4 codes replace the f32 weight
                weights[k] = deq

    ids = rng.integers(3, c["vocab_size"], size=(ROWS, SEQ)).astype(np.int64)
    mask = np.ones((ROWS, SEQ), np.int64)
    mask[1, SEQ - PAD:] = 0
    ids[1, SEQ - PAD:] = 0
    labels = ids.copy()
    labels[mask == 0] = -100
    labels[0, :3] = -100  # a masked prompt
    batch = dict(ids=ids, mask=mask, labels=labels, rng=rng)
    lora_values = {}
    # the reference proper runs in float64 (the f32 inputs are exact there), so the comparison measures
    # libftq's own rounding; PyTorch's float32 run is kept beside it ("f32." keys)
    ref, names = compute(c, weights, lora_values, batch, torch.float64)
    f32, _ = compute(c, weights, lora_values, batch, torch.float32)
    for k in ("generate.lora", "generate.base"):
        assert (ref[k] == f32[k]).all(), "float32 and float64 greedy generations differ: choose another seed"
        out[k] = ref[k].astype(np.int32)
    for k, v in ref.items():
        if not k.startswith("generate"):
            out[k] = v.astype(np.float32)
            out["f32." + k] = f32[k].astype(np.float32)
    for k in names:
        out["lora." + k] = lora_values[k]
    out["input_ids"] = ids.astype(np.int32)
    out["attention_mask"] = mask.astype(np.int32)
    out["labels"] = labels.astype(np.int32)

    lc = c["lora"]
    meta = {k: c[k] for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                              "num_key_value_heads", "vocab_size", "rope_theta", "rope", "tie", "bias", "dtype")}
    meta.update(rms_norm_eps=1e-5, eos_token_id=EOS, lora=lc, lora_tensors=names, nf4=nf4,
                generated_with="torch %s, transformers %s, peft %s" % (
                    torch.__version__, __import__("transformers").__version__, __import__("peft").__version__))
    path = os.path.join(OUT, "%s%s.safetensors" % (name, "_nf4" if nf4 else ""))
    save_file({k: np.ascontiguousarray(v) for k, v in out.items()}, path, metadata={"config": json.dumps(meta)})
    print("wrote %s: loss %.6f, %d tensors, %d bytes" % (path, float(out["loss"][0]), len(out), os.path.getsize(path)))


def sampling_reference():
    """transformers' logits processors (generation/logits_process.py) on fixed scores."""
    from transformers.generation.logits_process import (LogitsProcessorList, RepetitionPenaltyLogitsProcessor,
                                                        TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper)
    rng = np.random.default_rng(77)
    vocab = 64
    out = {}
    cases = [dict(repetition_penalty=1.3), dict(temperature=0.7, top_k=5), dict(top_p=0.8),
             dict(temperature=1.5, top_k=10, top_p=0.9, repetition_penalty=1.2), dict(top_p=0.3, top_k=0),
             dict(temperature=0.5, top_p=0.95)]
    history = rng.integers(0, vocab, size=12).astype(np.int64)
    history[3] = history[7]  # a repeated id is penalised once
    scores = (0.6 * rng.standard_normal(vocab)).astype(np.float32)
    out["history"] = history.astype(np.int32)
    out["scores"] = scores
    for i, cs in enumerate(cases):
        procs = LogitsProcessorList()
        if cs.get("repetition_penalty", 1.0) != 1.0:
            procs.append(RepetitionPenaltyLogitsProcessor(cs["repetition_penalty"]))
        if cs.get("temperature", 1.0) != 1.0:
            procs.append(TemperatureLogitsWarper(cs["temperature"]))
        if cs.get("top_k", 0):
            procs.append(TopKLogitsWarper(cs["top_k"]))
        if cs.get("top_p", 1.0) < 1.0:
            procs.append(TopPLogitsWarper(cs["top_p"]))
        res = procs(torch.from_numpy(history)[None], torch.from_numpy(scores.copy())[None])[0].numpy()
        out["case%d" % i] = res.astype(np.float32)
        out["case%d.params" % i] = np.array([cs.get("temperature", 1.0), cs.get("top_k", 0), cs.get("top_p", 1.0),
                                             cs.get("repetition_penalty", 1.0)], np.float64)
    path = os.path.join(OUT, "sampling.safetensors")
    save_file(out, path, metadata={"config": json.dumps({"cases": len(cases), "vocab": vocab})})
    print("wrote %s" % path)


def main():
    torch.set_num_threads(1)
    sampling_reference()
    for name, c in CONFIGS.items():
        run(name, c, np.random.default_rng(1234), False)
        if c["nf4"]:
            run(name, c, np.random.default_rng(1234), True)


if __name__ == "__main__":
    main()

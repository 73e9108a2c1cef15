#!/usr/bin/env python3
"""The Python side of test_peft_interop (ctest label `interop`).

  interop.py make DIR    builds a tiny Qwen2-style model (attention biases,
                         untied head, GQA; fp32) with transformers, a LoRA
                         adapter saved by peft, and their logits on a fixed
                         batch (DIR/base, DIR/peft_adapter, DIR/ref.safetensors)
  interop.py check DIR   after libftq has written DIR/ftq_adapter (a PEFT
                         folder), DIR/merged and DIR/merged_nf4 (merged model
                         folders) and DIR/ftq_logits.safetensors (its logits):
                         loads each with peft / transformers and compares

Exits non-zero when anything disagrees; prints the errors it measured.
"""
import json
import os
import shutil
import sys

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
TOK = os.path.join(HERE, "..", "ref", "tok", "qwen2")
TOL = 1e-5      # fp32 against fp32, relative to the largest logit
TOL_BNB_CPU = 0.1  # bitsandbytes' CPU 4-bit matmul rounds activations and absmax to bf16


def logits_of(model, ids):
    with torch.no_grad():
        return model(input_ids=ids.long()).logits.float()


def rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def make(d):
    torch.manual_seed(2024)
    # bitsandbytes' CPU 4-bit kernels want output features in multiples of 32
    # and input features in multiples of the block size (64)
    cfg = Qwen2Config(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=1216, max_position_embeddings=128, rms_norm_eps=1e-6,
                      tie_word_embeddings=False, eos_token_id=1202, pad_token_id=1200)
    model = Qwen2ForCausalLM(cfg).float().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.7, 1.3)
            elif name.endswith("bias"):
                p.uniform_(-0.1, 0.1)
            else:
                p.uniform_(-1.7 / p.shape[-1] ** 0.5, 1.7 / p.shape[-1] ** 0.5)
        model.model.embed_tokens.weight.uniform_(-1, 1)
    base = os.path.join(d, "base")
    model.save_pretrained(base)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(TOK, f), os.path.join(base, f))
    pm = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                                                              "gate_proj", "down_proj"],
                                          init_lora_weights=False, task_type="CAUSAL_LM")).eval()
    pm.save_pretrained(os.path.join(d, "peft_adapter"))
    ids = torch.randint(0, 1200, (2, 9), generator=torch.Generator().manual_seed(5), dtype=torch.int32)
    base_model = AutoModelForCausalLM.from_pretrained(base).eval()
    peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base).eval(),
                                           os.path.join(d, "peft_adapter")).eval()
    save_file({"input_ids": ids, "logits_base": logits_of(base_model, ids).contiguous(),
               "logits_peft": logits_of(peft_model, ids).contiguous()}, os.path.join(d, "ref.safetensors"))


def check(d):
    failures = []

    def expect(what, err, tol):
        print(f"{what}: max relative difference {err:.3g} (tolerance {tol:g})")
        if not err < tol:
            failures.append(what)

    ours = load_file(os.path.join(d, "ftq_logits.safetensors"))
    ids = ours["input_ids"]
    base = os.path.join(d, "base")

    # (1) the libftq-saved adapter in PeftModel.from_pretrained
    pm = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base).eval(), os.path.join(d, "ftq_adapter"))
    expect("libftq adapter in PeftModel", rel(logits_of(pm.eval(), ids), ours["logits_ftq"]), TOL)
    with open(os.path.join(d, "ftq_adapter", "adapter_config.json")) as f:
        text = f.read()
    with open(os.path.join(d, "peft_adapter", "adapter_config.json")) as f:
        peft_keys = set(json.load(f))
    if set(json.loads(text)) != peft_keys:
        failures.append("adapter_config.json keys differ from peft's: %s" % (set(json.loads(text)) ^ peft_keys))
    if text != json.dumps(json.loads(text), indent=2, sort_keys=True):
        failures.append("adapter_config.json is not formatted as json.dumps(indent=2, sort_keys=True)")
    cfg = LoraConfig.from_pretrained(os.path.join(d, "ftq_adapter"))
    if cfg.r != 4 or not cfg.use_rslora or cfg.lora_alpha != 8:
        failures.append("LoraConfig read back r=%s use_rslora=%s lora_alpha=%s" % (cfg.r, cfg.use_rslora, cfg.lora_alpha))

    # (2) the merged folder in transformers
    merged = AutoModelForCausalLM.from_pretrained(os.path.join(d, "merged")).eval()
    got = logits_of(merged, ids)
    expect("merged folder in transformers vs libftq's merged model", rel(got, ours["logits_ftq_merged"]), TOL)
    expect("merged folder in transformers vs libftq's base + adapter", rel(got, ours["logits_ftq"]), TOL)
    tok_a = AutoTokenizer.from_pretrained(os.path.join(d, "merged"))
    tok_b = AutoTokenizer.from_pretrained(base)
    if tok_a("Hello <|im_end|> world")["input_ids"] != tok_b("Hello <|im_end|> world")["input_ids"]:
        failures.append("the merged folder's tokenizer differs from the base's")

    # (3) the re-quantized merged folder: a bitsandbytes 4-bit model. Its
    # weights, decoded by bitsandbytes' dequantize_4bit into an fp32 model,
    # must give libftq's QAT logits; bitsandbytes' own CPU 4-bit matmul
    # computes in bf16 ("cpu fused op only support bf16 for now"), so its
    # logits are compared at bf16 precision.
    try:
        import bitsandbytes as bnb
    except ImportError:
        print("bitsandbytes is not installed: the NF4 merged folder is not checked")
        bnb = None
    if bnb is None:
        return report(failures)
    nf4_dir = os.path.join(d, "merged_nf4")
    nf4 = AutoModelForCausalLM.from_pretrained(nf4_dir, device_map="cpu").eval()
    plain = AutoModelForCausalLM.from_pretrained(os.path.join(d, "merged")).eval()
    n4 = 0
    for name, mod in nf4.named_modules():
        if isinstance(mod, bnb.nn.Linear4bit):
            w = bnb.functional.dequantize_4bit(mod.weight.data, mod.weight.quant_state).float()
            plain.get_submodule(name).weight.data.copy_(w)
            n4 += 1
    if n4 != 2 * 7:
        failures.append("merged_nf4 loads with %d Linear4bit projections, not 14" % n4)
    expect("NF4 merged folder, bitsandbytes-decoded weights in fp32, vs libftq's QAT forward",
           rel(logits_of(plain, ids), ours["logits_ftq_nf4"]), TOL)
    expect("NF4 merged folder through bitsandbytes' bf16 CPU kernel vs libftq's QAT forward",
           rel(logits_of(nf4, ids), ours["logits_ftq_nf4"]), TOL_BNB_CPU)
    return report(failures)


def report(failures):
    if failures:
        print("FAILED:", *failures, sep="\n  ")
        return 1
    print("interop: all checks passed")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("make", "check"):
        print(__doc__)
        sys.exit(2)
    sys.exit(make(sys.argv[2]) or 0 if sys.argv[1] == "make" else check(sys.argv[2]))

#!/usr/bin/env python3
"""Reference files for libftq's PEFT adapter and merge tests (tests/peft).

Builds a tiny Llama model with transformers (fp32, saved by save_pretrained,
with the Qwen2 test tokenizer so the example programs can run on it), puts
PEFT LoRA adapters on it, saves them with PeftModel.save_pretrained, and
records what PyTorch computes:

  tiny/             the model folder (config.json, model.safetensors,
                    tokenizer.json, tokenizer_config.json)
  adapter_all/      all-linear, r 8, lora_alpha 16, use_rslora, as peft writes it
  adapter_qvod/     q/v/o/down_proj, r 4, lora_alpha 8, lora_dropout 0.1
  adapter_old/      adapter_qvod's tensors with the 16-key adapter_config.json
                    peft 0.4.0 wrote (qlora-spec.md 5.6), for the old key set
  ref.safetensors   input_ids [2, 9] (I32), and the logits [2, 9, vocab] of
                    the base model, of PeftModel with each adapter (eval), and
                    of adapter_qvod merged into the base by merge_and_unload()

The LoRA B matrices start non-zero (init_lora_weights=False) so that every
adapter changes the logits. Everything is fp32 on the CPU.

usage: /work/venv/bin/python tests/ref/peft/make_ref.py
"""
import json
import os
import shutil

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
TOK = os.path.join(HERE, "..", "tok", "qwen2")


def tiny_model():
    torch.manual_seed(1234)
    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=1216, max_position_embeddings=128, rms_norm_eps=1e-5,
                      tie_word_embeddings=True, bos_token_id=None, eos_token_id=1202, pad_token_id=1200)
    model = LlamaForCausalLM(cfg).float().eval()
    # weights of a trained model's scale (transformers' 0.02 init gives near-zero logits)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.7, 1.3)
            elif p.dim() == 2:
                fan_in = p.shape[1]
                p.uniform_(-1.7 / fan_in ** 0.5, 1.7 / fan_in ** 0.5)
        model.model.embed_tokens.weight.uniform_(-1, 1)
    return model


def save_adapter(base_dir, folder, lcfg, seed):
    base = LlamaForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
    torch.manual_seed(seed)
    pm = get_peft_model(base, lcfg).eval()
    out = folder
    shutil.rmtree(out, ignore_errors=True)
    pm.save_pretrained(out)
    readme = os.path.join(out, "README.md")  # a model card libftq neither needs nor reads
    if os.path.exists(readme):
        os.remove(readme)
    return out


def logits_of(model, ids):
    with torch.no_grad():
        return model(input_ids=ids.long()).logits.float().contiguous()


def main():
    os.chdir(HERE)  # relative paths, so base_model_name_or_path reads "tiny"
    tiny = "tiny"
    shutil.rmtree(tiny, ignore_errors=True)
    model = tiny_model()
    model.save_pretrained(tiny)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(TOK, f), os.path.join(tiny, f))
    gen = os.path.join(tiny, "generation_config.json")
    if os.path.exists(gen):
        os.remove(gen)

    all_dir = save_adapter(tiny, "adapter_all", LoraConfig(
        r=8, lora_alpha=16, target_modules="all-linear", lora_dropout=0.0, use_rslora=True,
        init_lora_weights=False, task_type="CAUSAL_LM"), seed=7)
    qvod_dir = save_adapter(tiny, "adapter_qvod", LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "o_proj", "down_proj"], lora_dropout=0.1,
        init_lora_weights=False, task_type="CAUSAL_LM"), seed=8)

    old = "adapter_old"
    shutil.rmtree(old, ignore_errors=True)
    os.makedirs(old)
    shutil.copy(os.path.join(qvod_dir, "adapter_model.safetensors"), old)
    old_cfg = {"auto_mapping": None, "base_model_name_or_path": "tiny", "bias": "none", "fan_in_fan_out": False,
               "inference_mode": True, "init_lora_weights": False, "layers_pattern": None,
               "layers_to_transform": None, "lora_alpha": 8, "lora_dropout": 0.1, "modules_to_save": None,
               "peft_type": "LORA", "r": 4, "revision": None,
               "target_modules": ["q_proj", "v_proj", "o_proj", "down_proj"], "task_type": "CAUSAL_LM"}
    with open(os.path.join(old, "adapter_config.json"), "w") as f:
        f.write(json.dumps(old_cfg, indent=2, sort_keys=True))

    g = torch.Generator().manual_seed(99)
    ids = torch.randint(0, 1200, (2, 9), generator=g, dtype=torch.int32)
    ref = {"input_ids": ids, "logits_base": logits_of(LlamaForCausalLM.from_pretrained(tiny).eval(), ids)}
    for name, d in (("all", all_dir), ("qvod", qvod_dir)):
        pm = PeftModel.from_pretrained(LlamaForCausalLM.from_pretrained(tiny).eval(), d).eval()
        ref["logits_" + name] = logits_of(pm, ids)
        if name == "qvod":
            ref["logits_qvod_merged"] = logits_of(pm.merge_and_unload(), ids)
    save_file(ref, "ref.safetensors", metadata={"format": "pt"})
    print("written to", HERE)


if __name__ == "__main__":
    main()

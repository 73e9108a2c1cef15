"""Peer of bench/bench_train_cpu.c: transformers + peft on the CPU in float32,
on a SmolLM2-135M-shaped Llama with random weights, the same LoRA settings,
batch and thread count: forward + backward tokens/s (no optimizer step, as
libftq's benchmark), then greedy decoding tokens/s with the KV cache.

  python3 bench/peer/train_cpu_hf.py [--seq 256] [--rows 1] [--steps 3] [--threads 2]

Prints JSON lines shaped like bench_train_cpu's.
"""
import argparse
import json
import statistics
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--rows", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = LlamaConfig(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                      num_key_value_heads=3, head_dim=64, vocab_size=49152, max_position_embeddings=8192,
                      rms_norm_eps=1e-5, rope_parameters={"rope_type": "default", "rope_theta": 100000.0},
                      tie_word_embeddings=True, attn_implementation="sdpa")
    torch.manual_seed(0)
    ids = torch.randint(0, 49152, (args.rows, args.seq))
    for targets, r, ckpt in (("q_proj,v_proj", 8, False), ("all-linear", 16, False), ("all-linear", 16, True)):
        base = LlamaForCausalLM(cfg).float()
        with torch.no_grad():  # the weight scales of bench_train_cpu.c (HF's 0.02 init is not what trained models hold)
            for name, p in base.named_parameters():
                if name.endswith("norm.weight"):
                    p.uniform_(0.9, 1.1)
                elif "embed_tokens" in name:
                    p.uniform_(-0.05, 0.05)
                else:
                    b = 1.7 / p.shape[1] ** 0.5
                    p.uniform_(-b, b)
        if ckpt:
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        tm = ["q_proj", "v_proj"] if targets != "all-linear" else "all-linear"
        model = get_peft_model(base, LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.05, target_modules=tm,
                                                task_type="CAUSAL_LM"))
        model.train()
        times = []
        for it in range(args.steps + 1):  # one warm-up step
            t0 = time.perf_counter()
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            model.zero_grad(set_to_none=True)
            if it:
                times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        print(json.dumps({"bench": "train_cpu_peer", "stack": "torch %s, transformers, peft (fp32, sdpa)" %
                          torch.__version__, "threads": args.threads, "rows": args.rows, "seq_len": args.seq,
                          "lora_r": r, "target_modules": targets, "gradient_checkpointing": ckpt,
                          "steps": args.steps, "step_ms_median": round(med * 1e3, 1),
                          "tokens_per_s": round(args.rows * args.seq / med, 1)}), flush=True)
    model.eval()
    with torch.no_grad():
        prompt = ids[:1, :16]
        t0 = time.perf_counter()
        out = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=32,
                             min_new_tokens=32, do_sample=False, pad_token_id=0)
        dt = time.perf_counter() - t0
    n = out.shape[1] - 16
    print(json.dumps({"bench": "generate_cpu_peer", "prompt_tokens": 16, "new_tokens": n,
                      "total_ms": round(dt * 1e3, 1), "tokens_per_s": round(n / dt, 1)}), flush=True)


if __name__ == "__main__":
    main()

"""Peer for the training-step benchmark: the seed configuration through
transformers + peft (+ bitsandbytes NF4 when it imports), on random weights
of any Llama shape, on one GPU, in the same run as libftq's benchmark.

  python3 bench/peer/train_step_hf.py --shape 7b --batch 4 --seq 512 [--mode qlora|lora-bf16] [--no-recompute]

qlora:     base linear layers bnb Linear4bit NF4 (bf16 compute), prepared with
           peft's prepare_model_for_kbit_training (fp32 non-quantized params,
           gradient checkpointing), LoRA r=64 alpha=16 dropout=0.1 on
           q_proj,v_proj, bnb paged AdamW 32-bit — the seed notebook's flow.
lora-bf16: the same LoRA on an unquantized bf16 base (the fallback peer when
           bitsandbytes is missing, and a reference point either way).
Prints one JSON line: tokens/s, step time, peak device memory.

Under torchrun (WORLD_SIZE > 1) it runs PyTorch DDP, one process per GPU,
each with its own random batch (the multi-GPU peer of bench_step --nproc):

  python3 -m torch.distributed.run --nproc_per_node 2 bench/peer/train_step_hf.py --shape 7b ...

Rank 0 prints the line, tokens/s over all ranks.
"""
import argparse
import json
import os
import time

import torch

SHAPES = {  # hidden, intermediate, layers, heads, kv heads, vocab
    "tiny": (256, 688, 2, 4, 4, 32000),
    "135m": (576, 1536, 30, 9, 3, 49152),
    "7b": (4096, 11008, 32, 32, 32, 32000),
    "8b": (4096, 14336, 32, 32, 8, 128256),
    "70b": (8192, 28672, 80, 64, 8, 32000),
}


def build(args):
    from transformers import LlamaConfig, LlamaForCausalLM

    h, i, L, nh, nkv, V = SHAPES[args.shape]
    cfg = LlamaConfig(hidden_size=h, intermediate_size=i, num_hidden_layers=L, num_attention_heads=nh,
                      num_key_value_heads=nkv, vocab_size=V, max_position_embeddings=4096,
                      torch_dtype=torch.bfloat16)
    torch.manual_seed(0)
    with torch.device(f"cuda:{torch.cuda.current_device()}"):
        model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    if args.mode == "qlora":
        import bitsandbytes as bnb

        for name, mod in list(model.named_modules()):
            for child_name, child in list(mod.named_children()):
                if isinstance(child, torch.nn.Linear) and child_name != "lm_head":
                    q = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=False,
                                          compute_dtype=torch.bfloat16, quant_type="nf4", device="meta")
                    q.weight = bnb.nn.Params4bit(child.weight.data, requires_grad=False, quant_type="nf4").to(f"cuda:{torch.cuda.current_device()}")
                    setattr(mod, child_name, q)
                    del child
        model.is_loaded_in_4bit = True
        torch.cuda.empty_cache()
    return model


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="7b", choices=sorted(SHAPES))
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--mode", default="qlora", choices=["qlora", "lora-bf16"])
    ap.add_argument("--no-recompute", action="store_true")
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()

    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        torch.distributed.init_process_group("nccl")
    model = build(args)
    recompute = not args.no_recompute
    # DDP needs non-reentrant checkpointing (trl's advice for QLoRA + DDP)
    gc_kwargs = {"use_reentrant": False} if world > 1 else None
    if args.mode == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=recompute,
                                                gradient_checkpointing_kwargs=gc_kwargs)
    elif recompute:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=gc_kwargs)
        model.enable_input_require_grads()
    model.config.use_cache = False
    model = get_peft_model(model, LoraConfig(r=64, lora_alpha=16, lora_dropout=0.1, bias="none",
                                             task_type="CAUSAL_LM", target_modules=["q_proj", "v_proj"]))
    params = [p for p in model.parameters() if p.requires_grad]
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[torch.cuda.current_device()])
    if args.mode == "qlora":
        import bitsandbytes as bnb
        opt = bnb.optim.PagedAdamW32bit(params, lr=2e-4, weight_decay=0.001)
    else:
        opt = torch.optim.AdamW(params, lr=2e-4, weight_decay=0.001)
    model.train()
    V = (model.module if world > 1 else model).config.vocab_size
    gen = torch.Generator(device="cuda").manual_seed(rank)

    def step():
        ids = torch.randint(0, V, (args.batch, args.seq), device="cuda", generator=gen)
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 0.3)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return out.loss.item()

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / args.steps
    if world > 1:
        torch.distributed.destroy_process_group()
    if rank != 0:
        return
    print(json.dumps({
        "bench": "train_step", "impl": "transformers+peft" + ("+bitsandbytes" if args.mode == "qlora" else ""),
        "mode": args.mode, "world": world, "device": torch.cuda.get_device_name(), "shape": args.shape, "batch": args.batch,
        "seq": args.seq, "recompute": recompute, "step_ms": round(dt * 1e3, 2),
        "tokens_per_s": round(world * args.batch * args.seq / dt, 1),
        "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3), "loss": round(loss, 4),
        "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__,
                     "peft": __import__("peft").__version__},
    }))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The seed notebook's flow from Python: load a model with its linear layers
quantized to NF4, add a LoRA adapter, fine-tune it on the example data set
(examples/data: catalog records, chat format, assistant-only loss), save it,
and generate — measuring greedy exact match on held-out prompts before and
after training.

    python3 examples/python/seed_flow.py                 # SmolLM2-135M-Instruct (scripts/get-model.sh)
    python3 examples/python/seed_flow.py --model DIR_OR_GGUF --steps 200 --eval 50
    python3 examples/python/seed_flow.py --tiny          # a small random model: a quick smoke run

The library is found through FTQ_LIBRARY, the source tree's build folder or
an installed libftq (see libftq/__init__.py).
"""
import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import libftq  # noqa: E402

ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
DATA = os.path.join(ROOT, "examples", "data")
DEFAULT_GGUF = os.environ.get("FTQ_SMOLLM2_GGUF") or os.path.expanduser(
    "~/.cache/libftq/SmolLM2-135M-Instruct.Q4_1.gguf")
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=512, bos_token_id=1, eos_token_id=2)


def exact_match_rate(model, tok, rows, max_new_tokens, stream=False):
    """Greedy answers to held-out prompts through the chat template, scored by exact match."""
    hits = 0
    for i, row in enumerate(rows):
        text = tok.apply_chat_template([{"role": "user", "content": row["prompt"]}], add_generation_prompt=True)
        pieces = []
        show = stream and i == 0

        def on_token(token, index):
            if show and not tok.is_special(token):
                pieces.append(tok.token_to_piece(token))
                sys.stdout.write(pieces[-1].decode("utf-8", "replace"))
                sys.stdout.flush()
            return False

        if show:
            print("    answer: ", end="")
        out = model.generate(tok.encode(text), max_new_tokens=max_new_tokens, callback=on_token)
        if show:
            print()
        hits += libftq.exact_match(tok.decode(out.tokens, skip_special_tokens=True), row["reference"])
    return hits


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=DEFAULT_GGUF, help="GGUF file or Hugging Face folder")
    ap.add_argument("--tokenizer", help="tokenizer (default: the model's own)")
    ap.add_argument("--tiny", action="store_true", help="a small random model with the SmolLM2 tokenizer")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--eval", type=int, default=20, help="held-out prompts for exact match")
    ap.add_argument("--out", default="seed-flow-output", help="folder for the adapter and checkpoint")
    a = ap.parse_args()

    def log(level, message):
        if level <= libftq.LogLevel.WARN:
            print(f"  [{level.name.lower()}] {message}")

    print(f"libftq {libftq.version()} ({libftq.load_library().path})")
    with libftq.Context(a.device, num_threads=a.threads, log=log) as ctx:
        print(f"device: {ctx.device_name}")
        # 1. the base model, its linear layers quantized to NF4 as they load (BitsAndBytesConfig)
        quant = dict(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=False)
        if a.tiny:
            tok = libftq.Tokenizer(a.tokenizer or os.path.join(ROOT, "tests", "ref", "tok", "smollm2"))
            model = libftq.Model.init_random(ctx, dict(TINY, vocab_size=tok.vocab_size), seed=0, **quant)
        else:
            if not os.path.exists(a.model):
                sys.exit(f"{a.model} not found: run scripts/get-model.sh, or pass --model or --tiny")
            tok = libftq.Tokenizer(a.tokenizer or a.model)
            model = libftq.Model.load(ctx, a.model, **quant)
        print(f"model: {model.config_string('architectures')}, {model.parameter_count() / 1e6:.1f} M parameters, "
              f"linear layers {model.parameter_bytes('linear') / 2**20:.1f} MiB in NF4")

        # 2. a LoRA adapter (PEFT's LoraConfig names)
        lora = libftq.Lora(model, r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", seed=0)
        print(f"adapter: {lora.num_parameters} trainable parameters, scaling {lora.scaling}")

        # 3. the data: chat rows, only the assistant's answers trained
        data = libftq.Dataset(ctx, tok, os.path.join(DATA, "catalog_train_messages.jsonl"), assistant_only_loss=True,
                              max_seq_length=256, per_device_train_batch_size=8, seed=0)
        with open(os.path.join(DATA, "catalog_eval_prompts.jsonl")) as f:
            held_out = [json.loads(line) for line in f][:a.eval]

        lora.active = True
        before = exact_match_rate(model, tok, held_out, 32, stream=True)
        print(f"before training: exact match {before}/{len(held_out)}")

        # 4. training (transformers' Trainer loop, PEFT-style adapter, AdamW)
        t0 = time.time()

        def on_log(record):
            if "loss" in record:
                print(f"  step {record['step']:4d}  loss {record['loss']:.4f}  lr {record['learning_rate']:.2e}  "
                      f"{record.get('tokens_per_second', 0):.0f} tokens/s")

        with libftq.Trainer(model, lora, data, max_steps=a.steps, learning_rate=5e-4, lr_scheduler_type="cosine",
                            warmup_ratio=0.03, max_grad_norm=0.3, weight_decay=0.001,
                            logging_steps=max(a.steps // 10, 1), on_log=on_log) as trainer:
            plan = trainer.plan()
            print(f"memory plan: {json.dumps(plan)[:160]}...")
            trainer.train()
            print(f"trained {trainer.global_step} steps in {time.time() - t0:.1f} s")
            # 5. save: a training checkpoint (adapter + optimizer + data cursor)
            os.makedirs(a.out, exist_ok=True)
            trainer.save_checkpoint(os.path.join(a.out, "checkpoint"))
            print(f"saved {os.path.join(a.out, 'checkpoint')}")

        # 6. generate with the trained adapter
        after = exact_match_rate(model, tok, held_out, 32, stream=True)
        print(f"after training: exact match {after}/{len(held_out)}")
        for h in (data, lora, model, tok):
            h.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

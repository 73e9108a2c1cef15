"""No memory growth across create/destroy loops: the context's own
accounting returns to zero, and the process's resident memory stays flat
over many cycles of every handle (host leaks would show there)."""
import gc
import os

import numpy as np

import libftq
from libftq._core import live_handles
from conftest import DATA, REF, TINY_CONFIG


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


TOKENIZER_JSON = (REF / "tok" / "sp_legacy" / "tokenizer.json").read_text()
X = np.random.default_rng(0).standard_normal(4096).astype(np.float32)


def cycle(explicit, data):
    ctx = libftq.Context("cpu", num_threads=1, log=lambda level, m: None)
    model = libftq.Model.init_random(ctx, dict(TINY_CONFIG, vocab_size=1481), seed=1, load_in_4bit=True,
                                     bnb_4bit_quant_type="nf4")
    lora = libftq.Lora(model, r=4, target_modules="all-linear")
    lora.active = True
    model.generate([1, 2, 3], max_new_tokens=2, callback=lambda t, i: False)
    q = libftq.Quantizer(ctx, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True)
    t = q.quantize(X)
    t.dequantize()
    opts = libftq.Options(r=8, target_modules=["q_proj"])
    opts.to_json()
    tok = libftq.Tokenizer.from_json(TOKENIZER_JSON)
    tok.decode(tok.encode("hello world"))
    ds = libftq.Dataset(ctx, tok, data, max_seq_length=0, per_device_train_batch_size=2)
    batch = ds.next_batch()
    batch.input_ids
    trainer = libftq.Trainer(model, lora, ds, max_steps=1, logging_steps=1, on_log=lambda r: False)
    trainer.train()
    if explicit:
        mem_before = ctx.memory()[0]
        assert mem_before > 0
        for h in (trainer, batch, ds, tok, opts, t, q, lora, model):
            h.close()
        assert ctx.memory()[0] == 0
        ctx.close()
    # else: everything is dropped and left to the garbage collector


def test_no_growth_across_create_destroy_loops(tmp_path):
    data = tmp_path / "rows.jsonl"
    with open(DATA / "catalog_train_text.jsonl") as f:
        data.write_text("".join(f.readlines()[:16]))
    for _ in range(5):
        cycle(True, data)
        cycle(False, data)
    gc.collect()
    before, handles = rss(), live_handles()
    for i in range(80):
        cycle(i % 2 == 0, data)
    gc.collect()
    assert live_handles() == handles  # every handle was released, explicitly or by the collector
    grown = rss() - before
    assert grown < 8 << 20, f"resident memory grew by {grown / 2**20:.1f} MiB over 80 cycles"


def test_accounting_returns_to_zero(ctx):
    for _ in range(20):
        with libftq.Model.init_random(ctx, TINY_CONFIG, seed=2) as m:
            with libftq.Lora(m, r=8):
                assert ctx.memory()[0] > 0
        assert ctx.memory()[0] == 0
        with libftq.Quantizer(ctx) as q:
            with q.quantize(X):
                assert ctx.memory()[0] > 0
        assert ctx.memory()[0] == 0

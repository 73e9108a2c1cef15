"""Peer for bench_quant: bitsandbytes' CUDA quantize_4bit / dequantize_4bit on
the same Llama-2-7B shapes, in the same run, and the device-to-device copy
bandwidth through torch. Prints JSON lines like bench_quant."""
import json
import sys
import time

import torch

import bitsandbytes as bnb
import bitsandbytes.functional as BF

dev = torch.device("cuda")
name = torch.cuda.get_device_name()
shapes = [(4096, 4096), (11008, 4096), (4096, 11008)]
counts = [4, 2, 1]
quick = "--quick" in sys.argv
reps = 5 if quick else 30


def events_ms(fn, reps, batch):
    times = []
    for r in range(-2, reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for k in range(batch):
            fn(k)
        end.record()
        torch.cuda.synchronize()
        if r >= 0:
            times.append(start.elapsed_time(end) / batch)
    times.sort()
    return times[len(times) // 2]


def copy_gbps(nbytes, reps=20):
    a = torch.empty(nbytes, dtype=torch.uint8, device=dev).fill_(7)
    b = torch.empty_like(a)
    ms = events_ms(lambda k: b.copy_(a), reps, 1)
    return ms, 2 * nbytes / (ms * 1e6)


copy_ms, copy = copy_gbps(1 << 30)
print(json.dumps({"bench": "copy", "peer": "torch", "device": name, "bytes": 1 << 30, "median_ms": round(copy_ms, 4),
                  "gbps": round(copy, 1)}))

for rows, cols in shapes:
    for nested in (False, True):
        ws = [(torch.rand(rows, cols, device=dev, dtype=torch.bfloat16) - 0.5) * 0.04 for _ in range(3)]
        qs = [BF.quantize_4bit(w, blocksize=64, compress_statistics=nested, quant_type="nf4") for w in ws]
        outs = [torch.empty(rows, cols, device=dev, dtype=torch.bfloat16) for _ in range(3)]
        del ws
        p, s = qs[0]
        read = p.numel() * p.element_size() + s.absmax.numel() * s.absmax.element_size()
        if nested:
            read += s.state2.absmax.numel() * 4 + 1024
        nbytes = read + rows * cols * 2
        ms = events_ms(lambda k: BF.dequantize_4bit(qs[k % 3][0], qs[k % 3][1], out=outs[k % 3]), reps, 10)
        gbs = nbytes / (ms * 1e6)
        print(json.dumps({"bench": "dequant", "peer": "bitsandbytes " + bnb.__version__, "device": name,
                          "scheme": "nf4", "blocksize": 64, "double_quant": nested, "out": "bf16", "rows": rows,
                          "cols": cols, "bytes": nbytes, "median_ms": round(ms, 4), "gbps": round(gbs, 1),
                          "copy_gbps": round(copy, 1), "pct_of_copy": round(100 * gbs / copy, 1)}))
        del qs, outs
        torch.cuda.empty_cache()

# every linear weight of Llama-2-7B, bf16 -> NF4 + double quant (the same 3
# source tensors reused, as bench_quant does)
srcs = [(torch.rand(r, c, device=dev, dtype=torch.bfloat16) - 0.5) * 0.04 for r, c in shapes]
layers = 32
best = best_wall = None
for rnd in range(1 if quick else 3):
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    t0 = time.perf_counter()
    start.record()
    out = []
    for _ in range(layers):
        for s, cnt in zip(srcs, counts):
            for _ in range(cnt):
                out.append(BF.quantize_4bit(s, blocksize=64, compress_statistics=True, quant_type="nf4"))
    end.record()
    torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    t = start.elapsed_time(end) / 1e3
    best = t if best is None else min(best, t)
    best_wall = wall if best_wall is None else min(best_wall, wall)
    del out
params = sum(layers * cnt * r * c for (r, c), cnt in zip(shapes, counts))
print(json.dumps({"bench": "quantize_7b", "peer": "bitsandbytes " + bnb.__version__, "device": name, "scheme": "nf4",
                  "blocksize": 64, "double_quant": True, "in": "bf16", "tensors": layers * 7, "params": params,
                  "best_s": round(best, 4), "best_wall_s": round(best_wall, 4)}))

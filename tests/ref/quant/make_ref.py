"""Makes the quantizer's reference vectors (quant_ref.bin, bnb_linear_*.safetensors)
from real bitsandbytes, and cross-checks them against bnb_cuda_emul.py.

    python make_ref.py [--out DIR] [--rcp-table src/quant/rcp_table.c | probe.bin] [--emulate]

With a CUDA GPU, bitsandbytes' CUDA kernels produce every vector (that is how
the committed files were made, on an H100). Without one, or with --emulate,
the vectors come from the emulation of those kernels (bitsandbytes' CPU
path follows other rules: see docs/quantization.md), and the double-quant
offset is libftq's deterministic mean instead of torch's CUDA mean.

    python make_ref.py --bnb-cpu-report [--out DIR]

runs bitsandbytes' CPU ops on the committed inputs and reports where they
differ from the committed (CUDA) vectors.
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bnb_cuda_emul as E  # noqa: E402
import refio  # noqa: E402

F32 = np.float32
QTS = ["nf4", "fp4"]
DTS = ["f32", "f16", "bf16"]
BSS = [32, 64, 128, 256, 512, 1024, 2048, 4096]
PREFIX = "model.layers.0.mlp.down_proj."


def round_to(x32, dt):
    return E.from_dtype_bits(E.to_dtype_bits(x32, dt), dt)


def grid_input(rng, bs, dt):
    """Weights-like Gaussian data over 2.5 blocks + 3 (odd length, partial last
    block), block 1 all zeros, a few values subnormal in the input dtype."""
    n = 2 * bs + bs // 2 + 3
    x = (rng.standard_normal(n) * 0.02).astype(F32)
    x[bs:2 * bs] = 0
    sub = {"f32": 1e-40, "bf16": 1e-40, "f16": 3e-6}[dt]
    x[3] = sub
    x[5] = -sub * 0.5
    if n > 2 * bs + 10:
        x[2 * bs + 7] = sub  # in the partial block too
    return round_to(x, dt)


def special_input(dt):
    """One 64-block per edge case (bs 64), odd total length."""
    rng = np.random.default_rng(1234)
    blocks = []

    def gauss():
        return (rng.standard_normal(64) * 0.05).astype(F32)

    b = gauss(); b[10] = np.nan; blocks.append(b)                     # NaN among numbers
    b = gauss(); b[20] = np.inf; blocks.append(b)                     # +inf
    b = gauss(); b[30] = -np.inf; blocks.append(b)                    # -inf
    blocks.append(np.full(64, np.nan, F32))                           # all NaN
    b = (rng.standard_normal(64) * 1e-39).astype(F32); blocks.append(b)  # subnormal only (f32/bf16)
    # NF4 thresholds exactly, and their float neighbours, with absmax 1
    t = E.NF4_THR
    b = np.zeros(64, F32); b[0] = 1.0
    b[1:16] = t; b[16:31] = np.nextafter(t, F32(2)); b[31:46] = np.nextafter(t, F32(-2)); blocks.append(b)
    # FP4 pivots (both signs), neighbours, absmax 1
    t = E.FP4_THR
    b = np.zeros(64, F32); b[0] = -1.0
    b[1:8] = t; b[8:15] = -t; b[15:22] = np.nextafter(t, F32(2)); b[22:29] = -np.nextafter(t, F32(2))
    b[29:36] = np.nextafter(t, F32(0)); b[36] = -0.0; blocks.append(b)
    b = gauss(); b = (b / np.abs(b).max() * F32(3.3e38)).astype(F32); blocks.append(b)  # near FLT_MAX (inf in f16)
    b = gauss() * F32(1e-36); blocks.append(b.astype(F32))            # tiny normals
    b = gauss(); b[::3] = -0.0; b[1::5] = 0.0; blocks.append(b)       # signed zeros
    b = gauss(); b[:] = np.abs(b); blocks.append(b)                   # one sign only
    x = np.concatenate(blocks + [np.full(5, np.nan, F32)])            # partial all-NaN block, odd n
    with np.errstate(all="ignore"):
        return round_to(x, dt)


def dq_input(rng, bs, nblocks, tail, dt):
    n = bs * nblocks + tail
    # per-row scale varies so the absmax values spread (as in real weights)
    x = rng.standard_normal(n).astype(F32) * (0.01 + 0.04 * rng.random(n // 512 + 1).astype(F32)).repeat(512)[:n]
    return round_to(x.astype(F32), dt)


def blockwise8_input(rng, code):
    x = (rng.standard_normal(256 * 5 + 100) * 0.3).astype(F32)
    mids = ((code[:-1] + code[1:]) * F32(0.5)).astype(F32)
    b = np.zeros(256, F32); b[0] = 1.0
    b[1:256] = mids[:255]; x[256:512] = b                  # exact midpoints, absmax 1
    b = np.zeros(256, F32); b[0] = -1.0
    b[1:256] = np.nextafter(mids[:255], F32(2)); x[512:768] = b
    x[800] = np.nan
    return x


def ckpt_cases():
    return [("nf4", True, "bf16"), ("nf4", False, "f16"), ("fp4", True, "f32"), ("fp4", False, "bf16")]


TORCH_DT = None


def torch_dtype(dt):
    import torch
    return {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[dt]


def to_torch(x32, dt, dev):
    import torch
    return torch.from_numpy(np.ascontiguousarray(x32, dtype=F32)).to(dev).to(torch_dtype(dt))


def from_torch(t, dt=None):
    import torch
    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(np.uint16)
    return t.numpy()


def bits_equal(a, b):
    a = np.ascontiguousarray(a)
    b = np.ascontiguousarray(b)
    if a.shape != b.shape:
        return False, -1
    av = a.view(np.uint8).reshape(a.size, -1) if a.size else a
    bv = b.view(np.uint8).reshape(b.size, -1) if b.size else b
    diff = np.any(av != bv, axis=-1) if a.size else np.zeros(0, bool)
    return not diff.any(), int(diff.sum())


class Checker:
    def __init__(self):
        self.lines = []
        self.bad = 0

    def check(self, what, ref, emu):
        ok, nd = bits_equal(ref, emu)
        if not ok:
            self.bad += 1
            self.lines.append(f"MISMATCH {what}: {nd} of {np.asarray(ref).size} elements differ")
        return ok


def run(args):
    rcp = E.Rcp(args.rcp_table)
    use_bnb = not args.emulate
    dev = "cpu"
    if use_bnb:
        import torch
        if args.bnb_device == "cpu":  # exercises the code path; not for committed vectors
            dev = "cpu"
            import bitsandbytes as bnb
            import bitsandbytes.functional as BF
        elif not torch.cuda.is_available():
            print("no CUDA device: using the emulation (see --emulate)")
            use_bnb = False
        else:
            dev = "cuda"
            import bitsandbytes as bnb
            import bitsandbytes.functional as BF
    os.makedirs(args.out, exist_ok=True)
    w = refio.Writer()
    chk = Checker()
    meta = {"source": "bitsandbytes CUDA" if use_bnb else "emulation (bnb_cuda_emul.py)"}
    if use_bnb:
        import torch
        meta.update(bitsandbytes=bnb.__version__, torch=torch.__version__,
                    device=torch.cuda.get_device_name() if dev == "cuda" else "cpu")
        code8 = BF.create_dynamic_map().float().numpy()
    else:
        code8 = np.fromfile(os.path.join(os.path.dirname(os.path.abspath(__file__)), "dynamic_map.f32"), dtype="<f4")
    w.add("dynamic_map", code8.astype(F32))
    rng = np.random.default_rng(20261127)

    # ---- 4-bit grid: every quant type x dtype x block size -----------------------
    for qt in QTS:
        for dt in DTS:
            for bs in BSS:
                x = grid_input(rng, bs, dt)
                name = f"q4/{qt}/{dt}/bs{bs}"
                _four_bit_case(w, chk, name, x, bs, qt, dt, rcp, use_bnb, dev)
    # ---- special values ---------------------------------------------------------
    for qt in QTS:
        for dt in DTS:
            x = special_input(dt)
            _four_bit_case(w, chk, f"special/{qt}/{dt}", x, 64, qt, dt, rcp, use_bnb, dev)
    # ---- double quantization ----------------------------------------------------
    for qt, dt, bs, nblocks, tail in [("nf4", "bf16", 64, 600, 37), ("fp4", "f16", 128, 520, 1),
                                      ("nf4", "f32", 32, 300, 0), ("nf4", "bf16", 64, 1500, 0)]:
        x = dq_input(rng, bs, nblocks, tail, dt)
        name = f"dq/{qt}/{dt}/bs{bs}/n{x.size}"
        w.add(name + "/x", E.to_dtype_bits(x, dt), dt)
        if use_bnb:
            xt = to_torch(x, dt, dev)
            p0, qs0 = BF.quantize_4bit(xt, blocksize=bs, compress_statistics=False, quant_type=qt)
            p, qs = BF.quantize_4bit(xt, blocksize=bs, compress_statistics=True, quant_type=qt)
            deq = BF.dequantize_4bit(p, qs)
            packed, qabs = from_torch(p).reshape(-1), from_torch(qs.absmax)
            am2, offset = from_torch(qs.state2.absmax), F32(qs.offset.item())
            qcode = from_torch(qs.state2.code).astype(F32)
            absmax_raw = from_torch(qs0.absmax)
            deq = from_torch(deq).reshape(-1)
        else:
            packed, absmax_raw = E.quantize_4bit(x, bs, qt, rcp)
            packed, qabs, am2, offset = E.quantize_4bit_nested(x, bs, qt, code8, rcp)
            qcode = code8
            ah = E.dequantize_absmax_nested(qabs, am2, code8, offset)
            deq = E.to_dtype_bits(E.dequantize_4bit(packed, ah, bs, qt, x.size), dt)
        w.add(name + "/packed", packed, "u8")
        w.add(name + "/absmax_raw", absmax_raw.astype(F32))
        w.add(name + "/qabsmax", qabs, "u8")
        w.add(name + "/absmax2", am2.astype(F32))
        w.add(name + "/offset", np.array([offset], F32))
        w.add(name + "/code", qcode)
        w.add(name + "/deq", deq, dt)
        # cross-checks: emulation with bnb's offset; our mean vs torch's
        ep, eam = E.quantize_4bit(x, bs, qt, rcp)
        chk.check(name + " packed", packed, ep)
        chk.check(name + " absmax_raw", absmax_raw, eam)
        _, eq, eam2, _ = E.quantize_4bit_nested(x, bs, qt, qcode, rcp, offset=offset)
        chk.check(name + " qabsmax", qabs, eq)
        chk.check(name + " absmax2", am2, eam2)
        ah = E.dequantize_absmax_nested(qabs, am2, qcode, offset)
        chk.check(name + " deq", deq, E.to_dtype_bits(E.dequantize_4bit(packed, ah, bs, qt, x.size), dt))
        mine = E.libftq_mean(absmax_raw)
        ulps = abs(int(np.array([mine], F32).view(np.int32)[0]) - int(np.array([offset], F32).view(np.int32)[0]))
        chk.lines.append(f"{name}: offset {offset!r} (bnb) vs {mine!r} (libftq mean): {ulps} ulp")
    # ---- 8-bit blockwise with the dynamic map -----------------------------------
    x = blockwise8_input(rng, code8)
    w.add("q8/x", x)
    if use_bnb:
        q, qs = BF.quantize_blockwise(torch.from_numpy(x).to(dev), blocksize=256)
        deq = BF.dequantize_blockwise(q, qs)
        q, am, deq = from_torch(q), from_torch(qs.absmax), from_torch(deq)
    else:
        q, am = E.quantize_blockwise8(x, code8, 256, rcp)
        deq = E.dequantize_blockwise8(q, am, code8, 256)
    w.add("q8/q", q, "u8")
    w.add("q8/absmax", am.astype(F32))
    w.add("q8/deq", deq.astype(F32))
    eq, eam = E.quantize_blockwise8(x, code8, 256, rcp)
    chk.check("q8 q", q, eq)
    chk.check("q8 absmax", am, eam)
    chk.check("q8 deq", deq, E.dequantize_blockwise8(q, am, code8, 256))
    # ---- checkpoints: a Linear4bit's state dict ---------------------------------
    for qt, cs, dt in ckpt_cases():
        _ckpt_case(w, chk, args.out, qt, cs, dt, rng, rcp, code8, use_bnb, dev)
    w.add_text("meta", json.dumps(meta, sort_keys=True))
    os.makedirs(args.out, exist_ok=True)
    w.save(os.path.join(args.out, "quant_ref.bin"))
    print("\n".join(chk.lines))
    print(f"{len(w.records)} records written; {chk.bad} emulation mismatches; source: {meta['source']}")
    return 0


def _four_bit_case(w, chk, name, x, bs, qt, dt, rcp, use_bnb, dev):
    w.add(name + "/x", E.to_dtype_bits(x, dt), dt)
    if use_bnb:
        import bitsandbytes.functional as BF
        xt = to_torch(x, dt, dev)
        p, qs = BF.quantize_4bit(xt, blocksize=bs, compress_statistics=False, quant_type=qt)
        deq = BF.dequantize_4bit(p, qs)
        packed, absmax, deq = from_torch(p).reshape(-1), from_torch(qs.absmax), from_torch(deq).reshape(-1)
    else:
        packed, absmax = E.quantize_4bit(x, bs, qt, rcp)
        deq = E.to_dtype_bits(E.dequantize_4bit(packed, absmax, bs, qt, x.size), dt)
    w.add(name + "/packed", packed, "u8")
    w.add(name + "/absmax", absmax.astype(F32))
    w.add(name + "/deq", deq, dt)
    ep, eam = E.quantize_4bit(x, bs, qt, rcp)
    chk.check(name + " packed", packed, ep)
    chk.check(name + " absmax", absmax, eam)
    chk.check(name + " deq", deq, E.to_dtype_bits(E.dequantize_4bit(packed, absmax, bs, qt, x.size), dt))


def _py_dtype(dt):
    return {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}[dt]


def _ckpt_case(w, chk, outdir, qt, cs, dt, rng, rcp, code8, use_bnb, dev):
    out_f, in_f = 64, 576
    wt = round_to((rng.standard_normal((out_f, in_f)) * 0.03).astype(F32), dt)
    tag = f"{qt}_{'dq' if cs else 'nodq'}_{dt}"
    name = f"ckpt/{tag}"
    w.add(name + "/weight_orig", E.to_dtype_bits(wt, dt), dt)
    if use_bnb:
        import bitsandbytes as bnb
        import bitsandbytes.functional as BF
        import torch
        lin = bnb.nn.Linear4bit(in_f, out_f, bias=False, compute_dtype=torch_dtype(dt), compress_statistics=cs,
                                quant_type=qt)
        lin.weight = bnb.nn.Params4bit(to_torch(wt, dt, "cpu"), requires_grad=False, quant_type=qt,
                                       compress_statistics=cs, blocksize=64)
        lin = lin.to(dev)
        sd = {PREFIX + k: v.detach().cpu().contiguous() for k, v in lin.state_dict().items()}
        deq = from_torch(BF.dequantize_4bit(lin.weight.data, lin.weight.quant_state)).reshape(-1)
        from safetensors.torch import save_file
        save_file(sd, os.path.join(outdir, f"bnb_linear_{tag}.safetensors"), metadata={"format": "pt"})
        tensors = {k: from_torch(v) for k, v in sd.items()}
    else:
        x = wt.reshape(-1)
        if cs:
            packed, qabs, am2, offset = E.quantize_4bit_nested(x, 64, qt, code8, rcp)
            ah = E.dequantize_absmax_nested(qabs, am2, code8, offset)
        else:
            packed, ah = E.quantize_4bit(x, 64, qt, rcp)
        deq = E.to_dtype_bits(E.dequantize_4bit(packed, ah, 64, qt, x.size), dt)
        d = {"quant_type": qt, "blocksize": 64, "dtype": _py_dtype(dt), "shape": [out_f, in_f]}
        tensors = {PREFIX + "weight": packed.reshape(-1, 1), PREFIX + "weight.absmax": qabs if cs else ah,
                   PREFIX + "weight.quant_map": E.lut_4bit(qt) if qt == "nf4" else _py_fp4_map()}
        if cs:
            d.update(nested_blocksize=256, nested_dtype="float32", nested_offset=float(offset))
            tensors[PREFIX + "weight.nested_absmax"] = am2
            tensors[PREFIX + "weight.nested_quant_map"] = code8
        tensors[PREFIX + "weight.quant_state.bitsandbytes__" + qt] = np.frombuffer(json.dumps(d).encode(), np.uint8)
    for k, v in sorted(tensors.items()):
        w.add(f"{name}/sd/{k}", v)
    w.add(name + "/deq", deq, dt)
    # cross-check the dequantization from the state dict's own tensors
    js = json.loads(bytes(tensors[PREFIX + "weight.quant_state.bitsandbytes__" + qt]).decode())
    packed = tensors[PREFIX + "weight"].reshape(-1)
    if cs:
        ah = E.dequantize_absmax_nested(tensors[PREFIX + "weight.absmax"], tensors[PREFIX + "weight.nested_absmax"],
                                        tensors[PREFIX + "weight.nested_quant_map"], F32(js["nested_offset"]))
    else:
        ah = tensors[PREFIX + "weight.absmax"]
    chk.check(name + " deq", deq, E.to_dtype_bits(E.dequantize_4bit(packed, ah, 64, qt, out_f * in_f), dt))
    chk.lines.append(f"{name}: quant_state json {json.dumps(js)}")


def _py_fp4_map():
    # get_4bit_type("fp4"): the python table (+0 for code 8), divided by 12
    data = np.array([0, 0.0625, 8.0, 12.0, 4.0, 6.0, 2.0, 3.0, -0, -0.0625, -8.0, -12.0, -4.0, -6.0, -2.0, -3.0])
    return (data.astype(F32) / F32(12)).astype(F32)


def bnb_cpu_report(args):
    """Where bitsandbytes' CPU path differs from the committed CUDA vectors."""
    import bitsandbytes.functional as BF
    import torch
    ref = refio.load(os.path.join(args.out, "quant_ref.bin"))
    rows = []
    for qt in QTS:
        for dt in DTS:
            names = [f"q4/{qt}/{dt}/bs{bs}" for bs in BSS] + [f"special/{qt}/{dt}"]
            for name in names:
                bs = int(name.split("bs")[1]) if "/bs" in name else 64
                x = E.from_dtype_bits(ref[name + "/x"][1], dt)
                p, qs = BF.quantize_4bit(to_torch(x, dt, "cpu"), blocksize=bs, quant_type=qt)
                _, np_ = bits_equal(ref[name + "/packed"][1], from_torch(p).reshape(-1))
                _, na = bits_equal(ref[name + "/absmax"][1], from_torch(qs.absmax))
                # dequantize the CUDA codes with the CPU kernel
                qs.absmax = torch.from_numpy(ref[name + "/absmax"][1].copy())
                d = BF.dequantize_4bit(torch.from_numpy(ref[name + "/packed"][1].copy()).reshape(-1, 1), qs)
                _, nd = bits_equal(ref[name + "/deq"][1], from_torch(d).reshape(-1))
                rows.append(f"{name}: packed bytes differing {np_}, absmax {na}, dequant {nd}")
    x = ref["q8/x"][1]
    q, qs = BF.quantize_blockwise(torch.from_numpy(x.copy()), blocksize=256)
    rows.append(f"q8: codes differing {bits_equal(ref['q8/q'][1], from_torch(q))[1]}, "
                f"absmax {bits_equal(ref['q8/absmax'][1], from_torch(qs.absmax))[1]}")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=here)
    ap.add_argument("--rcp-table", default=os.path.join(here, "..", "..", "..", "src", "quant", "rcp_table.c"))
    ap.add_argument("--emulate", action="store_true")
    ap.add_argument("--bnb-cpu-report", action="store_true")
    ap.add_argument("--bnb-device", default="cuda", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.rcp_table and not os.path.exists(a.rcp_table):
        print(f"no {a.rcp_table}: emulating with the correctly rounded reciprocal")
        a.rcp_table = None
    sys.exit(bnb_cpu_report(a) if a.bnb_cpu_report else run(a))

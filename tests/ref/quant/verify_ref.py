"""Checks the committed reference vectors (quant_ref.bin, made by real
bitsandbytes on a GPU) against the emulation in bnb_cuda_emul.py, record by
record. Exit status 1 on any difference.

    python verify_ref.py [quant_ref.bin] [rcp table: src/quant/rcp_table.c or the probe's .bin]
"""
import json
import os
import sys

import numpy as np

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
import bnb_cuda_emul as E  # noqa: E402
import refio  # noqa: E402

F32 = np.float32


def same(a, b):
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    return a.shape == b.shape and a.tobytes() == b.tobytes()


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "quant_ref.bin")
    rcp = E.Rcp(sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, "..", "..", "..", "src", "quant", "rcp_table.c"))
    ref = refio.load(path)
    get = lambda k: ref[k][1]  # noqa: E731
    bad, checked = [], 0

    def check(what, a, b):
        nonlocal checked
        checked += 1
        if not same(a, b):
            bad.append(what)

    cases = sorted({k.rsplit("/", 1)[0] for k in ref if k.startswith(("q4/", "special/"))})
    for c in cases:
        qt, dt = c.split("/")[1:3]
        bs = int(c.split("bs")[1]) if "/bs" in c else 64
        x = E.from_dtype_bits(get(c + "/x"), dt)
        p, am = E.quantize_4bit(x, bs, qt, rcp)
        check(c + " packed", get(c + "/packed"), p)
        check(c + " absmax", get(c + "/absmax"), am)
        check(c + " deq", get(c + "/deq"), E.to_dtype_bits(E.dequantize_4bit(p, am, bs, qt, x.size), dt))
    for c in sorted({k.rsplit("/", 1)[0] for k in ref if k.startswith("dq/")}):
        qt, dt, bs = c.split("/")[1], c.split("/")[2], int(c.split("/")[3][2:])
        x = E.from_dtype_bits(get(c + "/x"), dt)
        off = get(c + "/offset")[0]
        p, q, am2, _ = E.quantize_4bit_nested(x, bs, qt, get(c + "/code"), rcp, offset=off)
        check(c + " packed", get(c + "/packed"), p)
        check(c + " qabsmax", get(c + "/qabsmax"), q)
        check(c + " absmax2", get(c + "/absmax2"), am2)
        ah = E.dequantize_absmax_nested(q, am2, get(c + "/code"), off)
        check(c + " deq", get(c + "/deq"), E.to_dtype_bits(E.dequantize_4bit(p, ah, bs, qt, x.size), dt))
        mine = E.libftq_mean(get(c + "/absmax_raw"))
        print(f"{c}: offset bnb {off!r} libftq {mine!r} "
              f"({abs(int(np.int32(F32(off).view(np.int32))) - int(np.int32(mine.view(np.int32))))} ulp)")
    code8 = get("dynamic_map")
    q, am = E.quantize_blockwise8(get("q8/x"), code8, 256, rcp)
    check("q8 q", get("q8/q"), q)
    check("q8 absmax", get("q8/absmax"), am)
    check("q8 deq", get("q8/deq"), E.dequantize_blockwise8(q, am, code8, 256))
    for c in sorted({k.split("/sd/")[0] for k in ref if "/sd/" in k}):
        sd = {k.split("/sd/")[1]: v[1] for k, v in ref.items() if k.startswith(c + "/sd/")}
        qs = [k for k in sd if ".quant_state." in k][0]
        js = json.loads(bytes(sd[qs]).decode())
        pre = qs.split("weight.quant_state.")[0]
        qt, bs, dt = js["quant_type"], js["blocksize"], {"float32": "f32", "float16": "f16", "bfloat16": "bf16"}[js["dtype"]]
        w = E.from_dtype_bits(get(c + "/weight_orig"), dt).reshape(-1)
        if "nested_offset" in js:
            off = F32(js["nested_offset"])
            p, q, am2, _ = E.quantize_4bit_nested(w, bs, qt, sd[pre + "weight.nested_quant_map"], rcp, offset=off)
            check(c + " absmax", sd[pre + "weight.absmax"], q)
            check(c + " nested_absmax", sd[pre + "weight.nested_absmax"], am2)
            ah = E.dequantize_absmax_nested(q, am2, sd[pre + "weight.nested_quant_map"], off)
        else:
            p, ah = E.quantize_4bit(w, bs, qt, rcp)
            check(c + " absmax", sd[pre + "weight.absmax"], ah)
        check(c + " weight", sd[pre + "weight"].reshape(-1), p)
        check(c + " deq", get(c + "/deq"), E.to_dtype_bits(E.dequantize_4bit(p, ah, bs, qt, w.size), dt))
    print(f"{checked} comparisons, {len(bad)} differ" + ("".join("\n  " + b for b in bad)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

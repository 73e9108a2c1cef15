"""Numpy emulation of bitsandbytes' CUDA 4-bit and 8-bit blockwise kernels
(csrc/kernels.cu: kQuantizeBlockwise, kQuantizeBlockwiseSmall,
kDequantizeBlockwise), written from the kernel source to cross-check the
vectors real bitsandbytes produces and to produce them where no GPU exists.

bitsandbytes builds its kernels with --use_fast_math, so the arithmetic is:
  * abs/max/mul/add flush subnormal inputs and results to signed zero (.ftz);
  * the per-block reciprocal is rcp.approx.ftz.f32, which differs from the
    correctly rounded 1/x by one ulp for some mantissas (the table
    rcp_approx_diff.bin, measured on an H100 by rcp_probe.cu, lists them).
Without that table the emulation uses the correctly rounded reciprocal.
"""
import numpy as np

F32, U32, F64 = np.float32, np.uint32, np.float64


def _f(bits):
    return np.array([int(b, 16) for b in bits.split()], dtype=U32).view(F32)


NF4_LUT = _f("bf800000 bf3239b1 bf066b30 beca32a0 be91a24d be3d353f bdba7871 00000000 "
             "3da2faff 3e24cae3 3e7c04dd 3ead033a 3ee1a4b8 3f1007ab 3f3913b3 3f800000")
# dQuantizeNF4's pivots as nvcc compiled them (read off the SASS of
# bitsandbytes 0.50.2): the decimal literals in kernels.cu sit almost exactly
# between two floats, and four of them round (correctly, from the decimal)
# one ulp away from the fp32 midpoints (c[i]+c[i+1])/2: bf591cd9, 3df64863,
# 3f006d03, 3f5c89d9.
NF4_THR = _f("bf591cd9 bf1c5270 beeb8480 beadea76 be703cec be0d38bc bd3a7871 "
             "3d22faff 3df64863 3e5067e0 3e9582d4 3ec753f9 3f006d03 3f248daf 3f5c89d9")
FP4_MAG_LUT = _f("00000000 3baaaaab 3f2aaaab 3f800000 3eaaaaab 3f000000 3e2aaaab 3e800000")
# dQuantizeFP4's pivots sorted ascending, and the magnitude code of each interval
FP4_THR = _f("3b2aaab9 3db00000 3e555555 3e955555 3ed55556 3f155550 3f555555")
FP4_INTERVAL_CODE = np.array([0, 1, 6, 7, 4, 5, 2, 3], dtype=np.uint8)

TINY = F32(2.0 ** -126)
FLT_MAX = np.finfo(F32).max


def ftz(a):
    a = np.asarray(a, dtype=F32)
    return np.where(np.abs(a) < TINY, np.copysign(F32(0), a), a).astype(F32)


CANONICAL_NAN = np.array([0x7FFFFFFF], dtype=U32).view(F32)[0]


def gpu_nan(a):
    """NVIDIA arithmetic returns one NaN (0x7fffffff) whatever the inputs."""
    return np.where(np.isnan(a), CANONICAL_NAN, a).astype(F32)


def mul_ftz(a, b):
    with np.errstate(all="ignore"):
        return gpu_nan(ftz(ftz(a) * ftz(b)))


def add_ftz(a, b):
    with np.errstate(all="ignore"):
        return gpu_nan(ftz(ftz(a) + ftz(b)))


class Rcp:
    """rcp.approx.ftz.f32: the correctly rounded reciprocal, moved to the
    other neighbour of 1/x for the mantissas the table marks."""

    def __init__(self, table_path=None):
        """table_path: the probe's bitmap (.bin), or src/quant/rcp_table.c."""
        self.flip = None
        if table_path and table_path.endswith(".c"):
            import base64
            import re
            import zlib
            text = open(table_path).read().split("ftq_rcp_table_b64[] =", 1)[1]
            raw = zlib.decompress(base64.b64decode("".join(re.findall(r'"([A-Za-z0-9+/=]*)"', text))))
            bits = np.frombuffer(raw, dtype="<u4")
        elif table_path:
            bits = np.fromfile(table_path, dtype="<u4")
        if table_path:
            assert bits.size == (1 << 23) // 32, "rcp table must hold 2^23 bits"
            self.flip = ((bits[:, None] >> np.arange(32, dtype=U32)) & 1).astype(bool).reshape(-1)

    def __call__(self, a):
        a = ftz(a)
        with np.errstate(all="ignore"):
            r = (F32(1) / a).astype(F32)
            if self.flip is not None:
                normal = np.isfinite(a) & (a != 0)
                m = a.view(U32) & U32(0x7FFFFF)
                flip = normal & self.flip[m] & (r != 0) & np.isfinite(r)
                exact = 1.0 / a.astype(F64)
                away = np.abs(r.astype(F64)) < np.abs(exact)  # move away from zero
                rb = r.view(U32).astype(np.int64)
                moved = np.where(away, rb + 1, rb - 1).astype(U32).view(F32)
                r = np.where(flip, moved, r).astype(F32)
        return ftz(r)


def block_absmax(v, n_valid):
    """Per-block absmax as the kernels compute it. v: [nb, bs] fp32 (padded
    with zeros), n_valid: valid items per block. NaN is skipped (fmaxf); a
    block without a number gives 0 when padding takes part (partial block),
    else -FLT_MAX (the reduction's start value)."""
    nb, bs = v.shape
    a = np.abs(ftz(v))
    idx = np.arange(bs)[None, :]
    valid = idx < n_valid[:, None]
    a = np.where(valid & ~np.isnan(a), a, -np.inf)
    m = a.max(axis=1)
    none = m == -np.inf
    m = np.where(none, np.where(n_valid < bs, F32(0), -FLT_MAX), m)
    return m.astype(F32)


def _blocks(x, bs):
    x = np.asarray(x, dtype=F32).reshape(-1)
    n = x.size
    nb = -(-n // bs)
    pad = np.zeros(nb * bs, dtype=F32)
    pad[:n] = x
    n_valid = np.minimum(bs, n - np.arange(nb) * bs)
    return pad.reshape(nb, bs), n_valid, n


def nf4_code(xn):
    xn = np.asarray(xn, dtype=F32)
    with np.errstate(invalid="ignore"):
        return (xn[..., None] > NF4_THR).sum(axis=-1).astype(np.uint8)  # NaN -> 0


def fp4_code(xn):
    xn = np.asarray(xn, dtype=F32)
    with np.errstate(invalid="ignore"):
        sign = np.where(xn < 0, 8, 0).astype(np.uint8)
        mag = np.abs(ftz(xn))
        k = (mag[..., None] > FP4_THR).sum(axis=-1)
    return (FP4_INTERVAL_CODE[k] + sign).astype(np.uint8)


def quantize_4bit(x, bs, quant_type, rcp):
    """x: fp32 values (exact conversions of the input dtype). Returns
    (packed uint8 [(n+1)//2], absmax fp32 [nb])."""
    v, n_valid, n = _blocks(x, bs)
    am = block_absmax(v, n_valid)
    inv = rcp(am)
    xn = mul_ftz(v, inv[:, None])
    codes = (nf4_code if quant_type == "nf4" else fp4_code)(xn).reshape(-1)
    m = (n + 1) // 2
    codes = codes[: 2 * m]
    packed = ((codes[0::2] << 4) | codes[1::2]).astype(np.uint8)
    return packed, am


def lut_4bit(quant_type):
    if quant_type == "nf4":
        return NF4_LUT
    sign = np.where(np.arange(16) & 8, F32(-1), F32(1)).astype(F32)
    return (FP4_MAG_LUT[np.arange(16) & 7] * sign).astype(F32)


def dequantize_4bit(packed, absmax, bs, quant_type, n):
    """fp32 result of kDequantizeBlockwise before the cast to the output dtype."""
    codes = np.empty(packed.size * 2, dtype=np.uint8)
    codes[0::2] = packed >> 4
    codes[1::2] = packed & 15
    codes = codes[:n]
    lut = lut_4bit(quant_type)
    return mul_ftz(lut[codes], np.asarray(absmax, F32)[np.arange(n) // bs])


def dquantize8(code, x):
    """dQuantize<0>: binary search over the sorted 256-entry code, then the
    fp32 midpoint comparison."""
    code = np.asarray(code, dtype=F32)
    x = np.asarray(x, dtype=F32)
    pivot = np.full(x.shape, 127, dtype=np.int64)
    upper_pivot = np.full(x.shape, 255, dtype=np.int64)
    lower_pivot = np.zeros(x.shape, dtype=np.int64)
    lower = np.full(x.shape, F32(-1), dtype=F32)
    upper = np.full(x.shape, F32(1), dtype=F32)
    val = code[pivot]
    with np.errstate(invalid="ignore"):
        for i in (64, 32, 16, 8, 4, 2, 1):
            gt = x > val
            lower_pivot = np.where(gt, pivot, lower_pivot)
            lower = np.where(gt, val, lower)
            upper_pivot = np.where(gt, upper_pivot, pivot)
            upper = np.where(gt, upper, val)
            pivot = np.where(gt, pivot + i, pivot - i)
            val = code[pivot]
        upper = np.where(upper_pivot == 255, code[255], upper)
        lower = np.where(lower_pivot == 0, code[0], lower)
        gt = x > val
        mid_u = mul_ftz(add_ftz(upper, val), F32(0.5))
        mid_l = mul_ftz(add_ftz(lower, val), F32(0.5))
        res = np.where(gt, np.where(x > mid_u, upper_pivot, pivot), np.where(x < mid_l, lower_pivot, pivot))
    return res.astype(np.uint8)


def quantize_blockwise8(x, code, bs, rcp):
    v, n_valid, n = _blocks(x, bs)
    am = block_absmax(v, n_valid)
    inv = rcp(am)
    xn = mul_ftz(v, inv[:, None])
    q = dquantize8(code, xn).reshape(-1)[:n]
    return q, am


def dequantize_blockwise8(q, absmax, code, bs):
    n = q.size
    return mul_ftz(np.asarray(code, F32)[q], np.asarray(absmax, F32)[np.arange(n) // bs])


def _tree32(v):
    v = list(v)
    o = 16
    while o:
        for lane in range(o):
            v[lane] = v[lane] + v[lane + o]
        o >>= 1
    return v[0]


def libftq_mean(a):
    """libftq's offset (src/quant/quant_cpu.c ftq_quant_mean): one warp per
    chunk of 256 (lane l sums l, l+32, ...; then a shuffle-down tree), then
    1024 threads over the chunk sums (thread t sums chunks t, t+1024, ...;
    then the trees), in double, rounded once to fp32. Deterministic on CPU
    and CUDA; torch's CUDA mean may differ by an ulp."""
    a = [float(v) for v in np.asarray(a, dtype=F32)]
    n = len(a)
    thread = [0.0] * 1024
    for c in range(0, (n + 255) // 256):
        lanes = []
        for lane in range(32):
            s = 0.0
            for i in range(c * 256 + lane, min(c * 256 + 256, n), 32):
                s += a[i]
            lanes.append(s)
        thread[c % 1024] += _tree32(lanes)
    warps = [_tree32(thread[32 * w:32 * w + 32]) for w in range(32)]
    return F32(_tree32(warps) / n)


def quantize_4bit_nested(x, bs, quant_type, code8, rcp, offset=None):
    packed, am = quantize_4bit(x, bs, quant_type, rcp)
    if offset is None:
        offset = libftq_mean(am)
    with np.errstate(all="ignore"):
        centered = (am - F32(offset)).astype(F32)  # torch subtraction: IEEE, no flush
    qabs, am2 = quantize_blockwise8(centered, code8, 256, rcp)
    return packed, qabs, am2, F32(offset)


def dequantize_absmax_nested(qabs, am2, code8, offset):
    d = dequantize_blockwise8(qabs, am2, code8, 256)
    with np.errstate(all="ignore"):
        return (d + F32(offset)).astype(F32)


def to_dtype_bits(x32, dtype):
    """Round fp32 to f32/f16/bf16 (nearest even) and return the storage array."""
    x32 = np.asarray(x32, dtype=F32)
    if dtype == "f32":
        return x32
    if dtype == "f16":
        with np.errstate(all="ignore"):
            return x32.astype(np.float16)
    u = x32.view(U32).astype(np.uint64)
    nan = np.isnan(x32)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return np.where(nan, ((u >> 16) | 0x40).astype(np.uint16), r)


def from_dtype_bits(a, dtype):
    if dtype == "f32":
        return np.asarray(a, dtype=F32)
    if dtype == "f16":
        return np.asarray(a, dtype=np.float16).astype(F32)
    return (np.asarray(a, dtype=np.uint16).astype(U32) << 16).view(F32)

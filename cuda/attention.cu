// Fused causal GQA attention on the tensor cores, forward and backward, in
// the style of FlashAttention-2: scores never leave the chip.
//
// Products use mma.sync m16n8k16 (bf16 or fp16 operands, f32 accumulators;
// sm_80 and later). Each warp owns 16 rows of a tile. With g = lane / 4 and
// t = lane % 4, an accumulator holds rows g and g + 8, columns 2t and 2t+1
// of an 8-column tile; an A operand holds rows g, g + 8, columns 2t, 2t+1,
// 2t+8, 2t+9 of a 16 x 16 tile, packed two to a register; a B operand
// holds column g, rows 2t, 2t+1 (b0) and 2t+8, 2t+9 (b1). An accumulator
// pair of adjacent 8-column tiles is therefore an A operand as it stands,
// which is how P and dS feed the next product without shared memory.
// Tiles are loaded from the f32 activations, rounded to the half type into
// shared memory, once row-major and, where an operand needs the other
// orientation, once transposed.
//
// Masks are the CPU reference's (src/cpu/ops_attention.c): query i (key
// index kv_len - q_len + i) sees key j iff j <= that index, key_valid[j]
// and seq_ids equal; a query that sees no key gets zeros and lse = -inf.
// The backward (no atomics, so it is deterministic) is two kernels: dK, dV
// per key tile looping over the query tiles and the heads of its KV group,
// and dQ per query tile looping over key tiles; both recompute P from the
// forward's lse and use D = rowsum(dO * O).
#include "ops.cuh"

namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

struct AttnParams {
  int64_t batch, q_len, kv_len, kv_stride;
  int n_heads, n_kv_heads, head_dim;
  float scale;
  const float *q, *k, *v;
  const int32_t *key_valid, *seq_ids;
  float *out, *lse;
  const float *dout, *d;  // backward: dO and D = rowsum(dO * O) [token, head]
  float *dq, *dk, *dv;
};

template <bool F16>
__device__ __forceinline__ void mma16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  if (F16)
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  else
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// The 32-bit word at an even element index of a half tile in shared memory.
__device__ __forceinline__ uint32_t ld32(const uint16_t *p) { return *reinterpret_cast<const uint32_t *>(p); }

// A operand rows r0 and r0 + 8, columns k0 .. k0 + 15 of a row-major tile.
__device__ __forceinline__ void load_a(uint32_t a[4], const uint16_t *s, int ld, int r0, int k0, int t) {
  a[0] = ld32(s + r0 * ld + k0 + 2 * t);
  a[1] = ld32(s + (r0 + 8) * ld + k0 + 2 * t);
  a[2] = ld32(s + r0 * ld + k0 + 8 + 2 * t);
  a[3] = ld32(s + (r0 + 8) * ld + k0 + 8 + 2 * t);
}

// Accumulator tiles 2kk and 2kk + 1 as an A operand (16 columns).
template <bool F16>
__device__ __forceinline__ void acc_to_a(uint32_t a[4], const float c0[4], const float c1[4]) {
  a[0] = ftq_pack2<F16>(c0[0], c0[1]);
  a[1] = ftq_pack2<F16>(c0[2], c0[3]);
  a[2] = ftq_pack2<F16>(c1[0], c1[1]);
  a[3] = ftq_pack2<F16>(c1[2], c1[3]);
}

// Loads rows [r0, r0 + rows) of a [*, stride] f32 matrix (columns < D,
// zero elsewhere and past `limit`) into a row-major half tile [rows][ld]
// (when s is given) and a transposed one [DP][ldt] (when st is given).
template <bool F16, int DP>
__device__ __forceinline__ void load_tile(uint16_t *s, int ld, uint16_t *st, int ldt, const float *g, int64_t stride,
                                          int64_t r0, int rows, int64_t limit, int D) {
  if ((D & 3) == 0 && (stride & 3) == 0 && ((uintptr_t)g & 15) == 0) {  // 16-byte loads, 4 columns per thread
#pragma unroll 4
    for (int idx = threadIdx.x; idx < rows * (DP / 4); idx += blockDim.x) {
      const int r = idx / (DP / 4), d = (idx - r * (DP / 4)) * 4;
      float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      if (r0 + r < limit && d < D) v = *reinterpret_cast<const float4 *>(g + (r0 + r) * stride + d);
      const uint16_t h0 = ftq_half_bits<F16>(v.x), h1 = ftq_half_bits<F16>(v.y), h2 = ftq_half_bits<F16>(v.z),
                     h3 = ftq_half_bits<F16>(v.w);
      if (s)
        *reinterpret_cast<uint2 *>(s + r * ld + d) =
            make_uint2((uint32_t)h0 | ((uint32_t)h1 << 16), (uint32_t)h2 | ((uint32_t)h3 << 16));
      if (st) {
        st[d * ldt + r] = h0;
        st[(d + 1) * ldt + r] = h1;
        st[(d + 2) * ldt + r] = h2;
        st[(d + 3) * ldt + r] = h3;
      }
    }
    return;
  }
  for (int idx = threadIdx.x; idx < rows * DP; idx += blockDim.x) {
    const int r = idx / DP, d = idx - r * DP;
    float v = 0.0f;
    if (r0 + r < limit && d < D) v = g[(r0 + r) * stride + d];
    const uint16_t h = ftq_half_bits<F16>(v);
    if (s) s[r * ld + d] = h;
    if (st) st[d * ldt + r] = h;
  }
}

__device__ __forceinline__ float quad_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
  return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
__device__ __forceinline__ float quad_sum(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

// Two products over the same k = DP, each NT 8-column tiles wide, from
// row-major half tiles with row stride ld: c1 = rows r0, r0 + 8 of a1 times
// the transpose of b1's first NT * 8 rows, c2 likewise from a2 and b2.
template <bool F16, int DP, int NT>
__device__ __forceinline__ void mma_pair_abt(float c1[NT][4], float c2[NT][4], const uint16_t *a1, const uint16_t *a2,
                                             const uint16_t *b1, const uint16_t *b2, int ld, int r0, int g, int t) {
#pragma unroll
  for (int nt = 0; nt < NT; nt++)
#pragma unroll
    for (int e = 0; e < 4; e++) c1[nt][e] = c2[nt][e] = 0.0f;
#pragma unroll
  for (int ks = 0; ks < DP / 16; ks++) {
    uint32_t x1[4], x2[4];
    load_a(x1, a1, ld, r0, ks * 16, t);
    load_a(x2, a2, ld, r0, ks * 16, t);
#pragma unroll
    for (int nt = 0; nt < NT; nt++) {
      const uint16_t *p1 = b1 + (nt * 8 + g) * ld + ks * 16 + 2 * t;
      mma16816<F16>(c1[nt], x1, ld32(p1), ld32(p1 + 8));
      const uint16_t *p2 = b2 + (nt * 8 + g) * ld + ks * 16 + 2 * t;
      mma16816<F16>(c2[nt], x2, ld32(p2), ld32(p2 + 8));
    }
  }
}

// ---------------------------------------------------------------------------
// forward: one block of 4 warps per (64 queries, head, batch row)

constexpr int kFwdBQ = 64, kFwdBK = 64;

template <int DP>
constexpr size_t fwd_smem() {
  return sizeof(uint16_t) * ((size_t)kFwdBQ * (DP + 8) + (size_t)kFwdBK * (DP + 8) + (size_t)DP * (kFwdBK + 8)) +
         sizeof(int) * 2 * kFwdBK;
}

template <bool F16, int DP>
__global__ void __launch_bounds__(128) attn_fwd_kernel(AttnParams p) {
  constexpr int BQ = kFwdBQ, BK = kFwdBK, LD = DP + 8, LDT = BK + 8;
  extern __shared__ __align__(16) unsigned char smem[];
  uint16_t *sQ = (uint16_t *)smem, *sK = sQ + BQ * LD, *sVt = sK + BK * LD;
  int *sKok = (int *)(sVt + DP * LDT), *sKseq = sKok + BK;

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int64_t b = blockIdx.z, i0 = (int64_t)blockIdx.x * BQ;
  const int h = blockIdx.y, kh = h / (p.n_heads / p.n_kv_heads), D = p.head_dim;
  const int64_t qdim = (int64_t)p.n_heads * D, kvdim = (int64_t)p.n_kv_heads * D;
  const float *Qg = p.q + b * p.q_len * qdim + (int64_t)h * D;
  const float *Kg = p.k + b * p.kv_stride * kvdim + (int64_t)kh * D;
  const float *Vg = p.v + b * p.kv_stride * kvdim + (int64_t)kh * D;
  const int64_t off = p.kv_len - p.q_len;  // key index of query 0

  load_tile<F16, DP>(sQ, LD, nullptr, 0, Qg, qdim, i0, BQ, p.q_len, D);
  __syncthreads();
  const int r0 = warp * 16 + g;
  uint32_t qf[DP / 16][4];
#pragma unroll
  for (int ks = 0; ks < DP / 16; ks++) load_a(qf[ks], sQ, LD, r0, ks * 16, t);
  const int64_t qi0 = off + i0 + r0, qi1 = qi0 + 8;  // the two rows' key indices
  int seq0 = 0, seq1 = 0;
  if (p.seq_ids) {
    const int32_t *sq = p.seq_ids + b * p.kv_len;
    if (i0 + r0 < p.q_len) seq0 = sq[qi0];
    if (i0 + r0 + 8 < p.q_len) seq1 = sq[qi1];
  }
  const float sl2 = p.scale * kLog2e;  // scores in log2 units
  float o[DP / 8][4];
#pragma unroll
  for (int dt = 0; dt < DP / 8; dt++) o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.0f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;

  const int64_t last_q = (i0 + BQ < p.q_len ? i0 + BQ : p.q_len) - 1;
  const int64_t kend = off + last_q + 1 < p.kv_len ? off + last_q + 1 : p.kv_len;
  for (int64_t j0 = 0; j0 < kend; j0 += BK) {
    __syncthreads();
    load_tile<F16, DP>(sK, LD, nullptr, 0, Kg, kvdim, j0, BK, p.kv_len, D);
    load_tile<F16, DP>(nullptr, 0, sVt, LDT, Vg, kvdim, j0, BK, p.kv_len, D);
    for (int c = threadIdx.x; c < BK; c += blockDim.x) {
      const int64_t j = j0 + c;
      const bool in = j < p.kv_len;
      sKok[c] = in && (!p.key_valid || p.key_valid[b * p.kv_len + j]);
      sKseq[c] = in && p.seq_ids ? p.seq_ids[b * p.kv_len + j] : 0;
    }
    __syncthreads();
    float s[BK / 8][4];
#pragma unroll
    for (int nt = 0; nt < BK / 8; nt++) {
      s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
#pragma unroll
      for (int ks = 0; ks < DP / 16; ks++) {
        const uint16_t *kr = sK + (nt * 8 + g) * LD + ks * 16 + 2 * t;
        mma16816<F16>(s[nt], qf[ks], ld32(kr), ld32(kr + 8));
      }
    }
    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (int nt = 0; nt < BK / 8; nt++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int col = nt * 8 + 2 * t + (e & 1);
        const int64_t j = j0 + col, qi = e < 2 ? qi0 : qi1;
        const bool vis = j <= qi && sKok[col] && (!p.seq_ids || sKseq[col] == (e < 2 ? seq0 : seq1));
        const float v = vis ? s[nt][e] * sl2 : -INFINITY;
        s[nt][e] = v;
        if (e < 2) mx0 = fmaxf(mx0, v);
        else mx1 = fmaxf(mx1, v);
      }
    mx0 = quad_max(mx0);
    mx1 = quad_max(mx1);
    const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);
    const float a0 = mn0 == -INFINITY ? 1.0f : exp2f(m0 - mn0), a1 = mn1 == -INFINITY ? 1.0f : exp2f(m1 - mn1);
    m0 = mn0;
    m1 = mn1;
    l0 *= a0;
    l1 *= a1;
#pragma unroll
    for (int dt = 0; dt < DP / 8; dt++) {
      o[dt][0] *= a0;
      o[dt][1] *= a0;
      o[dt][2] *= a1;
      o[dt][3] *= a1;
    }
#pragma unroll
    for (int nt = 0; nt < BK / 8; nt++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const float v = s[nt][e];
        const float pv = v == -INFINITY ? 0.0f : exp2f(v - (e < 2 ? m0 : m1));
        s[nt][e] = pv;
        if (e < 2) l0 += pv;
        else l1 += pv;
      }
#pragma unroll
    for (int kk = 0; kk < BK / 16; kk++) {
      uint32_t pa[4];
      acc_to_a<F16>(pa, s[2 * kk], s[2 * kk + 1]);
#pragma unroll
      for (int dt = 0; dt < DP / 8; dt++) {
        const uint16_t *vr = sVt + (dt * 8 + g) * LDT + kk * 16 + 2 * t;
        mma16816<F16>(o[dt], pa, ld32(vr), ld32(vr + 8));
      }
    }
  }
  l0 = quad_sum(l0);
  l1 = quad_sum(l1);
  const float inv0 = l0 > 0.0f ? 1.0f / l0 : 0.0f, inv1 = l1 > 0.0f ? 1.0f / l1 : 0.0f;
  float *Og = p.out + b * p.q_len * qdim + (int64_t)h * D;
#pragma unroll
  for (int hf = 0; hf < 2; hf++) {
    const int64_t i = i0 + r0 + 8 * hf;
    if (i >= p.q_len) continue;
    const float inv = hf ? inv1 : inv0;
#pragma unroll
    for (int dt = 0; dt < DP / 8; dt++)
#pragma unroll
      for (int e = 0; e < 2; e++) {
        const int d = dt * 8 + 2 * t + e;
        if (d < D) Og[i * qdim + d] = o[dt][2 * hf + e] * inv;
      }
    if (p.lse && t == 0) {
      const float l = hf ? l1 : l0, m = hf ? m1 : m0;
      p.lse[(b * p.q_len + i) * p.n_heads + h] = l > 0.0f ? (m + log2f(l)) * kLn2 : -INFINITY;
    }
  }
}

// ---------------------------------------------------------------------------
// backward

// D[token, head] = sum_d dO * O: one warp per (token, head).
__global__ void attn_rowdot_kernel(AttnParams p, float *d_out) {
  const int64_t rows = p.batch * p.q_len * p.n_heads;
  const int64_t w = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  const int lane = threadIdx.x & 31;
  if (w >= rows) return;
  const int64_t tok = w / p.n_heads, h = w - tok * p.n_heads;
  const int64_t base = tok * (int64_t)p.n_heads * p.head_dim + h * p.head_dim;
  float s = 0.0f;
  for (int d = lane; d < p.head_dim; d += 32) s += p.dout[base + d] * p.out[base + d];
  for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
  if (lane == 0) d_out[w] = s;
}

constexpr int kKvBK = 64, kKvBQ = 32;  // dK/dV: 64 keys per block, query tiles of 32

template <int DP>
constexpr size_t dkdv_smem() {
  return sizeof(uint16_t) * (2 * (size_t)kKvBK * (DP + 8) + 2 * (size_t)kKvBQ * (DP + 8) +
                             2 * (size_t)DP * (kKvBQ + 8)) +
         sizeof(float) * 4 * kKvBQ;
}

template <bool F16, int DP>
__global__ void __launch_bounds__(128) attn_bwd_dkdv_kernel(AttnParams p) {
  constexpr int BK = kKvBK, BQ = kKvBQ, LD = DP + 8, LDT = BQ + 8;
  extern __shared__ __align__(16) unsigned char smem[];
  uint16_t *sK = (uint16_t *)smem, *sV = sK + BK * LD, *sQ = sV + BK * LD, *sdO = sQ + BQ * LD;
  uint16_t *sQt = sdO + BQ * LD, *sdOt = sQt + DP * LDT;
  float *sLse = (float *)(sdOt + DP * LDT), *sD = sLse + BQ;
  int *sQseq = (int *)(sD + BQ), *sQok = sQseq + BQ;

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int64_t b = blockIdx.z, j0 = (int64_t)blockIdx.x * BK;
  const int kh = blockIdx.y, group = p.n_heads / p.n_kv_heads, D = p.head_dim;
  const int64_t qdim = (int64_t)p.n_heads * D, kvdim = (int64_t)p.n_kv_heads * D, S = p.q_len;
  load_tile<F16, DP>(sK, LD, nullptr, 0, p.k + b * S * kvdim + (int64_t)kh * D, kvdim, j0, BK, S, D);
  load_tile<F16, DP>(sV, LD, nullptr, 0, p.v + b * S * kvdim + (int64_t)kh * D, kvdim, j0, BK, S, D);
  const int kr0 = warp * 16 + g;
  const int64_t ja = j0 + kr0, jb = ja + 8;  // this thread's two keys
  const int32_t *valid = p.key_valid ? p.key_valid + b * S : nullptr, *seq = p.seq_ids ? p.seq_ids + b * S : nullptr;
  const bool oka = ja < S && (!valid || valid[ja]), okb = jb < S && (!valid || valid[jb]);
  const int seqa = seq && ja < S ? seq[ja] : 0, seqb = seq && jb < S ? seq[jb] : 0;
  const float sl2 = p.scale * kLog2e;

  float dk[DP / 8][4], dv[DP / 8][4];
#pragma unroll
  for (int dt = 0; dt < DP / 8; dt++)
#pragma unroll
    for (int e = 0; e < 4; e++) dk[dt][e] = dv[dt][e] = 0.0f;

  for (int hh = 0; hh < group; hh++) {
    const int h = kh * group + hh;
    const float *Qg = p.q + b * S * qdim + (int64_t)h * D, *dOg = p.dout + b * S * qdim + (int64_t)h * D;
    for (int64_t i0 = (j0 / BQ) * BQ; i0 < S; i0 += BQ) {
      __syncthreads();
      load_tile<F16, DP>(sQ, LD, sQt, LDT, Qg, qdim, i0, BQ, S, D);
      load_tile<F16, DP>(sdO, LD, sdOt, LDT, dOg, qdim, i0, BQ, S, D);
      for (int c = threadIdx.x; c < BQ; c += blockDim.x) {
        const int64_t i = i0 + c;
        const bool in = i < S;
        sQok[c] = in;
        sLse[c] = in ? p.lse[(b * S + i) * p.n_heads + h] * kLog2e : 0.0f;
        sD[c] = in ? p.d[(b * S + i) * p.n_heads + h] : 0.0f;
        sQseq[c] = in && seq ? seq[i] : 0;
      }
      __syncthreads();
      // S^T = K Q^T and dP^T = V dO^T: 16 keys x 32 queries per warp
      float st[BQ / 8][4], dpt[BQ / 8][4];
      mma_pair_abt<F16, DP, BQ / 8>(st, dpt, sK, sV, sQ, sdO, LD, kr0, g, t);
      // P^T and dS^T = P^T (dP^T - D)
#pragma unroll
      for (int nt = 0; nt < BQ / 8; nt++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
          const int c = nt * 8 + 2 * t + (e & 1);
          const int64_t i = i0 + c, j = e < 2 ? ja : jb;
          const bool vis = sQok[c] && j <= i && (e < 2 ? oka : okb) && (!seq || sQseq[c] == (e < 2 ? seqa : seqb));
          const float pv = vis ? exp2f(st[nt][e] * sl2 - sLse[c]) : 0.0f;
          st[nt][e] = pv;
          dpt[nt][e] = pv * (dpt[nt][e] - sD[c]);
        }
      // dV += P^T dO, dK += dS^T Q (k = the 32 queries)
#pragma unroll
      for (int kk = 0; kk < BQ / 16; kk++) {
        uint32_t pa[4], da[4];
        acc_to_a<F16>(pa, st[2 * kk], st[2 * kk + 1]);
        acc_to_a<F16>(da, dpt[2 * kk], dpt[2 * kk + 1]);
#pragma unroll
        for (int dt = 0; dt < DP / 8; dt++) {
          const uint16_t *orow = sdOt + (dt * 8 + g) * LDT + kk * 16 + 2 * t;
          mma16816<F16>(dv[dt], pa, ld32(orow), ld32(orow + 8));
          const uint16_t *qr = sQt + (dt * 8 + g) * LDT + kk * 16 + 2 * t;
          mma16816<F16>(dk[dt], da, ld32(qr), ld32(qr + 8));
        }
      }
    }
  }
  float *dKg = p.dk + b * S * kvdim + (int64_t)kh * D, *dVg = p.dv + b * S * kvdim + (int64_t)kh * D;
#pragma unroll
  for (int hf = 0; hf < 2; hf++) {
    const int64_t j = hf ? jb : ja;
    if (j >= S) continue;
#pragma unroll
    for (int dt = 0; dt < DP / 8; dt++)
#pragma unroll
      for (int e = 0; e < 2; e++) {
        const int d = dt * 8 + 2 * t + e;
        if (d < D) {
          dKg[j * kvdim + d] = dk[dt][2 * hf + e] * p.scale;
          dVg[j * kvdim + d] = dv[dt][2 * hf + e];
        }
      }
  }
}

constexpr int kQBQ = 64, kQBK = 32;  // dQ: 64 queries per block, key tiles of 32

template <int DP>
constexpr size_t dq_smem() {
  return sizeof(uint16_t) * (2 * (size_t)kQBQ * (DP + 8) + 2 * (size_t)kQBK * (DP + 8) + (size_t)DP * (kQBK + 8)) +
         sizeof(int) * 2 * kQBK;
}

template <bool F16, int DP>
__global__ void __launch_bounds__(128) attn_bwd_dq_kernel(AttnParams p) {
  constexpr int BQ = kQBQ, BK = kQBK, LD = DP + 8, LDT = BK + 8;
  extern __shared__ __align__(16) unsigned char smem[];
  uint16_t *sQ = (uint16_t *)smem, *sdO = sQ + BQ * LD, *sK = sdO + BQ * LD, *sV = sK + BK * LD;
  uint16_t *sKt = sV + BK * LD;
  int *sKok = (int *)(sKt + DP * LDT), *sKseq = sKok + BK;

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int64_t b = blockIdx.z, i0 = (int64_t)blockIdx.x * BQ;
  const int h = blockIdx.y, kh = h / (p.n_heads / p.n_kv_heads), D = p.head_dim;
  const int64_t qdim = (int64_t)p.n_heads * D, kvdim = (int64_t)p.n_kv_heads * D, S = p.q_len;
  const float *Kg = p.k + b * S * kvdim + (int64_t)kh * D, *Vg = p.v + b * S * kvdim + (int64_t)kh * D;
  load_tile<F16, DP>(sQ, LD, nullptr, 0, p.q + b * S * qdim + (int64_t)h * D, qdim, i0, BQ, S, D);
  load_tile<F16, DP>(sdO, LD, nullptr, 0, p.dout + b * S * qdim + (int64_t)h * D, qdim, i0, BQ, S, D);
  const int r0 = warp * 16 + g;
  const int64_t ia = i0 + r0, ib = ia + 8;
  const int32_t *valid = p.key_valid ? p.key_valid + b * S : nullptr, *seq = p.seq_ids ? p.seq_ids + b * S : nullptr;
  const bool ina = ia < S, inb = ib < S;
  const float lsea = ina ? p.lse[(b * S + ia) * p.n_heads + h] * kLog2e : 0.0f;
  const float lseb = inb ? p.lse[(b * S + ib) * p.n_heads + h] * kLog2e : 0.0f;
  const float Da = ina ? p.d[(b * S + ia) * p.n_heads + h] : 0.0f, Db = inb ? p.d[(b * S + ib) * p.n_heads + h] : 0.0f;
  const int seqa = seq && ina ? seq[ia] : 0, seqb = seq && inb ? seq[ib] : 0;
  const float sl2 = p.scale * kLog2e;

  float dq[DP / 8][4];
#pragma unroll
  for (int dt = 0; dt < DP / 8; dt++) dq[dt][0] = dq[dt][1] = dq[dt][2] = dq[dt][3] = 0.0f;
  const int64_t kend = i0 + BQ < S ? i0 + BQ : S;
  for (int64_t j0 = 0; j0 < kend; j0 += BK) {
    __syncthreads();
    load_tile<F16, DP>(sK, LD, sKt, LDT, Kg, kvdim, j0, BK, S, D);
    load_tile<F16, DP>(sV, LD, nullptr, 0, Vg, kvdim, j0, BK, S, D);
    for (int c = threadIdx.x; c < BK; c += blockDim.x) {
      const int64_t j = j0 + c;
      sKok[c] = j < S && (!valid || valid[j]);
      sKseq[c] = j < S && seq ? seq[j] : 0;
    }
    __syncthreads();
    // S = Q K^T and dP = dO V^T
    float s[BK / 8][4], dp[BK / 8][4];
    mma_pair_abt<F16, DP, BK / 8>(s, dp, sQ, sdO, sK, sV, LD, r0, g, t);
#pragma unroll
    for (int nt = 0; nt < BK / 8; nt++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int c = nt * 8 + 2 * t + (e & 1);
        const int64_t j = j0 + c, i = e < 2 ? ia : ib;
        const bool vis = (e < 2 ? ina : inb) && j <= i && sKok[c] && (!seq || sKseq[c] == (e < 2 ? seqa : seqb));
        const float pv = vis ? exp2f(s[nt][e] * sl2 - (e < 2 ? lsea : lseb)) : 0.0f;
        dp[nt][e] = pv * (dp[nt][e] - (e < 2 ? Da : Db));  // dS
      }
#pragma unroll
    for (int kk = 0; kk < BK / 16; kk++) {
      uint32_t da[4];
      acc_to_a<F16>(da, dp[2 * kk], dp[2 * kk + 1]);
#pragma unroll
      for (int dt = 0; dt < DP / 8; dt++) {
        const uint16_t *kr = sKt + (dt * 8 + g) * LDT + kk * 16 + 2 * t;
        mma16816<F16>(dq[dt], da, ld32(kr), ld32(kr + 8));
      }
    }
  }
  float *dQg = p.dq + b * S * qdim + (int64_t)h * D;
#pragma unroll
  for (int hf = 0; hf < 2; hf++) {
    const int64_t i = hf ? ib : ia;
    if (i >= S) continue;
#pragma unroll
    for (int dt = 0; dt < DP / 8; dt++)
#pragma unroll
      for (int e = 0; e < 2; e++) {
        const int d = dt * 8 + 2 * t + e;
        if (d < D) dQg[i * qdim + d] = dq[dt][2 * hf + e] * p.scale;
      }
  }
}

// ---------------------------------------------------------------------------
// launchers

ftq_status check(const ftq_attention_args *a, int backward) {
  if (a->n_heads <= 0 || a->n_kv_heads <= 0 || a->n_heads % a->n_kv_heads || a->head_dim <= 0 || a->q_len < 0 ||
      a->kv_len < a->q_len || a->kv_stride < a->kv_len || a->batch < 0)
    return ftq_cuda_error(FTQ_ERR_INVALID_ARGUMENT,
                          "attention: bad shape (heads %lld/%lld, q_len %lld, kv_len %lld)", (long long)a->n_heads,
                          (long long)a->n_kv_heads, (long long)a->q_len, (long long)a->kv_len);
  if (a->head_dim > 128)
    return ftq_cuda_error(FTQ_ERR_UNSUPPORTED, "attention on CUDA: head_dim %lld (at most 128 supported)",
                          (long long)a->head_dim);
  if (a->batch > 65535 || a->n_heads > 65535)
    return ftq_cuda_error(FTQ_ERR_UNSUPPORTED, "attention on CUDA: batch %lld x heads %lld too large",
                          (long long)a->batch, (long long)a->n_heads);
  if (backward) {
    if (a->kv_len != a->q_len || a->kv_stride != a->kv_len)
      return ftq_cuda_error(FTQ_ERR_INVALID_ARGUMENT, "attention backward needs kv_len == q_len");
    if (!a->lse || !a->out || !a->dout || !a->dq || !a->dk || !a->dv)
      return ftq_cuda_error(FTQ_ERR_INVALID_ARGUMENT,
                            "attention backward needs out and lse from the forward, dout, dq, dk and dv");
    if (!a->work || a->work_bytes < ftq_attention_work_bytes(a->batch, a->n_heads, a->q_len, a->kv_len))
      return ftq_cuda_error(FTQ_ERR_INTERNAL, "attention: scratch of %zu bytes given, %zu needed", a->work_bytes,
                            ftq_attention_work_bytes(a->batch, a->n_heads, a->q_len, a->kv_len));
  }
  return FTQ_OK;
}

AttnParams params(const ftq_attention_args *a) {
  AttnParams p;
  memset(&p, 0, sizeof p);
  p.batch = a->batch, p.q_len = a->q_len, p.kv_len = a->kv_len, p.kv_stride = a->kv_stride;
  p.n_heads = (int)a->n_heads, p.n_kv_heads = (int)a->n_kv_heads, p.head_dim = (int)a->head_dim;
  p.scale = a->scale;
  p.q = a->q, p.k = a->k, p.v = a->v;
  p.key_valid = a->key_valid, p.seq_ids = a->seq_ids;
  p.out = a->out, p.lse = a->lse;
  p.dout = a->dout, p.dq = a->dq, p.dk = a->dk, p.dv = a->dv;
  return p;
}

template <typename K>
ftq_status launch(ftq_cuda *c, K kernel, dim3 grid, size_t smem, const AttnParams &p) {
  FTQ_CUDA_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  kernel<<<grid, 128, smem, c->stream>>>(p);
  FTQ_CUDA_LAUNCH_CHECK("attention");
  return FTQ_OK;
}

template <bool F16, int DP>
ftq_status forward(ftq_cuda *c, const AttnParams &p) {
  dim3 grid((unsigned)((p.q_len + kFwdBQ - 1) / kFwdBQ), (unsigned)p.n_heads, (unsigned)p.batch);
  return launch(c, attn_fwd_kernel<F16, DP>, grid, fwd_smem<DP>(), p);
}

template <bool F16, int DP>
ftq_status backward(ftq_cuda *c, const AttnParams &p) {
  dim3 gkv((unsigned)((p.kv_len + kKvBK - 1) / kKvBK), (unsigned)p.n_kv_heads, (unsigned)p.batch);
  FTQ_TRY_CU(launch(c, attn_bwd_dkdv_kernel<F16, DP>, gkv, dkdv_smem<DP>(), p));
  dim3 gq((unsigned)((p.q_len + kQBQ - 1) / kQBQ), (unsigned)p.n_heads, (unsigned)p.batch);
  return launch(c, attn_bwd_dq_kernel<F16, DP>, gq, dq_smem<DP>(), p);
}

template <bool F16>
ftq_status dispatch(ftq_cuda *c, const AttnParams &p, int bwd) {
  if (p.head_dim <= 32) return bwd ? backward<F16, 32>(c, p) : forward<F16, 32>(c, p);
  if (p.head_dim <= 64) return bwd ? backward<F16, 64>(c, p) : forward<F16, 64>(c, p);
  return bwd ? backward<F16, 128>(c, p) : forward<F16, 128>(c, p);
}

}  // namespace

ftq_status ftq_cuda_attention(void *be, const ftq_attention_args *a) {
  ftq_cuda *c = (ftq_cuda *)be;
  FTQ_TRY_CU(check(a, 0));
  if (a->batch == 0 || a->q_len == 0) return FTQ_OK;
  FTQ_TRY_CU(ftq_cuda_enter(c));
  FTQ_PROFILE(c, FTQ_PROF_ATTENTION);
  const AttnParams p = params(a);
  return a->fp16 ? dispatch<true>(c, p, 0) : dispatch<false>(c, p, 0);
}

ftq_status ftq_cuda_attention_backward(void *be, const ftq_attention_args *a) {
  ftq_cuda *c = (ftq_cuda *)be;
  FTQ_TRY_CU(check(a, 1));
  if (a->batch == 0 || a->q_len == 0) return FTQ_OK;
  FTQ_TRY_CU(ftq_cuda_enter(c));
  FTQ_PROFILE(c, FTQ_PROF_ATTENTION_BWD);
  AttnParams p = params(a);
  float *d = (float *)(((uintptr_t)a->work + 255u) & ~(uintptr_t)255u);
  p.d = d;
  const int64_t rows = a->batch * a->q_len * a->n_heads;
  attn_rowdot_kernel<<<(unsigned)((rows * 32 + 255) / 256), 256, 0, c->stream>>>(p, d);
  FTQ_CUDA_LAUNCH_CHECK("attention D");
  return a->fp16 ? dispatch<true>(c, p, 1) : dispatch<false>(c, p, 1);
}

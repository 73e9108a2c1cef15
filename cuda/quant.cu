// Quantization kernels of the CUDA backend: 4-bit blockwise NF4 / FP4 and
// the 8-bit dynamic blockwise code of double quantization, with the
// arithmetic of bitsandbytes' kernels (which are built with fast math:
// flush-to-zero, rcp.approx for the block reciprocal; the PTX below spells
// those instructions out so this module needs no fast-math flag), and INT8
// in double precision. Every result equals src/quant/quant_cpu.c's bit for
// bit; tests/quant/test_quant_cuda.c checks it.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "libftq/ftq_quantizer.h"
#include "quant.cuh"

// ---------------------------------------------------------------------------
// the kernels' arithmetic

__device__ __forceinline__ float mul_ftz(float a, float b) {
  float r;
  asm("mul.rn.ftz.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
  return r;
}
__device__ __forceinline__ float add_ftz(float a, float b) {
  float r;
  asm("add.rn.ftz.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
  return r;
}
__device__ __forceinline__ float rcp_approx_ftz(float a) {
  float r;
  asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(a));
  return r;
}
__device__ __forceinline__ float abs_ftz(float a) {
  float r;
  asm("abs.ftz.f32 %0, %1;" : "=f"(r) : "f"(a));
  return r;
}
__device__ __forceinline__ float max_ftz(float a, float b) {  // NaN operands are skipped
  float r;
  asm("max.ftz.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
  return r;
}

// Codebooks as fp32 bit patterns (src/quant/codebook.c has the same values).
__constant__ float c_nf4_thr[15];
__constant__ float c_fp4_thr[7];
__constant__ float c_nf4_lut[16];
__constant__ float c_fp4_lut[16];

static const uint32_t k_nf4_thr[15] = {0xbf591cd9u, 0xbf1c5270u, 0xbeeb8480u, 0xbeadea76u, 0xbe703cecu,
                                       0xbe0d38bcu, 0xbd3a7871u, 0x3d22faffu, 0x3df64863u, 0x3e5067e0u,
                                       0x3e9582d4u, 0x3ec753f9u, 0x3f006d03u, 0x3f248dafu, 0x3f5c89d9u};
static const uint32_t k_fp4_thr[7] = {0x3b2aaab9u, 0x3db00000u, 0x3e555555u, 0x3e955555u,
                                      0x3ed55556u, 0x3f155550u, 0x3f555555u};
static const uint32_t k_nf4_lut[16] = {0xbf800000u, 0xbf3239b1u, 0xbf066b30u, 0xbeca32a0u, 0xbe91a24du, 0xbe3d353fu,
                                       0xbdba7871u, 0x00000000u, 0x3da2faffu, 0x3e24cae3u, 0x3e7c04ddu, 0x3ead033au,
                                       0x3ee1a4b8u, 0x3f1007abu, 0x3f3913b3u, 0x3f800000u};
static const uint32_t k_fp4_mag[8] = {0x00000000u, 0x3baaaaabu, 0x3f2aaaabu, 0x3f800000u,
                                      0x3eaaaaabu, 0x3f000000u, 0x3e2aaaabu, 0x3e800000u};

static ftq_status upload_tables(ftq_cuda *c) {
  static int done[64];  // per device ordinal; the tables are read-only once set
  if (c->device < 64 && done[c->device]) return FTQ_OK;
  uint32_t fp4_lut[16];
  for (int i = 0; i < 16; i++) fp4_lut[i] = k_fp4_mag[i & 7] | (i & 8 ? 0x80000000u : 0u);
  FTQ_CUDA_TRY(cudaMemcpyToSymbolAsync(c_nf4_thr, k_nf4_thr, sizeof k_nf4_thr, 0, cudaMemcpyHostToDevice, c->stream));
  FTQ_CUDA_TRY(cudaMemcpyToSymbolAsync(c_fp4_thr, k_fp4_thr, sizeof k_fp4_thr, 0, cudaMemcpyHostToDevice, c->stream));
  FTQ_CUDA_TRY(cudaMemcpyToSymbolAsync(c_nf4_lut, k_nf4_lut, sizeof k_nf4_lut, 0, cudaMemcpyHostToDevice, c->stream));
  FTQ_CUDA_TRY(cudaMemcpyToSymbolAsync(c_fp4_lut, fp4_lut, sizeof fp4_lut, 0, cudaMemcpyHostToDevice, c->stream));
  FTQ_CUDA_TRY(cudaStreamSynchronize(c->stream));
  if (c->device < 64) done[c->device] = 1;
  return FTQ_OK;
}

template <int NF4>
__device__ __forceinline__ uint32_t code4(float x) {
  if (NF4) {
    uint32_t c = 0;
#pragma unroll
    for (int i = 0; i < 15; i++) c += x > c_nf4_thr[i];  // NaN -> 0
    return c;
  }
  uint32_t sign = x < 0.0f ? 8u : 0u;
  float a = fabsf(x);  // x is never subnormal here (it comes from mul.ftz)
  uint32_t k = 0;
#pragma unroll
  for (int i = 0; i < 7; i++) k += a > c_fp4_thr[i];
  // magnitude codes of the 8 intervals: 0 1 6 7 4 5 2 3, packed 4 bits each
  return ((0x32547610u >> (4 * k)) & 15u) + sign;
}

template <typename T>
__device__ __forceinline__ float to_f(T v);
template <>
__device__ __forceinline__ float to_f<float>(float v) { return v; }
template <>
__device__ __forceinline__ float to_f<__half>(__half v) { return __half2float(v); }
template <>
__device__ __forceinline__ float to_f<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_f(float v);
template <>
__device__ __forceinline__ float from_f<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_f<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

// Eight consecutive inputs as fp32 (zero past n: the kernels' padding).
template <typename T, bool VEC>
__device__ __forceinline__ void load8(const T *x, int64_t i, int64_t n, float v[8]) {
  if (VEC && i + 8 <= n) {
    if (sizeof(T) == 2) {
      uint4 u = __ldg(reinterpret_cast<const uint4 *>(x + i));
      const T *t = reinterpret_cast<const T *>(&u);
#pragma unroll
      for (int k = 0; k < 8; k++) v[k] = to_f<T>(t[k]);
    } else {
      float4 a = __ldg(reinterpret_cast<const float4 *>(x + i));
      float4 b = __ldg(reinterpret_cast<const float4 *>(x + i) + 1);
      v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
    }
    return;
  }
#pragma unroll
  for (int k = 0; k < 8; k++) v[k] = i + k < n ? to_f<T>(x[i + k]) : 0.0f;
}

// ---------------------------------------------------------------------------
// 4-bit quantize: 8 elements per thread, bs/8 threads per quantization
// block. Small blocks (bs <= 256) share a 256-thread CUDA block and reduce
// with shuffles; larger ones take a CUDA block of bs/8 threads each.

template <typename T, int NF4, bool VEC, bool BIG>
__global__ void quantize4_kernel(const T *__restrict__ x, int64_t n, int bs, uint8_t *__restrict__ packed,
                                 float *__restrict__ absmax) {
  const int tpb = bs >> 3;  // threads per quantization block
  int64_t qblock, lane;
  if (BIG) {
    qblock = blockIdx.x;
    lane = threadIdx.x;
  } else {
    qblock = (int64_t)blockIdx.x * (blockDim.x / tpb) + threadIdx.x / tpb;
    lane = threadIdx.x % tpb;
  }
  int64_t first = qblock * bs;
  bool live = first < n;
  int64_t i = first + lane * 8;
  float v[8];
  if (live) load8<T, VEC>(x, i, n, v);
  else
#pragma unroll
    for (int k = 0; k < 8; k++) v[k] = 0.0f;
  float am = -FLT_MAX;
#pragma unroll
  for (int k = 0; k < 8; k++) am = max_ftz(am, abs_ftz(v[k]));
  // reduce over the quantization block's threads
  int width = tpb < 32 ? tpb : 32;
  for (int o = width >> 1; o > 0; o >>= 1) am = max_ftz(am, __shfl_xor_sync(0xffffffffu, am, o));
  if (BIG) {
    __shared__ float warp_max[16];
    int w = threadIdx.x >> 5;
    if ((threadIdx.x & 31) == 0) warp_max[w] = am;
    __syncthreads();
    am = warp_max[0];
    for (int k = 1; k < (int)(blockDim.x >> 5); k++) am = max_ftz(am, warp_max[k]);
  }
  if (!live) return;
  float inv = rcp_approx_ftz(am);
  uint32_t word = 0;
#pragma unroll
  for (int k = 0; k < 8; k += 2) {
    uint32_t hi = code4<NF4>(mul_ftz(v[k], inv)), lo = code4<NF4>(mul_ftz(v[k + 1], inv));
    word |= (hi << 4 | lo) << (8 * (k >> 1));
  }
  int64_t byte0 = i >> 1, nbytes = (n + 1) >> 1;
  if (byte0 + 4 <= nbytes) {
    *reinterpret_cast<uint32_t *>(packed + byte0) = word;
  } else {
    for (int b = 0; b < 4 && byte0 + b < nbytes; b++) packed[byte0 + b] = (uint8_t)(word >> (8 * b));
  }
  if (lane == 0) absmax[qblock] = am;
}

template <typename T, int NF4, bool VEC>
static void launch_quantize4(ftq_cuda *c, const T *x, int64_t n, int bs, uint8_t *packed, float *absmax) {
  int64_t nb = (n + bs - 1) / bs;
  int tpb = bs / 8;
  if (tpb > 32) {
    quantize4_kernel<T, NF4, VEC, true><<<(unsigned)nb, tpb, 0, c->stream>>>(x, n, bs, packed, absmax);
  } else {
    int per = 256 / tpb;
    quantize4_kernel<T, NF4, VEC, false><<<(unsigned)((nb + per - 1) / per), 256, 0, c->stream>>>(x, n, bs, packed,
                                                                                                     absmax);
  }
}

template <typename T>
static void dispatch_quantize4(ftq_cuda *c, const ftq_q4_desc *d, const void *x) {
  const T *xt = static_cast<const T *>(x);
  bool vec = ((uintptr_t)x & 15) == 0;
  int bs = (int)d->blocksize;
  if (d->scheme == FTQ_QSCHEME_NF4) {
    if (vec) launch_quantize4<T, 1, true>(c, xt, d->n, bs, d->packed, d->absmax);
    else launch_quantize4<T, 1, false>(c, xt, d->n, bs, d->packed, d->absmax);
  } else {
    if (vec) launch_quantize4<T, 0, true>(c, xt, d->n, bs, d->packed, d->absmax);
    else launch_quantize4<T, 0, false>(c, xt, d->n, bs, d->packed, d->absmax);
  }
}

static ftq_status quantize4_codes(ftq_cuda *c, const ftq_q4_desc *d, const void *x, ftq_dtype x_type) {
  switch (x_type) {
    case FTQ_DTYPE_F32: dispatch_quantize4<float>(c, d, x); break;
    case FTQ_DTYPE_F16: dispatch_quantize4<__half>(c, d, x); break;
    case FTQ_DTYPE_BF16: dispatch_quantize4<__nv_bfloat16>(c, d, x); break;
    default:
      return ftq_cuda_error(FTQ_ERR_UNSUPPORTED, "quantize_4bit: input dtype %s (f32, f16 or bf16 expected)",
                            ftq_dtype_name(x_type));
  }
  FTQ_CUDA_LAUNCH_CHECK("quantize_4bit");
  return FTQ_OK;
}

__global__ void quantize8_kernel(const float *__restrict__ x, int64_t n, int bs, const float *__restrict__ code,
                                 const float *offset, uint8_t *__restrict__ q, float *__restrict__ absmax);
static void launch_mean(ftq_cuda *c, const float *x, int64_t n, double *partial, float *d_mean);

// Everything on the stream, one synchronisation at the end (for the host
// offset): codes, fp32 absmax in stream-ordered scratch, its mean, and its
// 8-bit codes.
ftq_status ftq_cuda_quantize_4bit(void *be, const ftq_q4_desc *d, const void *x, ftq_dtype x_type,
                                  const float *code2_host, float *offset) {
  ftq_cuda *c = (ftq_cuda *)be;
  if (d->n <= 0) return FTQ_OK;
  FTQ_TRY_CU(ftq_cuda_enter(c));
  FTQ_TRY_CU(upload_tables(c));
  c->q4_fresh = d->packed;  // a PDL dequantize must not read these codes early until a synchronisation
  if (!d->nested) return quantize4_codes(c, d, x, x_type);
  int64_t nb = (d->n + d->blocksize - 1) / d->blocksize, chunks = (nb + 255) / 256;
  void *scratch = nullptr;
  size_t raw_bytes = ((size_t)nb * sizeof(float) + 255) & ~(size_t)255;
  FTQ_CUDA_TRY(cudaMallocAsync(&scratch, raw_bytes + 256 + (size_t)chunks * sizeof(double), c->stream));
  float *raw = (float *)scratch, *d_offset = (float *)((char *)scratch + raw_bytes);
  double *partial = (double *)((char *)scratch + raw_bytes + 256);
  ftq_q4_desc flat = *d;
  flat.absmax = raw;
  ftq_status st = quantize4_codes(c, &flat, x, x_type);
  cudaError_t e = cudaSuccess;
  if (st == FTQ_OK) e = cudaMemcpyAsync(d->code2, code2_host, 256 * sizeof(float), cudaMemcpyHostToDevice, c->stream);
  if (st == FTQ_OK && e == cudaSuccess) {
    launch_mean(c, raw, nb, partial, d_offset);
    quantize8_kernel<<<(unsigned)((nb + d->blocksize2 - 1) / d->blocksize2), 256, 0, c->stream>>>(
        raw, nb, (int)d->blocksize2, d->code2, d_offset, d->qabsmax, d->absmax2);
    e = cudaGetLastError();
  }
  if (st == FTQ_OK && e == cudaSuccess)
    e = cudaMemcpyAsync(offset, d_offset, sizeof(float), cudaMemcpyDeviceToHost, c->stream);
  if (st == FTQ_OK && e == cudaSuccess) e = cudaStreamSynchronize(c->stream);
  if (st == FTQ_OK && e != cudaSuccess) st = ftq_cuda_status(e, "quantize_4bit (double quantization)", __FILE__, __LINE__);
  cudaFreeAsync(scratch, c->stream);
  return st;
}

// ---------------------------------------------------------------------------
// 4-bit dequantize: EPT elements (EPT/2 packed bytes) per thread; blocks of
// >= 32 elements mean one absmax per thread. STREAM marks the output
// evict-first (it is written once and read by a later kernel).

template <typename T, int EPT, bool VEC, bool STREAM>
__device__ __forceinline__ void store_out(T *out, int64_t i, int64_t n, const float *v) {
  if (VEC && i + EPT <= n) {
    constexpr int PER = 16 / sizeof(T);  // elements per 16-byte store
#pragma unroll
    for (int k = 0; k < EPT / PER; k++) {
      uint4 u;
      T *t = reinterpret_cast<T *>(&u);
#pragma unroll
      for (int e = 0; e < PER; e++) t[e] = from_f<T>(v[k * PER + e]);
      uint4 *o = reinterpret_cast<uint4 *>(out + i) + k;
      if (STREAM) __stcs(o, u);
      else *o = u;
    }
    return;
  }
  for (int k = 0; k < EPT && i + k < n; k++) out[i + k] = from_f<T>(v[k]);
}

// Block sizes are powers of two: shifts (sh, sh2) instead of 64-bit divisions.
template <typename T, int NF4, bool NESTED, bool VEC, int EPT, bool STREAM>
__global__ void dequantize4_kernel(ftq_q4_desc d, int sh, int sh2, T *__restrict__ out) {
  __shared__ float lut[16];
  if (threadIdx.x < 16) lut[threadIdx.x] = NF4 ? c_nf4_lut[threadIdx.x] : c_fp4_lut[threadIdx.x];
  __syncthreads();
  int64_t i = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * EPT;
  if (i >= d.n) return;
  int64_t b = i >> sh;
  float am;
  if (NESTED)  // decode the absmax: code2[q] * absmax2 (ftz), then + offset as torch adds it (IEEE)
    am = __fadd_rn(mul_ftz(__ldg(d.code2 + d.qabsmax[b]), __ldg(d.absmax2 + (b >> sh2))), d.offset);
  else
    am = __ldg(d.absmax + b);
  constexpr int WORDS = EPT / 8;  // 32-bit words of packed codes
  int64_t byte0 = i >> 1, nbytes = (d.n + 1) >> 1;
  uint32_t w[WORDS];
  if (byte0 + EPT / 2 <= nbytes) {
    if (WORDS == 4) {
      uint4 u = __ldg(reinterpret_cast<const uint4 *>(d.packed + byte0));
      w[0] = u.x, w[1] = u.y, w[2 % WORDS] = u.z, w[3 % WORDS] = u.w;
    } else {
      uint2 u = __ldg(reinterpret_cast<const uint2 *>(d.packed + byte0));
      w[0] = u.x, w[1 % WORDS] = u.y;
    }
  } else {
#pragma unroll
    for (int k = 0; k < WORDS; k++) w[k] = 0;
    for (int k = 0; k < EPT / 2 && byte0 + k < nbytes; k++) w[k >> 2] |= (uint32_t)d.packed[byte0 + k] << (8 * (k & 3));
  }
  float v[EPT];
#pragma unroll
  for (int k = 0; k < EPT / 2; k++) {
    uint32_t byte = (w[k >> 2] >> (8 * (k & 3))) & 255u;
    v[2 * k] = mul_ftz(lut[byte >> 4], am);
    v[2 * k + 1] = mul_ftz(lut[byte & 15u], am);
  }
  store_out<T, EPT, VEC, STREAM>(out, i, d.n, v);
}

// Warp-contiguous variant: a thread takes G groups of 8 elements, group g
// of thread t at (block * G + g) * blockDim + t, so every load and store
// instruction of a warp covers one contiguous span (128 bytes of codes, 512
// bytes of bf16), and the G loads are in flight before the first use.
//
// PDL (programmatic dependent launch, sm_90+): launched with the
// programmatic-serialization attribute, the kernel may start while the one
// before it in the stream finishes. It waits for that kernel
// (cudaGridDependencySynchronize: completion and memory flush) before its
// first store, and, unless PREFETCH, before its first load too; PREFETCH
// (the codes were not written by the kernel just before: see q4_fresh)
// reads the frozen codes during the previous kernel's tail. It lets the next
// PDL kernel launch as soon as its own loads are issued.
// SCODE2 (double quant): the 256-entry code table is copied to shared
// memory first, and the absmax codes are decoded after the loads are all
// issued (and after the grid dependency wait), so no load waits on another.
template <typename T, int NF4, bool NESTED, int G, bool STREAM, bool PDL, bool PREFETCH, bool SCODE2 = false>
__global__ void dequantize4_wc_kernel(ftq_q4_desc d, int sh, int sh2, T *__restrict__ out) {
  __shared__ float lut[16];
  __shared__ float code2[SCODE2 ? 256 : 1];
  if (threadIdx.x < 16) lut[threadIdx.x] = NF4 ? c_nf4_lut[threadIdx.x] : c_fp4_lut[threadIdx.x];
  if (SCODE2)  // blockDim.x is 256
    code2[threadIdx.x] = __ldg(d.code2 + threadIdx.x);
  __syncthreads();
#if __CUDA_ARCH__ >= 900
  if (PDL && !PREFETCH) cudaGridDependencySynchronize();
#endif
  int64_t nbytes = (d.n + 1) >> 1;
  uint32_t w[G];
  float am[G];  // the absmax; with SCODE2 first the second-level absmax
  uint32_t qa[G];  // SCODE2: the absmax's 8-bit code, decoded after the wait
  int64_t e[G];
#pragma unroll
  for (int g = 0; g < G; g++) {
    e[g] = (((int64_t)blockIdx.x * G + g) * blockDim.x + threadIdx.x) * 8;
    w[g] = 0;
    am[g] = 0.0f;
    qa[g] = 0;
    if (e[g] >= d.n) continue;
    int64_t byte0 = e[g] >> 1, b = e[g] >> sh;
    if (byte0 + 4 <= nbytes) {
      w[g] = __ldg(reinterpret_cast<const uint32_t *>(d.packed + byte0));
    } else {
      for (int k = 0; k < 4 && byte0 + k < nbytes; k++) w[g] |= (uint32_t)d.packed[byte0 + k] << (8 * k);
    }
    if (NESTED && SCODE2) {  // loads only: nothing waits for them before the grid dependency
      qa[g] = __ldg(d.qabsmax + b);
      am[g] = __ldg(d.absmax2 + (b >> sh2));
    } else if (NESTED)
      am[g] = __fadd_rn(mul_ftz(__ldg(d.code2 + d.qabsmax[b]), __ldg(d.absmax2 + (b >> sh2))), d.offset);
    else
      am[g] = __ldg(d.absmax + b);
  }
#if __CUDA_ARCH__ >= 900
  if (PDL) {
    if (PREFETCH) cudaGridDependencySynchronize();
    cudaTriggerProgrammaticLaunchCompletion();
  }
#endif
#pragma unroll
  for (int g = 0; g < G; g++) {
    if (e[g] >= d.n) continue;
    if (NESTED && SCODE2) am[g] = __fadd_rn(mul_ftz(code2[qa[g]], am[g]), d.offset);
    float v[8];
#pragma unroll
    for (int k = 0; k < 4; k++) {
      uint32_t byte = (w[g] >> (8 * k)) & 255u;
      v[2 * k] = mul_ftz(lut[byte >> 4], am[g]);
      v[2 * k + 1] = mul_ftz(lut[byte & 15u], am[g]);
    }
    if (e[g] + 8 <= d.n) {
      constexpr int PER = 16 / sizeof(T);
#pragma unroll
      for (int k = 0; k < 8 / PER; k++) {
        uint4 u;
        T *t = reinterpret_cast<T *>(&u);
#pragma unroll
        for (int x = 0; x < PER; x++) t[x] = from_f<T>(v[k * PER + x]);
        uint4 *o = reinterpret_cast<uint4 *>(out + e[g]) + k;
        if (STREAM) __stcs(o, u);
        else *o = u;
      }
    } else {
      for (int k = 0; k < 8 && e[g] + k < d.n; k++) out[e[g] + k] = from_f<T>(v[k]);
    }
  }
}

// Kernel variant: the default is the fastest measured on an H100
// (bench/RESULTS.md): warp-contiguous, 2 groups, streaming stores, PDL on
// sm_90+. FTQ_DEQUANT_VARIANT picks another for benchmarking: "16" / "16cs"
// (16 elements per thread), "w1" / "w2" / "w4" (warp-contiguous, 1 / 2 / 4
// groups of 8 per thread), "cs" = streaming stores, "pdl" = PDL launch,
// "sync" = PDL without the prefetch (waits before loading), "gc" = the
// double-quant code table read from global memory (PDL variants).
typedef struct dq_variant {
  int wc, groups, stream, pdl, prefetch, scode2;
} dq_variant;

static dq_variant dequant_variant() {
  dq_variant v = {1, 2, 1, 1, 1, 1};
  const char *s = getenv("FTQ_DEQUANT_VARIANT");
  if (!s || !*s) return v;
  v.wc = s[0] == 'w';
  v.groups = v.wc ? atoi(s + 1) : 2;
  v.stream = strstr(s, "cs") != nullptr;
  v.pdl = strstr(s, "pdl") != nullptr;
  v.prefetch = strstr(s, "sync") == nullptr;
  v.scode2 = strstr(s, "gc") == nullptr;
  return v;
}

template <typename T>
static void launch_pdl(ftq_cuda *c, void (*kernel)(ftq_q4_desc, int, int, T *), unsigned grid, const ftq_q4_desc *d,
                       int sh, int sh2, void *out) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(grid);
  cfg.blockDim = dim3(256);
  cfg.stream = c->stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  cudaLaunchKernelEx(&cfg, kernel, *d, sh, sh2, (T *)out);
}

template <typename T, int NF4, bool NESTED>
static void launch_dequantize4(ftq_cuda *c, const ftq_q4_desc *d, void *out) {
  dq_variant v = dequant_variant();
  bool vec = ((uintptr_t)out & 15) == 0;
  int sh = __builtin_ctzll((unsigned long long)d->blocksize);
  int sh2 = d->nested ? __builtin_ctzll((unsigned long long)d->blocksize2) : 0;
  if (!vec) {  // an unaligned output: scalar stores
    unsigned grid = (unsigned)(((d->n + 15) / 16 + 255) / 256);
    dequantize4_kernel<T, NF4, NESTED, false, 16, false><<<grid, 256, 0, c->stream>>>(*d, sh, sh2, (T *)out);
    return;
  }
  if (!v.wc) {
    unsigned grid = (unsigned)(((d->n + 15) / 16 + 255) / 256);
    if (v.stream) dequantize4_kernel<T, NF4, NESTED, true, 16, true><<<grid, 256, 0, c->stream>>>(*d, sh, sh2, (T *)out);
    else dequantize4_kernel<T, NF4, NESTED, true, 16, false><<<grid, 256, 0, c->stream>>>(*d, sh, sh2, (T *)out);
    return;
  }
  int g = v.groups == 1 || v.groups == 4 ? v.groups : 2;
  int64_t groups = (d->n + 7) / 8;
  unsigned grid = (unsigned)((groups + 256 * g - 1) / (256 * g));
  if (v.pdl && c->cc_major >= 9 && g == 2 && v.stream) {
    // the codes may be read before the previous kernel ends unless that
    // kernel may have written them (a quantize not yet synchronised)
    const bool prefetch = v.prefetch && d->packed != c->q4_fresh;
    if (NESTED && v.scode2 && prefetch)
      launch_pdl<T>(c, dequantize4_wc_kernel<T, NF4, NESTED, 2, true, true, true, true>, grid, d, sh, sh2, out);
    else if (NESTED && v.scode2)
      launch_pdl<T>(c, dequantize4_wc_kernel<T, NF4, NESTED, 2, true, true, false, true>, grid, d, sh, sh2, out);
    else if (prefetch)
      launch_pdl<T>(c, dequantize4_wc_kernel<T, NF4, NESTED, 2, true, true, true>, grid, d, sh, sh2, out);
    else
      launch_pdl<T>(c, dequantize4_wc_kernel<T, NF4, NESTED, 2, true, true, false>, grid, d, sh, sh2, out);
    return;
  }
#define LAUNCH_WC(G, S) \
  dequantize4_wc_kernel<T, NF4, NESTED, G, S, false, false><<<grid, 256, 0, c->stream>>>(*d, sh, sh2, (T *)out)
  if (g == 1) v.stream ? LAUNCH_WC(1, true) : LAUNCH_WC(1, false);
  else if (g == 2) v.stream ? LAUNCH_WC(2, true) : LAUNCH_WC(2, false);
  else v.stream ? LAUNCH_WC(4, true) : LAUNCH_WC(4, false);
#undef LAUNCH_WC
}

template <typename T>
static void dispatch_dequantize4(ftq_cuda *c, const ftq_q4_desc *d, void *out) {
  bool nf4 = d->scheme == FTQ_QSCHEME_NF4;
  if (nf4 && d->nested) launch_dequantize4<T, 1, true>(c, d, out);
  else if (nf4) launch_dequantize4<T, 1, false>(c, d, out);
  else if (d->nested) launch_dequantize4<T, 0, true>(c, d, out);
  else launch_dequantize4<T, 0, false>(c, d, out);
}

ftq_status ftq_cuda_dequantize_4bit(void *be, const ftq_q4_desc *d, void *out, ftq_dtype out_type) {
  ftq_cuda *c = (ftq_cuda *)be;
  if (d->n <= 0) return FTQ_OK;
  if (d->blocksize < 32 || (d->blocksize & (d->blocksize - 1)) ||
      (d->nested && (d->blocksize2 < 1 || (d->blocksize2 & (d->blocksize2 - 1)))))
    return ftq_cuda_error(FTQ_ERR_INVALID_ARGUMENT, "dequantize_4bit: block sizes %lld / %lld must be powers of two",
                          (long long)d->blocksize, (long long)d->blocksize2);
  FTQ_TRY_CU(ftq_cuda_enter(c));
  FTQ_TRY_CU(upload_tables(c));
  switch (out_type) {
    case FTQ_DTYPE_F32: dispatch_dequantize4<float>(c, d, out); break;
    case FTQ_DTYPE_F16: dispatch_dequantize4<__half>(c, d, out); break;
    case FTQ_DTYPE_BF16: dispatch_dequantize4<__nv_bfloat16>(c, d, out); break;
    default:
      return ftq_cuda_error(FTQ_ERR_UNSUPPORTED, "dequantize_4bit: output dtype %s (f32, f16 or bf16 expected)",
                            ftq_dtype_name(out_type));
  }
  FTQ_CUDA_LAUNCH_CHECK("dequantize_4bit");
  return FTQ_OK;
}

// ---------------------------------------------------------------------------
// 8-bit dynamic blockwise (double quantization of the absmax)

// The deterministic mean of src/quant/quant_cpu.c (ftq_quant_mean): one
// warp per chunk of 256 (lane l sums l, l+32, ... in order, then a
// shuffle-down tree), then one block of 1024 threads over the chunk sums
// (thread t sums chunks t, t+1024, ... in order, then the same trees).
__device__ __forceinline__ double warp_tree(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  return v;
}

__global__ void chunk_sums_kernel(const float *x, int64_t n, int64_t chunks, double *partial) {
  int64_t c = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  int lane = threadIdx.x & 31;
  if (c >= chunks) return;  // whole warps leave together (chunks are per warp)
  double s = 0.0;
  for (int64_t i = c * 256 + lane; i < c * 256 + 256 && i < n; i += 32) s += (double)x[i];
  s = warp_tree(s);
  if (lane == 0) partial[c] = s;
}

__global__ void mean_kernel(const double *partial, int64_t chunks, int64_t n, float *mean) {
  __shared__ double warp_sum[32];
  double s = 0.0;
  for (int64_t c = threadIdx.x; c < chunks; c += 1024) s += partial[c];
  s = warp_tree(s);
  if ((threadIdx.x & 31) == 0) warp_sum[threadIdx.x >> 5] = s;
  __syncthreads();
  if (threadIdx.x < 32) {
    s = warp_tree(warp_sum[threadIdx.x]);
    if (threadIdx.x == 0) *mean = (float)(s / (double)n);
  }
}

static void launch_mean(ftq_cuda *c, const float *x, int64_t n, double *partial, float *d_mean) {
  int64_t chunks = (n + 255) / 256;
  chunk_sums_kernel<<<(unsigned)((chunks + 7) / 8), 256, 0, c->stream>>>(x, n, chunks, partial);
  mean_kernel<<<1, 1024, 0, c->stream>>>(partial, chunks, n, d_mean);
}

#define FTQ_Q8_QUALIFIERS __device__
#define FTQ_Q8_NAME dquantize8
#define FTQ_Q8_MUL_FTZ mul_ftz
#define FTQ_Q8_ADD_FTZ add_ftz
#include "quant/dquantize8.h"

// One CUDA block of 256 threads per quantization block.
__global__ void quantize8_kernel(const float *__restrict__ x, int64_t n, int bs, const float *__restrict__ code,
                                 const float *offset, uint8_t *__restrict__ q, float *__restrict__ absmax) {
  __shared__ float s_code[256];
  __shared__ float warp_max[8];
  s_code[threadIdx.x] = code[threadIdx.x];
  int64_t first = (int64_t)blockIdx.x * bs;
  int count = n - first < bs ? (int)(n - first) : bs;
  float off = offset ? *offset : 0.0f;
  float am = -FLT_MAX;
  for (int i = threadIdx.x; i < bs; i += blockDim.x) {
    float v = i < count ? x[first + i] : 0.0f;  // zero padding of a partial block
    if (offset && i < count) v = __fsub_rn(v, off);
    am = max_ftz(am, abs_ftz(v));
  }
  for (int o = 16; o > 0; o >>= 1) am = max_ftz(am, __shfl_xor_sync(0xffffffffu, am, o));
  if ((threadIdx.x & 31) == 0) warp_max[threadIdx.x >> 5] = am;
  __syncthreads();
  am = warp_max[0];
  for (int k = 1; k < 8; k++) am = max_ftz(am, warp_max[k]);
  float inv = rcp_approx_ftz(am);
  for (int i = threadIdx.x; i < count; i += blockDim.x) {
    float v = x[first + i];
    if (offset) v = __fsub_rn(v, off);
    q[first + i] = dquantize8(s_code, mul_ftz(v, inv));
  }
  if (threadIdx.x == 0) absmax[blockIdx.x] = am;
}

ftq_status ftq_cuda_quantize_8bit(void *be, const float *x, size_t n, int64_t blocksize, const float *code,
                                  ftq_center_mode center, float *offset, uint8_t *q, float *absmax) {
  ftq_cuda *c = (ftq_cuda *)be;
  if (!n) return FTQ_OK;
  FTQ_TRY_CU(ftq_cuda_enter(c));
  // device scratch: the offset and the chunk sums
  int64_t chunks = ((int64_t)n + 255) / 256;
  void *scratch = nullptr;
  FTQ_CUDA_TRY(cudaMallocAsync(&scratch, 16 + (size_t)chunks * sizeof(double), c->stream));
  float *d_offset = (float *)scratch;
  double *partial = (double *)((char *)scratch + 16);
  ftq_status st = FTQ_OK;
  cudaError_t e = cudaSuccess;
  if (center == FTQ_CENTER_MEAN) {
    launch_mean(c, x, (int64_t)n, partial, d_offset);
  } else if (center == FTQ_CENTER_GIVEN) {
    e = cudaMemcpyAsync(d_offset, offset, sizeof(float), cudaMemcpyHostToDevice, c->stream);
  }
  if (e == cudaSuccess) {
    unsigned nb = (unsigned)(((int64_t)n + blocksize - 1) / blocksize);
    quantize8_kernel<<<nb, 256, 0, c->stream>>>(x, (int64_t)n, (int)blocksize, code,
                                                 center == FTQ_CENTER_NONE ? nullptr : d_offset, q, absmax);
    e = cudaGetLastError();
  }
  if (e == cudaSuccess && center == FTQ_CENTER_MEAN)
    e = cudaMemcpyAsync(offset, d_offset, sizeof(float), cudaMemcpyDeviceToHost, c->stream);
  if (e == cudaSuccess) e = cudaStreamSynchronize(c->stream);  // the host offset is read next
  if (e != cudaSuccess) st = ftq_cuda_status(e, "quantize_8bit", __FILE__, __LINE__);
  cudaFreeAsync(scratch, c->stream);
  return st;
}

// ---------------------------------------------------------------------------
// INT8: per-group statistics (order-independent integer atomics on
// monotonic keys), parameters in double, codes in double

__device__ __forceinline__ int f2key(float f) {
  if (f == 0.0f) f = 0.0f;  // -0 and +0 alike
  int i = __float_as_int(f);
  return i >= 0 ? i : i ^ 0x7fffffff;
}
__device__ __forceinline__ float key2f(int k) { return __int_as_float(k >= 0 ? k : k ^ 0x7fffffff); }

template <typename T>
__device__ __forceinline__ float load_any(const void *x, int64_t i) {
  return to_f<T>(static_cast<const T *>(x)[i]);
}

struct i8_geom {
  int64_t rows, cols, group, gpr, chunks_per_group;
};

__device__ __forceinline__ void group_span(const i8_geom &g, int64_t grp, int64_t *first, int64_t *len) {
  int64_t row = grp / g.gpr, col0 = (grp % g.gpr) * g.group;
  *len = g.cols - col0 < g.group ? g.cols - col0 : g.group;
  *first = row * g.cols + col0;
}

constexpr int kI8Chunk = 4096;

template <typename T>
__global__ void int8_stats_kernel(const void *x, i8_geom g, int *keys /* [groups][3]: min, max, amax */) {
  int64_t grp = blockIdx.x / g.chunks_per_group, chunk = blockIdx.x % g.chunks_per_group;
  int64_t first, len;
  group_span(g, grp, &first, &len);
  int lo = f2key(0.0f), hi = lo, am = lo;
  for (int64_t i = chunk * kI8Chunk + threadIdx.x; i < len && i < (chunk + 1) * kI8Chunk; i += blockDim.x) {
    float v = load_any<T>(x, first + i);
    if (!isfinite(v)) continue;
    int k = f2key(v);
    lo = min(lo, k);
    hi = max(hi, k);
    am = max(am, f2key(fabsf(v)));
  }
  for (int o = 16; o > 0; o >>= 1) {
    lo = min(lo, __shfl_xor_sync(0xffffffffu, lo, o));
    hi = max(hi, __shfl_xor_sync(0xffffffffu, hi, o));
    am = max(am, __shfl_xor_sync(0xffffffffu, am, o));
  }
  if ((threadIdx.x & 31) == 0) {
    atomicMin(&keys[3 * grp], lo);
    atomicMax(&keys[3 * grp + 1], hi);
    atomicMax(&keys[3 * grp + 2], am);
  }
}

__global__ void int8_keys_init_kernel(int *keys, int64_t groups) {
  int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < 3 * groups) keys[i] = 0;  // the key of 0.0: the range always holds 0
}

__global__ void int8_params_kernel(const int *keys, int64_t groups, int asym, float *scales, int32_t *zps) {
  int64_t grp = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (grp >= groups) return;
  double lo = key2f(keys[3 * grp]), hi = key2f(keys[3 * grp + 1]), am = key2f(keys[3 * grp + 2]);
  if (!asym) {
    scales[grp] = (float)(am / 127.0);
    return;
  }
  float s = (float)((hi - lo) / 255.0);
  double z = s > 0.0f ? rint(-lo / (double)s) : 0.0;
  scales[grp] = s;
  zps[grp] = (int32_t)(z < 0.0 ? 0.0 : z > 255.0 ? 255.0 : z);
}

template <typename T>
__global__ void int8_quantize_kernel(const void *x, i8_geom g, int asym, const float *scales, const int32_t *zps,
                                     void *q, uint8_t *mask, unsigned long long *clipped) {
  int64_t grp = blockIdx.x / g.chunks_per_group, chunk = blockIdx.x % g.chunks_per_group;
  int64_t first, len;
  group_span(g, grp, &first, &len);
  float s = scales[grp];
  int32_t zp = asym ? zps[grp] : 0;
  int32_t lo = asym ? 0 : -127, hi = asym ? 255 : 127;
  unsigned count = 0;
  for (int64_t i = chunk * kI8Chunk + threadIdx.x; i < len && i < (chunk + 1) * kI8Chunk; i += blockDim.x) {
    double v = load_any<T>(x, first + i);
    int32_t c = zp;
    int clip = 0;
    if (isnan(v)) {
    } else if (s == 0.0f) {
      clip = v != 0.0;
    } else {
      double t = rint(v / (double)s) + (double)zp;
      if (t < lo) c = lo, clip = 1;
      else if (t > hi) c = hi, clip = 1;
      else c = (int32_t)t;
    }
    count += clip;
    if (asym) static_cast<uint8_t *>(q)[first + i] = (uint8_t)c;
    else static_cast<int8_t *>(q)[first + i] = (int8_t)c;
    if (mask) mask[first + i] = (uint8_t)!clip;
  }
  for (int o = 16; o > 0; o >>= 1) count += __shfl_xor_sync(0xffffffffu, count, o);
  if ((threadIdx.x & 31) == 0 && count) atomicAdd(clipped, (unsigned long long)count);
}

template <typename T>
__global__ void int8_dequantize_kernel(i8_geom g, int asym, const void *q, const float *scales, const int32_t *zps,
                                       T *out) {
  int64_t grp = blockIdx.x / g.chunks_per_group, chunk = blockIdx.x % g.chunks_per_group;
  int64_t first, len;
  group_span(g, grp, &first, &len);
  float s = scales[grp];
  int32_t zp = asym ? zps[grp] : 0;
  for (int64_t i = chunk * kI8Chunk + threadIdx.x; i < len && i < (chunk + 1) * kI8Chunk; i += blockDim.x) {
    int32_t c = asym ? (int32_t) static_cast<const uint8_t *>(q)[first + i]
                     : (int32_t) static_cast<const int8_t *>(q)[first + i];
    out[first + i] = from_f<T>(__fmul_rn((float)(c - zp), s));
  }
}

static i8_geom geom_of(const ftq_int8_desc *d) {
  i8_geom g;
  g.rows = d->rows;
  g.cols = d->cols;
  g.group = d->group;
  g.gpr = (d->cols + d->group - 1) / d->group;
  g.chunks_per_group = (d->group + kI8Chunk - 1) / kI8Chunk;
  return g;
}

template <typename T>
static ftq_status int8_quantize_t(ftq_cuda *c, const ftq_int8_desc *d, const void *x, int64_t *clipped) {
  i8_geom g = geom_of(d);
  int64_t groups = g.rows * g.gpr;
  unsigned grid = (unsigned)(groups * g.chunks_per_group);
  void *scratch = nullptr;
  FTQ_CUDA_TRY(cudaMallocAsync(&scratch, 16 + (size_t)groups * 3 * sizeof(int), c->stream));
  unsigned long long *d_clipped = (unsigned long long *)scratch;
  int *keys = (int *)((char *)scratch + 16);
  cudaError_t e = cudaMemsetAsync(d_clipped, 0, sizeof *d_clipped, c->stream);
  if (e == cudaSuccess && !d->params_given) {
    int8_keys_init_kernel<<<(unsigned)((3 * groups + 255) / 256), 256, 0, c->stream>>>(keys, groups);
    int8_stats_kernel<T><<<grid, 256, 0, c->stream>>>(x, g, keys);
    int8_params_kernel<<<(unsigned)((groups + 255) / 256), 256, 0, c->stream>>>(keys, groups, d->asymmetric, d->scales,
                                                                                 d->zero_points);
    e = cudaGetLastError();
  }
  if (e == cudaSuccess) {
    int8_quantize_kernel<T><<<grid, 256, 0, c->stream>>>(x, g, d->asymmetric, d->scales, d->zero_points, d->q, d->mask,
                                                         d_clipped);
    e = cudaGetLastError();
  }
  unsigned long long h = 0;
  if (e == cudaSuccess) e = cudaMemcpyAsync(&h, d_clipped, sizeof h, cudaMemcpyDeviceToHost, c->stream);
  if (e == cudaSuccess) e = cudaStreamSynchronize(c->stream);
  cudaFreeAsync(scratch, c->stream);
  if (e != cudaSuccess) return ftq_cuda_status(e, "quantize_int8", __FILE__, __LINE__);
  *clipped = (int64_t)h;
  return FTQ_OK;
}

ftq_status ftq_cuda_quantize_int8(void *be, const ftq_int8_desc *d, const void *x, ftq_dtype x_type, int64_t *clipped) {
  ftq_cuda *c = (ftq_cuda *)be;
  *clipped = 0;
  if (d->rows <= 0 || d->cols <= 0) return FTQ_OK;
  FTQ_TRY_CU(ftq_cuda_enter(c));
  switch (x_type) {
    case FTQ_DTYPE_F32: return int8_quantize_t<float>(c, d, x, clipped);
    case FTQ_DTYPE_F16: return int8_quantize_t<__half>(c, d, x, clipped);
    case FTQ_DTYPE_BF16: return int8_quantize_t<__nv_bfloat16>(c, d, x, clipped);
    default:
      return ftq_cuda_error(FTQ_ERR_UNSUPPORTED, "quantize_int8: input dtype %s (f32, f16 or bf16 expected)",
                            ftq_dtype_name(x_type));
  }
}

ftq_status ftq_cuda_dequantize_int8(void *be, const ftq_int8_desc *d, void *out, ftq_dtype out_type) {
  ftq_cuda *c = (ftq_cuda *)be;
  if (d->rows <= 0 || d->cols <= 0) return FTQ_OK;
  FTQ_TRY_CU(ftq_cuda_enter(c));
  i8_geom g = geom_of(d);
  unsigned grid = (unsigned)(g.rows * g.gpr * g.chunks_per_group);
  switch (out_type) {
    case FTQ_DTYPE_F32:
      int8_dequantize_kernel<float><<<grid, 256, 0, c->stream>>>(g, d->asymmetric, d->q, d->scales, d->zero_points,
                                                                 (float *)out);
      break;
    case FTQ_DTYPE_F16:
      int8_dequantize_kernel<__half><<<grid, 256, 0, c->stream>>>(g, d->asymmetric, d->q, d->scales, d->zero_points,
                                                                  (__half *)out);
      break;
    case FTQ_DTYPE_BF16:
      int8_dequantize_kernel<__nv_bfloat16><<<grid, 256, 0, c->stream>>>(g, d->asymmetric, d->q, d->scales,
                                                                         d->zero_points, (__nv_bfloat16 *)out);
      break;
    default:
      return ftq_cuda_error(FTQ_ERR_UNSUPPORTED, "dequantize_int8: output dtype %s (f32, f16 or bf16 expected)",
                            ftq_dtype_name(out_type));
  }
  FTQ_CUDA_LAUNCH_CHECK("dequantize_int8");
  return FTQ_OK;
}

// ---------------------------------------------------------------------------
// straight-through gradient

template <typename T>
__global__ void mask_select_kernel(size_t n, const uint8_t *mask, const T *x, T *out) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    out[i] = !mask || mask[i] ? x[i] : T(0);
}

ftq_status ftq_cuda_mask_select(void *be, size_t n, const uint8_t *mask, const void *x, ftq_dtype type, void *out) {
  ftq_cuda *c = (ftq_cuda *)be;
  if (!n) return FTQ_OK;
  FTQ_TRY_CU(ftq_cuda_enter(c));
  unsigned g = ftq_grid_for(n, 256, c);
  switch (ftq_dtype_size(type)) {  // a bit copy: the element type only sets the width
    case 4: mask_select_kernel<uint32_t><<<g, 256, 0, c->stream>>>(n, mask, (const uint32_t *)x, (uint32_t *)out); break;
    case 2: mask_select_kernel<uint16_t><<<g, 256, 0, c->stream>>>(n, mask, (const uint16_t *)x, (uint16_t *)out); break;
    case 1: mask_select_kernel<uint8_t><<<g, 256, 0, c->stream>>>(n, mask, (const uint8_t *)x, (uint8_t *)out); break;
    case 8: mask_select_kernel<uint64_t><<<g, 256, 0, c->stream>>>(n, mask, (const uint64_t *)x, (uint64_t *)out); break;
    default: return ftq_cuda_error(FTQ_ERR_UNSUPPORTED, "mask_select: dtype %s", ftq_dtype_name(type));
  }
  FTQ_CUDA_LAUNCH_CHECK("mask_select");
  return FTQ_OK;
}

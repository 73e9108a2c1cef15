// Helpers shared by the model operations of the CUDA backend (norm.cu,
// linear.cu, attention.cu, lm_head.cu): scratch carving, GEMM calls with
// row-major arguments, loads of any float type, block reductions and the
// half-precision type selected by an operation's `fp16` flag.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "common.cuh"

// The dtype of the tensor-core products: bf16 unless fp16 is asked for.
static inline ftq_dtype ftq_half_type(int fp16) { return fp16 ? FTQ_DTYPE_F16 : FTQ_DTYPE_BF16; }

// Hands out 256-byte aligned pieces of an operation's scratch in order.
struct FtqCarve {
  char *base, *p, *end;
  size_t needed = 0;
  FtqCarve(void *work, size_t bytes) : base((char *)work), p((char *)work), end((char *)work + (work ? bytes : 0)) {}
  template <typename T>
  T *take(size_t count) {
    char *a = (char *)(((uintptr_t)p + 255u) & ~(uintptr_t)255u);
    char *next = a + count * sizeof(T);
    needed = (size_t)(next - base);
    p = next;
    return (T *)a;
  }
  // FTQ_OK when every piece fits, else the internal error naming the op.
  ftq_status check(const char *op) const {
    if (base && p <= end) return FTQ_OK;
    return ftq_cuda_error(FTQ_ERR_INTERNAL, "%s: scratch of %zu bytes given, %zu needed", op,
                          (size_t)(end - base), needed);
  }
};

// C = alpha op(A) op(B) + beta C, row-major, one matrix (see ftq_gemm_args).
static inline ftq_status ftq_cuda_mm(ftq_cuda *c, int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
                                     const void *a, int64_t lda, const void *b, int64_t ldb, float beta, void *cc,
                                     int64_t ldc, ftq_dtype ab_type, ftq_dtype c_type) {
  ftq_gemm_args g;
  memset(&g, 0, sizeof g);
  g.trans_a = ta, g.trans_b = tb, g.m = m, g.n = n, g.k = k, g.alpha = alpha, g.beta = beta;
  g.a = a, g.a_type = ab_type, g.lda = lda;
  g.b = b, g.b_type = ab_type, g.ldb = ldb;
  g.c = cc, g.c_type = c_type, g.ldc = ldc;
  g.batch = 1;
  return ftq_cuda_gemm(c, &g);
}

// Element i of a float tensor of run-time type t (f32, f16 or bf16).
__device__ __forceinline__ float ftq_ld(const void *p, ftq_dtype t, size_t i) {
  if (t == FTQ_DTYPE_BF16) return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
  if (t == FTQ_DTYPE_F16) return __half2float(((const __half *)p)[i]);
  return ((const float *)p)[i];
}

// Raw 16 bits of v rounded to the half type (F16: fp16, else bf16).
template <bool F16>
__device__ __forceinline__ uint16_t ftq_half_bits(float v) {
  if (F16) return __half_as_ushort(__float2half_rn(v));
  return __bfloat16_as_ushort(__float2bfloat16_rn(v));
}

// Two floats packed as one 32-bit operand of a tensor-core instruction
// (lo in the low 16 bits).
template <bool F16>
__device__ __forceinline__ uint32_t ftq_pack2(float lo, float hi) {
  return (uint32_t)ftq_half_bits<F16>(lo) | ((uint32_t)ftq_half_bits<F16>(hi) << 16);
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every
// thread gets the result. `sh` is 32 floats of shared memory.
__device__ __forceinline__ float ftq_block_sum(float v, float *sh) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  __syncthreads();  // sh may still be read by a previous call
  if (lane == 0) sh[w] = v;
  __syncthreads();
  v = lane < (int)(blockDim.x >> 5) ? sh[lane] : 0.0f;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float ftq_block_max(float v, float *sh) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) sh[w] = v;
  __syncthreads();
  v = lane < (int)(blockDim.x >> 5) ? sh[lane] : -INFINITY;
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Device-side argument checks: kernels record the first offending index
// in c->flag (initialised to INT32_MAX by ftq_cuda_flag_reset); the op
// reads it back with ftq_cuda_flag_read after its kernels are queued.
ftq_status ftq_cuda_flag_reset(ftq_cuda *c);
// Waits for the stream and returns the recorded index, or -1 when none.
ftq_status ftq_cuda_flag_read(ftq_cuda *c, int64_t *index);

// norm.cu
ftq_status ftq_cuda_embedding(void *be, const int32_t *ids, int64_t n, const void *table, ftq_dtype table_type,
                              int64_t vocab, int64_t dim, float *out);
ftq_status ftq_cuda_rmsnorm(void *be, int64_t rows, int64_t dim, float eps, const float *x, const float *delta,
                            float *sum, const void *w, ftq_dtype w_type, float *y, float *rstd);
ftq_status ftq_cuda_rmsnorm_backward(void *be, int64_t rows, int64_t dim, const float *x, const void *w,
                                     ftq_dtype w_type, const float *rstd, const float *dy, float *dx, int accumulate);
ftq_status ftq_cuda_rope(void *be, float *x, int64_t n, int64_t row_stride, int64_t n_heads, int64_t head_dim,
                         const int32_t *positions, const float *inv_freq, int inverse);
ftq_status ftq_cuda_swiglu(void *be, size_t n, const float *gate, const float *up, float *out);
ftq_status ftq_cuda_swiglu_backward(void *be, size_t n, const float *gate, const float *up, const float *dout,
                                    float *dgate, float *dup);
// linear.cu
ftq_status ftq_cuda_linear(void *be, const ftq_linear_args *a);
ftq_status ftq_cuda_linear_backward(void *be, const ftq_linear_args *a);
// attention.cu
ftq_status ftq_cuda_attention(void *be, const ftq_attention_args *a);
ftq_status ftq_cuda_attention_backward(void *be, const ftq_attention_args *a);
// lm_head.cu
ftq_status ftq_cuda_lm_head(void *be, const ftq_lm_head_args *a);

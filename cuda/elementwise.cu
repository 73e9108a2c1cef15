// Elementwise operations and reductions of the CUDA backend.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>

#include "common.cuh"

// ---------------------------------------------------------------------------
// CUDA kernels

template <typename T>
__device__ __forceinline__ float load_f(const T *x, size_t i);
template <>
__device__ __forceinline__ float load_f<float>(const float *x, size_t i) { return x[i]; }
template <>
__device__ __forceinline__ float load_f<__half>(const __half *x, size_t i) { return __half2float(x[i]); }
template <>
__device__ __forceinline__ float load_f<__nv_bfloat16>(const __nv_bfloat16 *x, size_t i) {
  return __bfloat162float(x[i]);
}

template <typename T>
__device__ __forceinline__ T store_f(float v);
template <>
__device__ __forceinline__ float store_f<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half store_f<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 store_f<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

template <typename T>
__global__ void fill_kernel(T *x, size_t n, T v) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) x[i] = v;
}

template <typename D, typename S>
__global__ void convert_kernel(D *dst, const S *src, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    dst[i] = store_f<D>(load_f<S>(src, i));
}

// f32 -> 16-bit with 16-byte loads and 8-byte stores (the activations the
// model operations round before each tensor-core product); n4 groups of 4.
template <typename D>
__global__ void convert_f32_vec4_kernel(D *dst, const float4 *src, size_t n4) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n4; i += (size_t)gridDim.x * blockDim.x) {
    const float4 v = src[i];
    D o[4] = {store_f<D>(v.x), store_f<D>(v.y), store_f<D>(v.z), store_f<D>(v.w)};
    reinterpret_cast<uint2 *>(dst)[i] = *reinterpret_cast<const uint2 *>(o);
  }
}

// Explicit round-to-nearest multiply and add (no FMA contraction) so the
// result is bit-identical to the CPU backend's.
__global__ void axpby_kernel(size_t n, float a, const float *x, float b, float *y) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    y[i] = b == 0.0f ? __fmul_rn(a, x[i]) : __fadd_rn(__fmul_rn(a, x[i]), __fmul_rn(b, y[i]));
}

// Combines two partial results; NaN is carried through absmax explicitly
// because fmax() would drop it.
__device__ __forceinline__ double combine(ftq_reduce_op op, double a, double b) {
  if (op == FTQ_REDUCE_ABSMAX) return (isnan(a) || isnan(b)) ? nan("") : fmax(a, b);
  return a + b;
}

__device__ double block_reduce(ftq_reduce_op op, double v) {
  __shared__ double warp_vals[32];
  for (int off = 16; off > 0; off >>= 1) v = combine(op, v, __shfl_down_sync(0xffffffffu, v, off));
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warp_vals[warp] = v;
  __syncthreads();
  int nwarps = (blockDim.x + 31) >> 5;
  v = threadIdx.x < nwarps ? warp_vals[threadIdx.x] : 0.0;
  if (warp == 0)
    for (int off = 16; off > 0; off >>= 1) v = combine(op, v, __shfl_down_sync(0xffffffffu, v, off));
  return v;
}

template <typename T>
__global__ void reduce_partial_kernel(ftq_reduce_op op, const T *x, size_t n, double *partials) {
  double acc = 0.0;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    double v = load_f<T>(x, i);
    acc = combine(op, acc, op == FTQ_REDUCE_SUMSQ ? v * v : op == FTQ_REDUCE_ABSMAX ? fabs(v) : v);
  }
  acc = block_reduce(op, acc);
  if (threadIdx.x == 0) partials[blockIdx.x] = acc;
}

__global__ void reduce_final_kernel(ftq_reduce_op op, const double *partials, int n, double *out) {
  double acc = 0.0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) acc = combine(op, acc, partials[i]);
  acc = block_reduce(op, acc);
  if (threadIdx.x == 0) *out = acc;
}

// ---------------------------------------------------------------------------
// kernel launchers

static const int kThreads = 256;

ftq_status ftq_cuda_fill(void *be, void *x, ftq_dtype t, size_t n, float v) {
  ftq_cuda *c = (ftq_cuda *)be;
  if (!n) return FTQ_OK;
  FTQ_TRY_CU(ftq_cuda_enter(c));
  unsigned g = ftq_grid_for(n, kThreads, c);
  switch (t) {
    case FTQ_DTYPE_F32: fill_kernel<float><<<g, kThreads, 0, c->stream>>>((float *)x, n, v); break;
    case FTQ_DTYPE_F16: fill_kernel<__half><<<g, kThreads, 0, c->stream>>>((__half *)x, n, __float2half_rn(v)); break;
    case FTQ_DTYPE_BF16:
      fill_kernel<__nv_bfloat16><<<g, kThreads, 0, c->stream>>>((__nv_bfloat16 *)x, n, __float2bfloat16_rn(v));
      break;
    case FTQ_DTYPE_I32:
    case FTQ_DTYPE_I64:
    case FTQ_DTYPE_I8:
    case FTQ_DTYPE_U8:
      if (v != floorf(v))
        return ftq_cuda_error(FTQ_ERR_INVALID_ARGUMENT, "fill: %g is not integral for %s", v, ftq_dtype_name(t));
      if (t == FTQ_DTYPE_I32) fill_kernel<int32_t><<<g, kThreads, 0, c->stream>>>((int32_t *)x, n, (int32_t)v);
      else if (t == FTQ_DTYPE_I64) fill_kernel<int64_t><<<g, kThreads, 0, c->stream>>>((int64_t *)x, n, (int64_t)v);
      else if (t == FTQ_DTYPE_I8) fill_kernel<int8_t><<<g, kThreads, 0, c->stream>>>((int8_t *)x, n, (int8_t)v);
      else fill_kernel<uint8_t><<<g, kThreads, 0, c->stream>>>((uint8_t *)x, n, (uint8_t)v);
      break;
    default: return ftq_cuda_error(FTQ_ERR_UNSUPPORTED, "fill: dtype %s not supported", ftq_dtype_name(t));
  }
  FTQ_CUDA_LAUNCH_CHECK("fill");
  return FTQ_OK;
}

template <typename D>
static ftq_status launch_convert_to(ftq_cuda *c, D *dst, const void *src, ftq_dtype st, size_t n) {
  if (sizeof(D) == 2 && st == FTQ_DTYPE_F32 && (uintptr_t)src % 16 == 0 && (uintptr_t)dst % 8 == 0 && n >= 4) {
    const size_t n4 = n / 4;
    convert_f32_vec4_kernel<D><<<ftq_grid_for(n4, kThreads, c), kThreads, 0, c->stream>>>(dst, (const float4 *)src, n4);
    FTQ_CUDA_LAUNCH_CHECK("convert");
    if (n == n4 * 4) return FTQ_OK;
    dst += n4 * 4;
    src = (const float *)src + n4 * 4;
    n -= n4 * 4;
  }
  unsigned g = ftq_grid_for(n, kThreads, c);
  switch (st) {
    case FTQ_DTYPE_F32: convert_kernel<D, float><<<g, kThreads, 0, c->stream>>>(dst, (const float *)src, n); break;
    case FTQ_DTYPE_F16: convert_kernel<D, __half><<<g, kThreads, 0, c->stream>>>(dst, (const __half *)src, n); break;
    case FTQ_DTYPE_BF16:
      convert_kernel<D, __nv_bfloat16><<<g, kThreads, 0, c->stream>>>(dst, (const __nv_bfloat16 *)src, n);
      break;
    default: return ftq_cuda_error(FTQ_ERR_UNSUPPORTED, "convert: source dtype %s not supported", ftq_dtype_name(st));
  }
  FTQ_CUDA_LAUNCH_CHECK("convert");
  return FTQ_OK;
}

ftq_status ftq_cuda_convert(void *be, void *dst, ftq_dtype dt, const void *src, ftq_dtype st, size_t n) {
  ftq_cuda *c = (ftq_cuda *)be;
  if (!n) return FTQ_OK;
  FTQ_TRY_CU(ftq_cuda_enter(c));
  switch (dt) {
    case FTQ_DTYPE_F32: return launch_convert_to(c, (float *)dst, src, st, n);
    case FTQ_DTYPE_F16: return launch_convert_to(c, (__half *)dst, src, st, n);
    case FTQ_DTYPE_BF16: return launch_convert_to(c, (__nv_bfloat16 *)dst, src, st, n);
    default: return ftq_cuda_error(FTQ_ERR_UNSUPPORTED, "convert: target dtype %s not supported", ftq_dtype_name(dt));
  }
}

ftq_status ftq_cuda_axpby(void *be, size_t n, float a, const float *x, float b, float *y) {
  ftq_cuda *c = (ftq_cuda *)be;
  if (!n) return FTQ_OK;
  FTQ_TRY_CU(ftq_cuda_enter(c));
  axpby_kernel<<<ftq_grid_for(n, kThreads, c), kThreads, 0, c->stream>>>(n, a, x, b, y);
  FTQ_CUDA_LAUNCH_CHECK("axpby");
  return FTQ_OK;
}

ftq_status ftq_cuda_reduce(void *be, ftq_reduce_op op, const void *x, ftq_dtype t, size_t n, double *result) {
  ftq_cuda *c = (ftq_cuda *)be;
  FTQ_TRY_CU(ftq_cuda_enter(c));
  if (!n) {
    *result = 0.0;
    return FTQ_OK;
  }
  FTQ_PROFILE(c, FTQ_PROF_REDUCE);
  unsigned g = ftq_grid_for(n, kThreads, c);
  if (g > (unsigned)kReduceBlocks) g = kReduceBlocks;
  switch (t) {
    case FTQ_DTYPE_F32:
      reduce_partial_kernel<float><<<g, kThreads, 0, c->stream>>>(op, (const float *)x, n, c->reduce_partials);
      break;
    case FTQ_DTYPE_F16:
      reduce_partial_kernel<__half><<<g, kThreads, 0, c->stream>>>(op, (const __half *)x, n, c->reduce_partials);
      break;
    case FTQ_DTYPE_BF16:
      reduce_partial_kernel<__nv_bfloat16>
          <<<g, kThreads, 0, c->stream>>>(op, (const __nv_bfloat16 *)x, n, c->reduce_partials);
      break;
    default: return ftq_cuda_error(FTQ_ERR_UNSUPPORTED, "reduce: dtype %s not supported", ftq_dtype_name(t));
  }
  FTQ_CUDA_LAUNCH_CHECK("reduce_partial");
  reduce_final_kernel<<<1, kThreads, 0, c->stream>>>(op, c->reduce_partials, (int)g, c->reduce_partials + kReduceBlocks);
  FTQ_CUDA_LAUNCH_CHECK("reduce_final");
  FTQ_CUDA_TRY(cudaMemcpyAsync(c->reduce_result_host, c->reduce_partials + kReduceBlocks, sizeof(double),
                               cudaMemcpyDeviceToHost, c->stream));
  FTQ_CUDA_TRY(cudaStreamSynchronize(c->stream));
  *result = *c->reduce_result_host;
  return FTQ_OK;
}

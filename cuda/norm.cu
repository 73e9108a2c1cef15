// Row-wise model operations of the CUDA backend: embedding lookup, RMSNorm
// with its residual add (forward and backward), rotary embedding and
// SwiGLU. All f32 as the CPU reference (src/cpu/ops_norm.c,
// ops_attention.c's RoPE); row sums are f32 tree reductions, so the results
// differ from the CPU's (double sums) only by rounding. Memory-bound: one
// block per row for the norms, grid-stride loops elsewhere.
#include "ops.cuh"

namespace {

constexpr int kRowThreads = 256;

int row_threads(int64_t dim) { return dim >= 512 ? kRowThreads : dim > 64 ? 128 : 32; }

// ---------------------------------------------------------------------------
// embedding

__global__ void embedding_kernel(const int32_t *ids, const void *table, ftq_dtype t, int64_t vocab, int64_t dim,
                                 float *out, int *flag) {
  const int64_t i = blockIdx.x;
  const int32_t id = ids[i];
  const bool ok = id >= 0 && id < vocab;
  if (!ok && threadIdx.x == 0) atomicMin(flag, (int)i);
  float *o = out + i * dim;
  const size_t base = (size_t)(ok ? id : 0) * (size_t)dim;
  for (int64_t c = threadIdx.x; c < dim; c += blockDim.x) o[c] = ok ? ftq_ld(table, t, base + (size_t)c) : 0.0f;
}

// ---------------------------------------------------------------------------
// RMSNorm

__global__ void rmsnorm_kernel(int64_t dim, float eps, const float *x, const float *delta, float *sum, const void *w,
                               ftq_dtype wt, float *y, float *rstd) {
  __shared__ float sh[32];
  const int64_t r = blockIdx.x;
  const float *xr = x + r * dim;
  float ss = 0.0f;
  if (delta) {  // sum may alias x: each element is read and written by one thread
    const float *dr = delta + r * dim;
    float *sr = sum + r * dim;
    for (int64_t c = threadIdx.x; c < dim; c += blockDim.x) {
      const float s = __fadd_rn(xr[c], dr[c]);
      sr[c] = s;
      ss += s * s;
    }
    xr = sr;
  } else {
    for (int64_t c = threadIdx.x; c < dim; c += blockDim.x) ss += xr[c] * xr[c];
  }
  ss = ftq_block_sum(ss, sh);
  // as PyTorch: variance and rsqrt in f32, then (x * rstd) * w
  const float rs = 1.0f / sqrtf(ss / (float)dim + eps);
  if (rstd && threadIdx.x == 0) rstd[r] = rs;
  float *yr = y + r * dim;
  for (int64_t c = threadIdx.x; c < dim; c += blockDim.x) yr[c] = __fmul_rn(ftq_ld(w, wt, (size_t)c), __fmul_rn(xr[c], rs));
}

// dx_k = r (w_k dy_k - x_k r^2 sum_c(w_c dy_c x_c) / dim)
__global__ void rmsnorm_backward_kernel(int64_t dim, const float *x, const void *w, ftq_dtype wt, const float *rstd,
                                        const float *dy, float *dx, int accumulate) {
  __shared__ float sh[32];
  const int64_t r = blockIdx.x;
  const float *xr = x + r * dim, *dyr = dy + r * dim;
  float *dxr = dx + r * dim;
  float dot = 0.0f;
  for (int64_t c = threadIdx.x; c < dim; c += blockDim.x) dot += ftq_ld(w, wt, (size_t)c) * dyr[c] * xr[c];
  dot = ftq_block_sum(dot, sh);
  const float rs = rstd[r];
  const float k = rs * rs * dot / (float)dim;
  for (int64_t c = threadIdx.x; c < dim; c += blockDim.x) {
    const float g = rs * (ftq_ld(w, wt, (size_t)c) * dyr[c] - xr[c] * k);
    dxr[c] = accumulate ? dxr[c] + g : g;
  }
}

// ---------------------------------------------------------------------------
// RoPE: one thread per (token, frequency), over every head of the row

__global__ void rope_kernel(float *x, int64_t n, int64_t row_stride, int64_t n_heads, int64_t head_dim,
                            const int32_t *pos, const float *inv_freq, int inverse) {
  const int64_t half = head_dim / 2, total = n * half;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total;
       idx += (int64_t)gridDim.x * blockDim.x) {
    const int64_t t = idx / half, i = idx - t * half;
    // as HF: angle = f32(position) * inv_freq in f32, then cos/sin
    const float ang = __fmul_rn((float)pos[t], inv_freq[i]);
    float s, c;
    sincosf(ang, &s, &c);
    float *row = x + t * row_stride;
    for (int64_t h = 0; h < n_heads; h++) {
      float *v = row + h * head_dim;
      const float x1 = v[i], x2 = v[i + half];
      if (!inverse) {  // q*cos + rotate_half(q)*sin
        v[i] = __fadd_rn(__fmul_rn(x1, c), __fmul_rn(-x2, s));
        v[i + half] = __fadd_rn(__fmul_rn(x2, c), __fmul_rn(x1, s));
      } else {  // the transpose of the rotation
        v[i] = __fadd_rn(__fmul_rn(x1, c), __fmul_rn(x2, s));
        v[i + half] = __fadd_rn(__fmul_rn(x2, c), -__fmul_rn(x1, s));
      }
    }
  }
}

// ---------------------------------------------------------------------------
// SwiGLU (the backward may write over its inputs: each element is read and
// written by one thread)

__device__ __forceinline__ float sigmoid(float g) { return 1.0f / (1.0f + expf(-g)); }

__global__ void swiglu_kernel(size_t n, const float *g, const float *u, float *out) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    const float gi = g[i];
    out[i] = __fmul_rn(__fmul_rn(gi, sigmoid(gi)), u[i]);
  }
}

__global__ void swiglu_backward_kernel(size_t n, const float *g, const float *u, const float *dout, float *dg,
                                       float *du) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    const float gi = g[i], ui = u[i], d = dout[i];
    const float s = sigmoid(gi);
    dg[i] = d * ui * (s * (1.0f + gi * (1.0f - s)));
    du[i] = d * (gi * s);
  }
}

bool is_float_type(ftq_dtype t) { return t == FTQ_DTYPE_F32 || t == FTQ_DTYPE_F16 || t == FTQ_DTYPE_BF16; }

}  // namespace

// ---------------------------------------------------------------------------
// the argument flag (shared by the operations that check device data)

ftq_status ftq_cuda_flag_reset(ftq_cuda *c) {
  FTQ_CUDA_TRY(cudaMemsetAsync(c->op_scratch, 0x7f, sizeof(int), c->stream));
  return FTQ_OK;
}

ftq_status ftq_cuda_flag_read(ftq_cuda *c, int64_t *index) {
  FTQ_CUDA_TRY(cudaMemcpyAsync(c->op_scratch_host, c->op_scratch, sizeof(int), cudaMemcpyDeviceToHost, c->stream));
  FTQ_CUDA_TRY(cudaStreamSynchronize(c->stream));
  const int v = *(const int *)c->op_scratch_host;
  *index = v == 0x7f7f7f7f ? -1 : v;
  return FTQ_OK;
}

// ---------------------------------------------------------------------------
// launchers

ftq_status ftq_cuda_embedding(void *be, const int32_t *ids, int64_t n, const void *table, ftq_dtype t, int64_t vocab,
                              int64_t dim, float *out) {
  ftq_cuda *c = (ftq_cuda *)be;
  if (n <= 0) return FTQ_OK;
  if (!is_float_type(t))
    return ftq_cuda_error(FTQ_ERR_UNSUPPORTED, "embedding: table dtype %s", ftq_dtype_name(t));
  FTQ_TRY_CU(ftq_cuda_enter(c));
  FTQ_PROFILE(c, FTQ_PROF_EMBEDDING);
  FTQ_TRY_CU(ftq_cuda_flag_reset(c));
  embedding_kernel<<<(unsigned)n, row_threads(dim), 0, c->stream>>>(ids, table, t, vocab, dim, out,
                                                                     (int *)c->op_scratch);
  FTQ_CUDA_LAUNCH_CHECK("embedding");
  // the ids live on the device: one small read-back tells a bad one
  int64_t bad;
  FTQ_TRY_CU(ftq_cuda_flag_read(c, &bad));
  if (bad >= 0) {
    int32_t id = 0;
    FTQ_CUDA_TRY(cudaMemcpy(&id, ids + bad, sizeof id, cudaMemcpyDeviceToHost));
    return ftq_cuda_error(FTQ_ERR_INVALID_ARGUMENT, "embedding: token id %d at position %lld is outside [0, %lld)",
                          (int)id, (long long)bad, (long long)vocab);
  }
  return FTQ_OK;
}

ftq_status ftq_cuda_rmsnorm(void *be, int64_t rows, int64_t dim, float eps, const float *x, const float *delta,
                            float *sum, const void *w, ftq_dtype wt, float *y, float *rstd) {
  ftq_cuda *c = (ftq_cuda *)be;
  if (delta && !sum) return ftq_cuda_error(FTQ_ERR_INVALID_ARGUMENT, "rmsnorm: a residual delta needs a sum buffer");
  if (!is_float_type(wt)) return ftq_cuda_error(FTQ_ERR_UNSUPPORTED, "rmsnorm: weight dtype %s", ftq_dtype_name(wt));
  if (rows <= 0 || dim <= 0) return FTQ_OK;
  FTQ_TRY_CU(ftq_cuda_enter(c));
  FTQ_PROFILE(c, FTQ_PROF_RMSNORM);
  rmsnorm_kernel<<<(unsigned)rows, row_threads(dim), 0, c->stream>>>(dim, eps, x, delta, sum, w, wt, y, rstd);
  FTQ_CUDA_LAUNCH_CHECK("rmsnorm");
  return FTQ_OK;
}

ftq_status ftq_cuda_rmsnorm_backward(void *be, int64_t rows, int64_t dim, const float *x, const void *w,
                                     ftq_dtype wt, const float *rstd, const float *dy, float *dx, int accumulate) {
  ftq_cuda *c = (ftq_cuda *)be;
  if (!is_float_type(wt))
    return ftq_cuda_error(FTQ_ERR_UNSUPPORTED, "rmsnorm backward: weight dtype %s", ftq_dtype_name(wt));
  if (rows <= 0 || dim <= 0) return FTQ_OK;
  FTQ_TRY_CU(ftq_cuda_enter(c));
  FTQ_PROFILE(c, FTQ_PROF_RMSNORM_BWD);
  rmsnorm_backward_kernel<<<(unsigned)rows, row_threads(dim), 0, c->stream>>>(dim, x, w, wt, rstd, dy, dx,
                                                                                accumulate);
  FTQ_CUDA_LAUNCH_CHECK("rmsnorm_backward");
  return FTQ_OK;
}

ftq_status ftq_cuda_rope(void *be, float *x, int64_t n, int64_t row_stride, int64_t n_heads, int64_t head_dim,
                         const int32_t *positions, const float *inv_freq, int inverse) {
  ftq_cuda *c = (ftq_cuda *)be;
  if (head_dim % 2) return ftq_cuda_error(FTQ_ERR_INVALID_ARGUMENT, "rope: head_dim %lld is odd", (long long)head_dim);
  const size_t total = (size_t)n * (size_t)(head_dim / 2);
  if (!total) return FTQ_OK;
  FTQ_TRY_CU(ftq_cuda_enter(c));
  FTQ_PROFILE(c, FTQ_PROF_ROPE);
  rope_kernel<<<ftq_grid_for(total, 256, c), 256, 0, c->stream>>>(x, n, row_stride, n_heads, head_dim, positions,
                                                                   inv_freq, inverse);
  FTQ_CUDA_LAUNCH_CHECK("rope");
  return FTQ_OK;
}

ftq_status ftq_cuda_swiglu(void *be, size_t n, const float *gate, const float *up, float *out) {
  ftq_cuda *c = (ftq_cuda *)be;
  if (!n) return FTQ_OK;
  FTQ_TRY_CU(ftq_cuda_enter(c));
  FTQ_PROFILE(c, FTQ_PROF_SWIGLU);
  swiglu_kernel<<<ftq_grid_for(n, 256, c), 256, 0, c->stream>>>(n, gate, up, out);
  FTQ_CUDA_LAUNCH_CHECK("swiglu");
  return FTQ_OK;
}

ftq_status ftq_cuda_swiglu_backward(void *be, size_t n, const float *gate, const float *up, const float *dout,
                                    float *dgate, float *dup) {
  ftq_cuda *c = (ftq_cuda *)be;
  if (!n) return FTQ_OK;
  FTQ_TRY_CU(ftq_cuda_enter(c));
  FTQ_PROFILE(c, FTQ_PROF_SWIGLU_BWD);
  swiglu_backward_kernel<<<ftq_grid_for(n, 256, c), 256, 0, c->stream>>>(n, gate, up, dout, dgate, dup);
  FTQ_CUDA_LAUNCH_CHECK("swiglu_backward");
  return FTQ_OK;
}

// LM head + cross-entropy on the GPU, chunked over the vocabulary, in one
// pass (the CPU reference's algorithm, src/cpu/ops_lm_head.c): per chunk
// one tensor-core GEMM gives an [n, chunk] f32 slice of logits; a row
// kernel keeps the online max m and sum s of exp(logit - m) and the
// target's logit, and for the backward writes exp(logit - m) in the compute
// dtype; dh is rescaled when a row's max grows and the chunk is added with
// one more GEMM. At the end dh = grad_scale * (dh / s - W[target]). Full
// logits exist only when asked for (inference). The loss sum is reduced on
// the device in a fixed order, so it is deterministic.
#include "ops.cuh"

namespace {

constexpr int kIgnore = -100;
constexpr int kThreads = 256;

__global__ void init_kernel(int64_t n, double *m, double *s, double *tl) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    m[i] = -INFINITY;
    s[i] = 0.0;
    tl[i] = 0.0;
  }
}

// One block per row: the chunk's statistics. With ph (backward), the
// chunk's exp(logit - m_new) in the half type and the row's rescale factor.
template <bool F16>
__global__ void stats_kernel(const float *logits, int64_t ldl, int64_t c0, int64_t cw, const int32_t *targets,
                             int64_t vocab, double *m, double *s, double *tl, double *scale, uint16_t *ph, int *flag) {
  __shared__ float sh[32];
  const int64_t r = blockIdx.x;
  const int32_t t = targets[r];
  uint16_t *prow = ph ? ph + r * cw : nullptr;
  const bool bad = t != kIgnore && (t < 0 || t >= vocab);
  if (bad && threadIdx.x == 0) atomicMin(flag, (int)r);
  if (t == kIgnore || bad) {
    if (prow)
      for (int64_t c = threadIdx.x; c < cw; c += blockDim.x) prow[c] = 0;
    if (scale && threadIdx.x == 0) scale[r] = 1.0;
    return;
  }
  const float *l = logits + r * ldl;
  if (threadIdx.x == 0 && t >= c0 && t < c0 + cw) tl[r] = l[t - c0];
  float mc = -INFINITY;
  for (int64_t c = threadIdx.x; c < cw; c += blockDim.x) mc = fmaxf(mc, l[c]);
  mc = ftq_block_max(mc, sh);
  const double m_old = m[r];
  double sc = 1.0, m_new = m_old;
  if ((double)mc > m_old) {
    sc = exp(m_old - (double)mc);  // 0 for the first chunk
    m_new = mc;
  }
  const float mf = (float)m_new;
  float acc = 0.0f;
  for (int64_t c = threadIdx.x; c < cw; c += blockDim.x) {
    const float e = expf(l[c] - mf);
    acc += e;
    if (prow) prow[c] = ftq_half_bits<F16>(e);
  }
  acc = ftq_block_sum(acc, sh);
  if (threadIdx.x == 0) {
    s[r] = s[r] * sc + (double)acc;
    m[r] = m_new;
    if (scale) scale[r] = sc;
  }
}

// dh rows scaled to the new running max before the chunk is added (one
// block per row).
__global__ void rescale_kernel(int64_t dim, const double *scale, float *dh) {
  const double f = scale[blockIdx.x];
  if (f == 1.0) return;
  float *d = dh + (int64_t)blockIdx.x * dim;
  for (int64_t c = threadIdx.x; c < dim; c += blockDim.x) d[c] *= (float)f;
}

// Per-token loss, and dh = grad_scale * (dh / s - W[target]) (zero rows
// where the target is ignored).
__global__ void finish_kernel(int64_t dim, int64_t vocab, const int32_t *targets, const double *m, const double *s,
                              const double *tl, float *loss_rows, float *token_loss, const void *w, ftq_dtype wt,
                              float grad_scale, float *dh) {
  const int64_t r = blockIdx.x;
  const int32_t t = targets[r];
  const bool counted = t != kIgnore && t >= 0 && t < vocab;
  if (threadIdx.x == 0) {
    const float li = counted ? (float)(m[r] + log(s[r]) - tl[r]) : 0.0f;
    loss_rows[r] = li;
    if (token_loss) token_loss[r] = li;
  }
  if (!dh) return;
  float *d = dh + r * dim;
  if (!counted) {
    for (int64_t c = threadIdx.x; c < dim; c += blockDim.x) d[c] = 0.0f;
    return;
  }
  const float inv = (float)(1.0 / s[r]);
  const size_t wrow = (size_t)t * (size_t)dim;
  for (int64_t c = threadIdx.x; c < dim; c += blockDim.x)
    d[c] = (d[c] * inv - ftq_ld(w, wt, wrow + (size_t)c)) * grad_scale;
}

// One block: the loss sum (row order fixed per thread, then a tree) and
// the count of counted rows, as two doubles.
__global__ void sum_kernel(int64_t n, const int32_t *targets, int64_t vocab, const float *loss_rows, double *out) {
  __shared__ double sh[2][32];
  double sum = 0.0, cnt = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const int32_t t = targets[i];
    if (t != kIgnore && t >= 0 && t < vocab) {
      sum += loss_rows[i];
      cnt += 1.0;
    }
  }
  for (int o = 16; o > 0; o >>= 1) {
    sum += __shfl_xor_sync(0xffffffffu, sum, o);
    cnt += __shfl_xor_sync(0xffffffffu, cnt, o);
  }
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  if (lane == 0) sh[0][w] = sum, sh[1][w] = cnt;
  __syncthreads();
  if (w == 0) {
    const int nw = blockDim.x >> 5;
    sum = lane < nw ? sh[0][lane] : 0.0;
    cnt = lane < nw ? sh[1][lane] : 0.0;
    for (int o = 16; o > 0; o >>= 1) {
      sum += __shfl_xor_sync(0xffffffffu, sum, o);
      cnt += __shfl_xor_sync(0xffffffffu, cnt, o);
    }
    if (lane == 0) out[0] = sum, out[1] = cnt;
  }
}

struct HeadWork {
  float *lc;      // [n, chunk] f32 logits of a chunk
  double *st;     // m, s, tl, scale: [4][n]
  void *wc;       // [chunk, dim] weight chunk in the half type
  void *hh;       // [n, dim] h in the half type
  uint16_t *ph;   // [n, chunk] exp(logit - m) in the half type
  float *loss;    // [n] per-row loss
};

template <bool F16>
ftq_status run(ftq_cuda *c, const ftq_lm_head_args *a, const HeadWork &hw, int64_t chunk) {
  const ftq_dtype ht = ftq_half_type(F16), f32 = FTQ_DTYPE_F32;
  const int64_t n = a->n, dim = a->dim, V = a->vocab;
  double *m = hw.st, *s = hw.st + n, *tl = hw.st + 2 * n, *scale = hw.st + 3 * n;
  int *flag = (int *)c->op_scratch;
  FTQ_TRY_CU(ftq_cuda_convert(c, hw.hh, ht, a->h, f32, (size_t)(n * dim)));
  if (a->targets) {
    FTQ_TRY_CU(ftq_cuda_flag_reset(c));
    init_kernel<<<ftq_grid_for((size_t)n, kThreads, c), kThreads, 0, c->stream>>>(n, m, s, tl);
    FTQ_CUDA_LAUNCH_CHECK("lm_head init");
  }
  if (a->dh) FTQ_CUDA_TRY(cudaMemsetAsync(a->dh, 0, sizeof(float) * (size_t)(n * dim), c->stream));
  for (int64_t c0 = 0; c0 < V; c0 += chunk) {
    const int64_t cw = V - c0 < chunk ? V - c0 : chunk;
    const void *w = (const char *)a->w + (size_t)c0 * (size_t)dim * ftq_dtype_size(a->w_type);
    if (a->w_type != ht) {  // the chunk's rows in the half type
      FTQ_TRY_CU(ftq_cuda_convert(c, hw.wc, ht, w, a->w_type, (size_t)(cw * dim)));
      w = hw.wc;
    }
    float *lg = a->logits ? a->logits + c0 : hw.lc;
    const int64_t ldl = a->logits ? V : cw;
    FTQ_TRY_CU(ftq_cuda_mm(c, 0, 1, n, cw, dim, 1.0f, hw.hh, dim, w, dim, 0.0f, lg, ldl, ht, f32));
    if (!a->targets) continue;
    stats_kernel<F16><<<(unsigned)n, kThreads, 0, c->stream>>>(lg, ldl, c0, cw, a->targets, V, m, s, tl,
                                                               a->dh ? scale : nullptr, a->dh ? hw.ph : nullptr, flag);
    FTQ_CUDA_LAUNCH_CHECK("lm_head stats");
    if (a->dh) { /* dh = dh * rescale + exp(logits - m) W_chunk */
      rescale_kernel<<<(unsigned)n, kThreads, 0, c->stream>>>(dim, scale, a->dh);
      FTQ_CUDA_LAUNCH_CHECK("lm_head rescale");
      FTQ_TRY_CU(ftq_cuda_mm(c, 0, 0, n, dim, cw, 1.0f, hw.ph, cw, w, dim, 1.0f, a->dh, dim, ht, f32));
    }
  }
  if (!a->targets) return FTQ_OK;
  finish_kernel<<<(unsigned)n, kThreads, 0, c->stream>>>(dim, V, a->targets, m, s, tl, hw.loss, a->token_loss, a->w,
                                                         a->w_type, a->grad_scale, a->dh);
  FTQ_CUDA_LAUNCH_CHECK("lm_head finish");
  double *sums = (double *)((char *)c->op_scratch + 8);
  sum_kernel<<<1, 1024, 0, c->stream>>>(n, a->targets, V, hw.loss, sums);
  FTQ_CUDA_LAUNCH_CHECK("lm_head loss sum");
  FTQ_CUDA_TRY(cudaMemcpyAsync(c->op_scratch_host, c->op_scratch, 24, cudaMemcpyDeviceToHost, c->stream));
  FTQ_CUDA_TRY(cudaStreamSynchronize(c->stream));
  const int bad = *(const int *)c->op_scratch_host;
  if (bad != 0x7f7f7f7f) {
    int32_t t = 0;
    FTQ_CUDA_TRY(cudaMemcpy(&t, a->targets + bad, sizeof t, cudaMemcpyDeviceToHost));
    return ftq_cuda_error(FTQ_ERR_INVALID_ARGUMENT, "cross-entropy: label %d at position %d is outside [0, %lld)",
                          (int)t, bad, (long long)V);
  }
  const double *hs2 = (const double *)((const char *)c->op_scratch_host + 8);
  if (a->loss_sum) *a->loss_sum = hs2[0];
  if (a->count) *a->count = (int64_t)hs2[1];
  return FTQ_OK;
}

}  // namespace

ftq_status ftq_cuda_lm_head(void *be, const ftq_lm_head_args *a) {
  ftq_cuda *c = (ftq_cuda *)be;
  const int64_t n = a->n, dim = a->dim, V = a->vocab;
  const int64_t chunk = a->vocab_chunk > 0 ? (a->vocab_chunk < V ? a->vocab_chunk : V) : V;
  if (!a->targets && !a->logits)
    return ftq_cuda_error(FTQ_ERR_INVALID_ARGUMENT, "lm_head: neither targets nor logits requested");
  if (a->dh && (!a->targets || a->logits))
    return ftq_cuda_error(FTQ_ERR_INVALID_ARGUMENT, "lm_head: the backward needs targets and no full logits");
  if (a->w_type != FTQ_DTYPE_F32 && a->w_type != FTQ_DTYPE_F16 && a->w_type != FTQ_DTYPE_BF16)
    return ftq_cuda_error(FTQ_ERR_UNSUPPORTED, "lm_head: weight dtype %s", ftq_dtype_name(a->w_type));
  if (a->work_bytes < ftq_lm_head_work_bytes(n, dim, chunk, a->w_type))
    return ftq_cuda_error(FTQ_ERR_INTERNAL, "lm_head: scratch of %zu bytes given, %zu needed", a->work_bytes,
                          ftq_lm_head_work_bytes(n, dim, chunk, a->w_type));
  if (n <= 0) {
    if (a->loss_sum) *a->loss_sum = 0.0;
    if (a->count) *a->count = 0;
    return FTQ_OK;
  }
  FTQ_TRY_CU(ftq_cuda_enter(c));
  FTQ_PROFILE(c, FTQ_PROF_LM_HEAD);
  const size_t nn = (size_t)n, cc = (size_t)chunk, dd = (size_t)dim;
  FtqCarve cv(a->work, a->work_bytes);
  HeadWork hw;
  hw.lc = cv.take<float>(nn * cc);
  hw.st = cv.take<double>(4 * nn);
  hw.wc = cv.take<uint16_t>(cc * dd);
  hw.hh = cv.take<uint16_t>(nn * dd);
  hw.ph = cv.take<uint16_t>(nn * cc);
  hw.loss = cv.take<float>(nn);
  FTQ_TRY_CU(cv.check("lm_head"));
  return a->fp16 ? run<true>(c, a, hw, chunk) : run<false>(c, a, hw, chunk);
}

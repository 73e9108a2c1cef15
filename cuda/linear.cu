// Quantized linear with LoRA on the GPU, forward and backward.
//
// The frozen base weight is dequantized (NF4/FP4 +- double quant, INT8) by
// the quantizer's kernels straight into the compute dtype (bf16, or fp16),
// or used in place when it is stored unquantized in that dtype; the
// activation is rounded to the same dtype and the product runs on the
// tensor cores through cuBLASLt with an f32 result. The LoRA path stays in
// f32 (A, B, their gradients, t = dropout(x) A^T), as PEFT computes it with
// fp32 adapter weights; its products are thin (rank r) cuBLASLt GEMMs.
// Dropout masks come from the same Philox definition as the CPU backend
// (src/core/rng.h), so both backends drop the same elements.
#include "core/rng.h"
#include "ops.cuh"
#include "quant/qtensor.h"

namespace {

__device__ __forceinline__ uint32_t pick4(const uint32_t w[4], uint64_t i) {
  return i == 0 ? w[0] : i == 1 ? w[1] : i == 2 ? w[2] : w[3];
}

// One thread per mask byte (8 consecutive inputs of a row). Keeps element
// e = row*in + col iff ftq_rng_uniform(seed, stream, e) >= p, or as the keep
// bits say when bits_in is given; writes the bits to bits_out when
// generating. out[e] = kept ? x[e] / (1 - p) : 0, or out[e] += that (add).
__global__ void dropout_kernel(const float *x, float *out, const uint8_t *bits_in, uint8_t *bits_out, int64_t n,
                               int64_t in, float p, float keep_scale, uint64_t seed, uint64_t stream, int add) {
  const int64_t mrow = (in + 7) / 8, total = n * mrow;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total;
       idx += (int64_t)gridDim.x * blockDim.x) {
    const int64_t r = idx / mrow, cb = idx - r * mrow, c0 = cb * 8;
    uint32_t byte = bits_in ? bits_in[idx] : 0u;
    uint64_t have = ~0ull;
    uint32_t w[4] = {0, 0, 0, 0};
    for (int k = 0; k < 8 && c0 + k < in; k++) {
      const uint64_t e = (uint64_t)(r * in + c0 + k);
      int keep;
      if (bits_in) {
        keep = (byte >> k) & 1u;
      } else {
        if ((e >> 2) != have) {
          have = e >> 2;
          ftq_rng_block(seed, stream, have, w);
        }
        keep = ftq_u32_to_unit(pick4(w, e & 3)) >= p;
        byte |= (uint32_t)keep << k;
      }
      const float o = keep ? __fmul_rn(x[e], keep_scale) : 0.0f;
      out[e] = add ? __fadd_rn(out[e], o) : o;
    }
    if (bits_out && !bits_in) bits_out[idx] = (uint8_t)byte;
  }
}

__global__ void bias_kernel(float *y, int64_t n, int64_t out, const void *bias, ftq_dtype t) {
  const int64_t total = n * out;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x)
    y[i] = __fadd_rn(y[i], ftq_ld(bias, t, (size_t)(i % out)));
}

// The scratch: dropped input and dy B in f32 (the CPU's order), the weight
// and the activation in the compute dtype.
struct LinearWork {
  float *xd, *g;
  void *wh, *xh;
};

ftq_status carve(const ftq_linear_args *a, LinearWork *lw) {
  const ftq_qtensor *q = a->w;
  if (!q || q->ndim != 2 || q->shape[0] != a->out || q->shape[1] != a->in)
    return ftq_cuda_error(FTQ_ERR_SHAPE, "linear: weight is not [%lld, %lld]", (long long)a->out, (long long)a->in);
  if (a->r > 0 && (!a->lora_a || !a->lora_b || !a->t))
    return ftq_cuda_error(FTQ_ERR_INVALID_ARGUMENT, "linear: rank %lld needs lora_a, lora_b and t", (long long)a->r);
  const size_t n = (size_t)a->n, in = (size_t)a->in, out = (size_t)a->out, r = (size_t)(a->r > 0 ? a->r : 0);
  FtqCarve cv(a->work, a->work_bytes);
  lw->xd = cv.take<float>(n * in);
  lw->g = cv.take<float>(n * r);
  lw->wh = cv.take<uint16_t>(out * in);
  lw->xh = cv.take<uint16_t>(n * (in > out ? in : out));
  return cv.check("linear");
}

// The base weight in the compute dtype: in place when stored so, else
// dequantized (or converted) into the scratch by libftq's quantizer.
ftq_status weight_half(ftq_cuda *c, const ftq_linear_args *a, ftq_dtype ht, const LinearWork &lw, const void **w) {
  const ftq_qtensor *q = a->w;
  if (q->scheme == FTQ_QSCHEME_NONE && q->plain.dtype == ht) {
    *w = q->plain.data;
    return FTQ_OK;
  }
  FTQ_PROFILE(c, FTQ_PROF_WEIGHT);
  FTQ_TRY_CU(g_ftq_host->dequantize(q, ht, lw.wh));
  *w = lw.wh;
  return FTQ_OK;
}

ftq_status dropout(ftq_cuda *c, const ftq_linear_args *a, const float *x, float *out, const uint8_t *bits_in,
                   uint8_t *bits_out, int add) {
  const size_t bytes = ftq_dropout_mask_bytes(a->n, a->in);
  if (!bytes) return FTQ_OK;
  FTQ_PROFILE(c, FTQ_PROF_DROPOUT);
  dropout_kernel<<<ftq_grid_for(bytes, 256, c), 256, 0, c->stream>>>(
      x, out, bits_in, bits_out, a->n, a->in, a->dropout, 1.0f / (1.0f - a->dropout), a->seed, a->stream, add);
  FTQ_CUDA_LAUNCH_CHECK("dropout");
  return FTQ_OK;
}

// Both directions start so: the arguments checked and the scratch carved,
// the device made current; *run is false when there is no row to process.
ftq_status begin(ftq_cuda *c, const ftq_linear_args *a, LinearWork *lw, bool *run) {
  *run = false;
  FTQ_TRY_CU(carve(a, lw));
  if (a->n <= 0) return FTQ_OK;
  *run = true;
  return ftq_cuda_enter(c);
}

}  // namespace

ftq_status ftq_cuda_linear(void *be, const ftq_linear_args *a) {
  ftq_cuda *c = (ftq_cuda *)be;
  LinearWork lw;
  bool run;
  FTQ_TRY_CU(begin(c, a, &lw, &run));
  if (!run) return FTQ_OK;
  const ftq_dtype ht = ftq_half_type(a->fp16);
  const int64_t n = a->n, in = a->in, out = a->out, r = a->r;
  FTQ_PROFILE(c, FTQ_PROF_LINEAR);
  if (a->y) { /* y = x W^T (+ bias) */
    const void *w;
    FTQ_TRY_CU(weight_half(c, a, ht, lw, &w));
    FTQ_PROFILE(c, FTQ_PROF_BASE_GEMM);
    FTQ_TRY_CU(ftq_cuda_convert(c, lw.xh, ht, a->x, FTQ_DTYPE_F32, (size_t)(n * in)));
    FTQ_TRY_CU(ftq_cuda_mm(c, 0, 1, n, out, in, 1.0f, lw.xh, in, w, in, 0.0f, a->y, out, ht, FTQ_DTYPE_F32));
    if (a->bias) {
      bias_kernel<<<ftq_grid_for((size_t)(n * out), 256, c), 256, 0, c->stream>>>(a->y, n, out, a->bias,
                                                                                   a->bias_type);
      FTQ_CUDA_LAUNCH_CHECK("bias");
    }
  }
  if (r <= 0) return FTQ_OK;
  FTQ_PROFILE(c, FTQ_PROF_LORA);
  const float *xd = a->x;
  if (a->dropout > 0.0f) {
    FTQ_TRY_CU(dropout(c, a, a->x, lw.xd, NULL, a->mask, 0));
    xd = lw.xd;
  }
  /* t = dropout(x) A^T; y += scaling * t B^T */
  FTQ_TRY_CU(ftq_cuda_mm(c, 0, 1, n, r, in, 1.0f, xd, in, a->lora_a, in, 0.0f, a->t, r, FTQ_DTYPE_F32, FTQ_DTYPE_F32));
  if (!a->y) return FTQ_OK;
  return ftq_cuda_mm(c, 0, 1, n, out, r, a->scaling, a->t, r, a->lora_b, r, 1.0f, a->y, out, FTQ_DTYPE_F32,
                     FTQ_DTYPE_F32);
}

ftq_status ftq_cuda_linear_backward(void *be, const ftq_linear_args *a) {
  ftq_cuda *c = (ftq_cuda *)be;
  LinearWork lw;
  bool run;
  FTQ_TRY_CU(begin(c, a, &lw, &run));
  if (!run) return FTQ_OK;
  FTQ_PROFILE(c, FTQ_PROF_LINEAR_BWD);
  const ftq_dtype ht = ftq_half_type(a->fp16), f32 = FTQ_DTYPE_F32;
  const int64_t n = a->n, in = a->in, out = a->out, r = a->r;
  if (a->dx) { /* dx = dy W through the frozen base */
    const void *w;
    FTQ_TRY_CU(weight_half(c, a, ht, lw, &w));
    FTQ_PROFILE(c, FTQ_PROF_BASE_GEMM);
    FTQ_TRY_CU(ftq_cuda_convert(c, lw.xh, ht, a->dy, f32, (size_t)(n * out)));
    FTQ_TRY_CU(ftq_cuda_mm(c, 0, 0, n, in, out, 1.0f, lw.xh, out, w, in, a->accumulate_dx ? 1.0f : 0.0f, a->dx, in,
                           ht, f32));
  }
  if (r <= 0) return FTQ_OK;
  FTQ_PROFILE(c, FTQ_PROF_LORA);
  /* g = dy B [n, r] */
  FTQ_TRY_CU(ftq_cuda_mm(c, 0, 0, n, r, out, 1.0f, a->dy, out, a->lora_b, r, 0.0f, lw.g, r, f32, f32));
  if (a->grad_b) /* dB += scaling dy^T t */
    FTQ_TRY_CU(ftq_cuda_mm(c, 1, 0, out, r, n, a->scaling, a->dy, out, a->t, r, 1.0f, a->grad_b, r, f32, f32));
  const int drop = a->dropout > 0.0f;
  if (a->grad_a) { /* dA += scaling g^T dropout(x) */
    const float *xd = a->x;
    if (drop) {
      FTQ_TRY_CU(dropout(c, a, a->x, lw.xd, a->mask, NULL, 0));
      xd = lw.xd;
    }
    FTQ_TRY_CU(ftq_cuda_mm(c, 1, 0, r, in, n, a->scaling, lw.g, r, xd, in, 1.0f, a->grad_a, in, f32, f32));
  }
  if (!a->dx) return FTQ_OK;
  if (!drop) /* dx += scaling g A */
    return ftq_cuda_mm(c, 0, 0, n, in, r, a->scaling, lw.g, r, a->lora_a, in, 1.0f, a->dx, in, f32, f32);
  /* through the dropout: dx += mask * keep_scale * (scaling g A) */
  FTQ_TRY_CU(ftq_cuda_mm(c, 0, 0, n, in, r, a->scaling, lw.g, r, a->lora_a, in, 0.0f, lw.xd, in, f32, f32));
  return dropout(c, a, lw.xd, a->dx, a->mask, NULL, 1);
}

/* CPU backend: quantized linear with LoRA, forward and backward.
 * The base weight is dequantized to f32 into the scratch (an f32 NONE weight
 * is used in place), multiplied with the BLAS GEMM, and the low-rank update
 * is added with two thin GEMMs. Dropout masks come from the Philox stream
 * named in the arguments, so recomputation regenerates them exactly. */
#include <string.h>

#include "core/error.h"
#include "core/rng.h"
#include "cpu/cpu.h"
#include "quant/qtensor.h"

/* The weight is used in place only when it is an unquantized f32 tensor. */
static int needs_dequant(const ftq_qtensor *q) {
  return !(q->scheme == FTQ_QSCHEME_NONE && q->plain.dtype == FTQ_DTYPE_F32);
}

/* Carves the scratch into the dropped input, dy B and the dequantized weight. */
typedef struct linear_work {
  float *xd, *g, *w;
} linear_work;

static ftq_status carve(const ftq_linear_args *a, linear_work *lw) {
  const ftq_qtensor *q = a->w;
  if (!q || q->ndim != 2 || q->shape[0] != a->out || q->shape[1] != a->in)
    return ftq_error(FTQ_ERR_SHAPE, "linear: weight is not [%lld, %lld]", (long long)a->out, (long long)a->in);
  size_t need = ftq_linear_work_bytes(a->n, a->in, a->out, a->r, needs_dequant(q));
  if (!a->work || a->work_bytes < need)
    return ftq_error(FTQ_ERR_INTERNAL, "linear: scratch of %zu bytes given, %zu needed", a->work_bytes, need);
  char *p = (char *)(((uintptr_t)a->work + 255u) & ~(uintptr_t)255u);
  lw->xd = (float *)p;
  p += ((size_t)a->n * (size_t)a->in * 4u + 255u) & ~(size_t)255u;
  lw->g = (float *)p;
  p += ((size_t)a->n * (size_t)a->r * 4u + 255u) & ~(size_t)255u;
  lw->w = (float *)p;
  return FTQ_OK;
}

/* The f32 weight: in place for an f32 NONE tensor, else dequantized. */
static ftq_status weight_f32(const ftq_linear_args *a, linear_work *lw, const float **w) {
  const ftq_qtensor *q = a->w;
  if (!needs_dequant(q)) {
    *w = q->plain.data;
    return FTQ_OK;
  }
  FTQ_TRY(ftq_qtensor_dequantize(q, FTQ_DTYPE_F32, lw->w));
  *w = lw->w;
  return FTQ_OK;
}

/* ---------------------------------------------------------------------- */
/* dropout                                                                  */

/* Dropout of x into out (in_place: out *= mask * keep_scale instead). The
 * mask comes from the Philox stream, writing the keep bits when `mask` is
 * set and `from_bits` is not, or from the keep bits. */
typedef struct drop_job {
  const float *x;
  float *out;
  uint8_t *mask;
  int64_t in;
  float p, keep_scale;
  uint64_t seed, stream;
  int from_bits, in_place;
} drop_job;

static void drop_rows(void *arg, size_t r0, size_t r1, int worker) {
  (void)worker;
  const drop_job *j = arg;
  const size_t in = (size_t)j->in, mrow = (in + 7u) / 8u;
  uint32_t w[4];
  uint64_t have = UINT64_MAX; /* Philox block in w: one per 4 elements */
  for (size_t r = r0; r < r1; r++) {
    uint8_t *m = j->mask ? j->mask + r * mrow : NULL;
    for (size_t c = 0; c < in; c++) {
      const size_t e = r * in + c;
      int keep;
      if (!j->from_bits) {
        if ((e >> 2) != have) {
          have = e >> 2;
          ftq_rng_block(j->seed, j->stream, have, w);
        }
        keep = ftq_u32_to_unit(w[e & 3]) >= j->p; /* = ftq_rng_uniform(seed, stream, e) >= p */
        if (m) {
          if (!(c & 7)) m[c >> 3] = 0;
          m[c >> 3] |= (uint8_t)(keep << (c & 7));
        }
      } else {
        keep = (m[c >> 3] >> (c & 7)) & 1;
      }
      const float v = j->in_place ? j->out[e] : j->x[e];
      j->out[e] = keep ? v * j->keep_scale : 0.0f;
    }
  }
}

static void apply_dropout(ftq_cpu *cpu, const ftq_linear_args *a, const float *x, float *out, int from_bits,
                          int in_place) {
  drop_job j = {x, out, a->mask, a->in, a->dropout, 1.0f / (1.0f - a->dropout), a->seed, a->stream, from_bits,
                in_place};
  ftq_parallel_for(cpu->pool, (size_t)a->n, 1 + (size_t)(8192 / (a->in > 0 ? a->in : 1)), drop_rows, &j);
}

/* ---------------------------------------------------------------------- */

typedef struct bias_job {
  float *y;
  const void *bias;
  ftq_dtype type;
  int64_t out;
} bias_job;

static void bias_rows(void *arg, size_t r0, size_t r1, int worker) {
  (void)worker;
  const bias_job *j = arg;
  for (size_t r = r0; r < r1; r++) {
    float *y = j->y + r * (size_t)j->out;
    for (int64_t c = 0; c < j->out; c++) y[c] += ftq_cpu_load(j->bias, j->type, (size_t)c);
  }
}

ftq_status ftq_cpu_linear(void *be, const ftq_linear_args *a) {
  ftq_cpu *cpu = be;
  linear_work lw;
  FTQ_TRY(carve(a, &lw));
  if (a->y) {
    const float *w;
    FTQ_TRY(weight_f32(a, &lw, &w));
    FTQ_TRY(ftq_cpu_mm(be, 0, 1, a->n, a->out, a->in, 1.0f, a->x, a->in, w, a->in, 0.0f, a->y, a->out));
  }
  if (a->y && a->bias) {
    bias_job j = {a->y, a->bias, a->bias_type, a->out};
    ftq_parallel_for(cpu->pool, (size_t)a->n, 1 + (size_t)(8192 / (a->out > 0 ? a->out : 1)), bias_rows, &j);
  }
  if (a->r <= 0) return FTQ_OK;
  const float *xd = a->x;
  if (a->dropout > 0.0f) {
    apply_dropout(cpu, a, a->x, lw.xd, 0, 0);
    xd = lw.xd;
  }
  /* t = dropout(x) A^T; y += scaling * t B^T */
  FTQ_TRY(ftq_cpu_mm(be, 0, 1, a->n, a->r, a->in, 1.0f, xd, a->in, a->lora_a, a->in, 0.0f, a->t, a->r));
  if (!a->y) return FTQ_OK;
  return ftq_cpu_mm(be, 0, 1, a->n, a->out, a->r, a->scaling, a->t, a->r, a->lora_b, a->r, 1.0f, a->y, a->out);
}

ftq_status ftq_cpu_linear_backward(void *be, const ftq_linear_args *a) {
  ftq_cpu *cpu = be;
  linear_work lw;
  FTQ_TRY(carve(a, &lw));
  if (a->dx) {
    const float *w;
    FTQ_TRY(weight_f32(a, &lw, &w));
    /* dx = dy W through the frozen base */
    FTQ_TRY(ftq_cpu_mm(be, 0, 0, a->n, a->in, a->out, 1.0f, a->dy, a->out, w, a->in, a->accumulate_dx ? 1.0f : 0.0f, a->dx,
               a->in));
  }
  if (a->r <= 0) return FTQ_OK;
  /* g = dy B [n, r] */
  FTQ_TRY(ftq_cpu_mm(be, 0, 0, a->n, a->r, a->out, 1.0f, a->dy, a->out, a->lora_b, a->r, 0.0f, lw.g, a->r));
  if (a->grad_b) /* dB += scaling dy^T t */
    FTQ_TRY(ftq_cpu_mm(be, 1, 0, a->out, a->r, a->n, a->scaling, a->dy, a->out, a->t, a->r, 1.0f, a->grad_b, a->r));
  if (a->grad_a) { /* dA += scaling g^T dropout(x) */
    const float *xd = a->x;
    if (a->dropout > 0.0f) {
      apply_dropout(cpu, a, a->x, lw.xd, a->mask != NULL, 0);
      xd = lw.xd;
    }
    FTQ_TRY(ftq_cpu_mm(be, 1, 0, a->r, a->in, a->n, a->scaling, lw.g, a->r, xd, a->in, 1.0f, a->grad_a, a->in));
  }
  if (!a->dx) return FTQ_OK;
  if (a->dropout <= 0.0f) /* dx += scaling g A */
    return ftq_cpu_mm(be, 0, 0, a->n, a->in, a->r, a->scaling, lw.g, a->r, a->lora_a, a->in, 1.0f, a->dx, a->in);
  /* through the dropout: dx += mask * keep_scale * (scaling g A) */
  FTQ_TRY(ftq_cpu_mm(be, 0, 0, a->n, a->in, a->r, a->scaling, lw.g, a->r, a->lora_a, a->in, 0.0f, lw.xd, a->in));
  apply_dropout(cpu, a, NULL, lw.xd, a->mask != NULL, 1);
  for (size_t e = 0, ne = (size_t)a->n * (size_t)a->in; e < ne; e++) a->dx[e] += lw.xd[e];
  return FTQ_OK;
}

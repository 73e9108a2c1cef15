/* CPU backend: the row-wise model operations (embedding lookup, RMSNorm with
 * its residual add, SwiGLU), forward and backward, in f32 with double
 * accumulation of row sums. Rows are split over the context's threads. */
#include <math.h>
#include <string.h>

#include "core/error.h"
#include "cpu/cpu.h"

/* Rows per parallel chunk so that a chunk holds at least ~16K elements. */
static size_t row_chunk(int64_t dim) { return 1 + (size_t)(16384 / (dim > 0 ? dim : 1)); }

/* ---------------------------------------------------------------------- */
/* embedding                                                                */

typedef struct embed_job {
  const int32_t *ids;
  const void *table;
  ftq_dtype type;
  int64_t dim;
  float *out;
} embed_job;

static void embed_rows(void *arg, size_t r0, size_t r1, int worker) {
  (void)worker;
  const embed_job *j = arg;
  for (size_t i = r0; i < r1; i++) {
    size_t base = (size_t)j->ids[i] * (size_t)j->dim;
    float *o = j->out + i * (size_t)j->dim;
    if (j->type == FTQ_DTYPE_F32)
      memcpy(o, (const float *)j->table + base, sizeof(float) * (size_t)j->dim);
    else
      for (int64_t c = 0; c < j->dim; c++) o[c] = ftq_cpu_load(j->table, j->type, base + (size_t)c);
  }
}

ftq_status ftq_cpu_embedding(void *be, const int32_t *ids, int64_t n, const void *table, ftq_dtype type,
                             int64_t vocab, int64_t dim, float *out) {
  ftq_cpu *cpu = be;
  for (int64_t i = 0; i < n; i++)
    if (ids[i] < 0 || ids[i] >= vocab)
      return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "embedding: token id %d at position %lld is outside [0, %lld)",
                       (int)ids[i], (long long)i, (long long)vocab);
  embed_job j = {ids, table, type, dim, out};
  ftq_parallel_for(cpu->pool, (size_t)n, row_chunk(dim), embed_rows, &j);
  return FTQ_OK;
}

/* ---------------------------------------------------------------------- */
/* RMSNorm + residual                                                       */

typedef struct norm_job {
  int64_t dim;
  float eps;
  const float *x;
  float *sum;
  const float *delta;
  const void *w;
  ftq_dtype wt;
  float *y;
  float *rstd;
  const float *rstd_in;
  const float *dy;
  float *dx;
  int accumulate;
} norm_job;

static void norm_rows(void *arg, size_t r0, size_t r1, int worker) {
  (void)worker;
  const norm_job *j = arg;
  const size_t d = (size_t)j->dim;
  for (size_t r = r0; r < r1; r++) {
    const float *x = j->x + r * d;
    if (j->delta) {
      const float *dl = j->delta + r * d;
      float *s = j->sum + r * d;
      for (size_t c = 0; c < d; c++) s[c] = x[c] + dl[c];
      x = s;
    }
    double ss = 0.0;
    for (size_t c = 0; c < d; c++) ss += (double)x[c] * (double)x[c];
    /* as PyTorch: variance and rsqrt in f32, then (x * rstd) * w */
    float var = (float)(ss / (double)d);
    float rs = 1.0f / sqrtf(var + j->eps);
    if (j->rstd) j->rstd[r] = rs;
    float *y = j->y + r * d;
    if (j->wt == FTQ_DTYPE_F32) {
      const float *w = j->w;
      for (size_t c = 0; c < d; c++) y[c] = w[c] * (x[c] * rs);
    } else {
      for (size_t c = 0; c < d; c++) y[c] = ftq_cpu_load(j->w, j->wt, c) * (x[c] * rs);
    }
  }
}

ftq_status ftq_cpu_rmsnorm(void *be, int64_t rows, int64_t dim, float eps, const float *x, const float *delta,
                           float *sum, const void *w, ftq_dtype wt, float *y, float *rstd) {
  ftq_cpu *cpu = be;
  if (delta && !sum) return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "rmsnorm: a residual delta needs a sum buffer");
  norm_job j = {.dim = dim, .eps = eps, .x = x, .sum = sum, .delta = delta, .w = w, .wt = wt, .y = y, .rstd = rstd};
  ftq_parallel_for(cpu->pool, (size_t)rows, row_chunk(dim), norm_rows, &j);
  return FTQ_OK;
}

/* y_c = w_c x_c r with r = (mean(x^2) + eps)^-1/2, so
 * dx_k = r (w_k dy_k - x_k r^2 sum_c(w_c dy_c x_c) / dim). */
static void norm_back_rows(void *arg, size_t r0, size_t r1, int worker) {
  (void)worker;
  const norm_job *j = arg;
  const size_t d = (size_t)j->dim;
  for (size_t r = r0; r < r1; r++) {
    const float *x = j->x + r * d, *dy = j->dy + r * d;
    float *dx = j->dx + r * d;
    const double rs = j->rstd_in[r];
    double dot = 0.0;
    for (size_t c = 0; c < d; c++) dot += (double)ftq_cpu_load(j->w, j->wt, c) * dy[c] * x[c];
    const double k = rs * rs * dot / (double)d;
    for (size_t c = 0; c < d; c++) {
      float g = (float)(rs * ((double)ftq_cpu_load(j->w, j->wt, c) * dy[c] - x[c] * k));
      dx[c] = j->accumulate ? dx[c] + g : g;
    }
  }
}

ftq_status ftq_cpu_rmsnorm_backward(void *be, int64_t rows, int64_t dim, const float *x, const void *w, ftq_dtype wt,
                                    const float *rstd, const float *dy, float *dx, int accumulate) {
  ftq_cpu *cpu = be;
  norm_job j = {.dim = dim, .x = x, .w = w, .wt = wt, .rstd_in = rstd, .dy = dy, .dx = dx, .accumulate = accumulate};
  ftq_parallel_for(cpu->pool, (size_t)rows, row_chunk(dim), norm_back_rows, &j);
  return FTQ_OK;
}

/* ---------------------------------------------------------------------- */
/* SwiGLU                                                                   */

typedef struct swiglu_job {
  const float *g, *u, *dout;
  float *out, *dg, *du;
} swiglu_job;

static void swiglu_range(void *arg, size_t i0, size_t i1, int worker) {
  (void)worker;
  const swiglu_job *j = arg;
  for (size_t i = i0; i < i1; i++) {
    float g = j->g[i];
    float s = 1.0f / (1.0f + expf(-g));
    j->out[i] = (g * s) * j->u[i];
  }
}

ftq_status ftq_cpu_swiglu(void *be, size_t n, const float *gate, const float *up, float *out) {
  ftq_cpu *cpu = be;
  swiglu_job j = {.g = gate, .u = up, .out = out};
  ftq_parallel_for(cpu->pool, n, 16384, swiglu_range, &j);
  return FTQ_OK;
}

/* d silu(g)/dg = s (1 + g (1 - s)) with s = sigmoid(g). */
static void swiglu_back_range(void *arg, size_t i0, size_t i1, int worker) {
  (void)worker;
  const swiglu_job *j = arg;
  for (size_t i = i0; i < i1; i++) {
    float g = j->g[i], u = j->u[i], d = j->dout[i];
    float s = 1.0f / (1.0f + expf(-g));
    j->dg[i] = d * u * (s * (1.0f + g * (1.0f - s)));
    j->du[i] = d * (g * s);
  }
}

ftq_status ftq_cpu_swiglu_backward(void *be, size_t n, const float *gate, const float *up, const float *dout,
                                   float *dgate, float *dup) {
  ftq_cpu *cpu = be;
  swiglu_job j = {.g = gate, .u = up, .dout = dout, .dg = dgate, .du = dup};
  ftq_parallel_for(cpu->pool, n, 16384, swiglu_back_range, &j);
  return FTQ_OK;
}

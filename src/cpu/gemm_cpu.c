/* CPU GEMM: a system BLAS when built with FTQ_BLAS, else plain C split over
 * rows of C. Both accumulate in fp32 and take only f32 operands. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "cpu/cpu.h"

#ifdef FTQ_HAVE_BLAS
#include <cblas.h>
#endif

typedef struct gemm_job {
  const ftq_gemm_args *g;
  const float *a, *b;
  float *c;
  float *scratch; /* per worker: k floats (row of op(A)) + n floats (row of C) */
} gemm_job;

/* Rows [r0, r1) of C for one batch item. */
static void gemm_rows(void *arg, size_t r0, size_t r1, int worker) {
  const gemm_job *j = arg;
  const ftq_gemm_args *g = j->g;
  const int64_t n = g->n, k = g->k;
  float *arow = j->scratch + (size_t)worker * (size_t)(k + n);
  float *acc = arow + k;
  for (size_t i = r0; i < r1; i++) {
    for (int64_t p = 0; p < k; p++)
      arow[p] = g->trans_a ? j->a[(size_t)p * (size_t)g->lda + i] : j->a[i * (size_t)g->lda + (size_t)p];
    if (!g->trans_b) {
      memset(acc, 0, sizeof(float) * (size_t)n);
      for (int64_t p = 0; p < k; p++) {
        const float av = arow[p];
        const float *brow = j->b + (size_t)p * (size_t)g->ldb;
        for (int64_t c = 0; c < n; c++) acc[c] += av * brow[c];
      }
    } else {
      for (int64_t c = 0; c < n; c++) {
        const float *brow = j->b + (size_t)c * (size_t)g->ldb;
        float s = 0.0f;
        for (int64_t p = 0; p < k; p++) s += arow[p] * brow[p];
        acc[c] = s;
      }
    }
    float *crow = j->c + i * (size_t)g->ldc;
    if (g->beta == 0.0f)
      for (int64_t c = 0; c < n; c++) crow[c] = g->alpha * acc[c];
    else
      for (int64_t c = 0; c < n; c++) crow[c] = g->alpha * acc[c] + g->beta * crow[c];
  }
}

static ftq_status check_args(const ftq_gemm_args *g) {
  if (g->a_type != FTQ_DTYPE_F32 || g->b_type != FTQ_DTYPE_F32 || g->c_type != FTQ_DTYPE_F32)
    return ftq_error(FTQ_ERR_UNSUPPORTED, "CPU gemm takes f32 operands only (got %s x %s -> %s)",
                     ftq_dtype_name(g->a_type), ftq_dtype_name(g->b_type), ftq_dtype_name(g->c_type));
  if (g->m < 0 || g->n < 0 || g->k < 0 || g->batch < 1)
    return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "gemm: bad sizes m=%lld n=%lld k=%lld batch=%lld", (long long)g->m,
                     (long long)g->n, (long long)g->k, (long long)g->batch);
  int64_t a_cols = g->trans_a ? g->m : g->k, b_cols = g->trans_b ? g->k : g->n;
  if (g->lda < (a_cols > 1 ? a_cols : 1) || g->ldb < (b_cols > 1 ? b_cols : 1) || g->ldc < (g->n > 1 ? g->n : 1))
    return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "gemm: leading dimensions too small (lda=%lld ldb=%lld ldc=%lld)",
                     (long long)g->lda, (long long)g->ldb, (long long)g->ldc);
  return FTQ_OK;
}

ftq_status ftq_cpu_gemm_plain(ftq_cpu *cpu, const ftq_gemm_args *g) {
  FTQ_TRY(check_args(g));
  if (g->m == 0 || g->n == 0) return FTQ_OK;
  ftq_threadpool *pool = cpu ? cpu->pool : NULL;
  size_t per = (size_t)(g->k + g->n), total;
  if (!ftq_mul_size(per, (size_t)ftq_threadpool_size(pool), &total) || !ftq_mul_size(total, sizeof(float), &total))
    return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "gemm: sizes overflow");
  float *scratch = ftq_malloc(total, "gemm scratch");
  if (!scratch) return FTQ_ERR_OUT_OF_MEMORY;
  /* chunks of at least ~64K multiply-adds keep the thread hand-off cheap */
  size_t work_per_row = (size_t)(g->k + 1) * (size_t)g->n;
  size_t min_rows = 1 + 65536 / work_per_row;
  for (int64_t bi = 0; bi < g->batch; bi++) {
    gemm_job j = {g, (const float *)g->a + bi * g->stride_a, (const float *)g->b + bi * g->stride_b,
                  (float *)g->c + bi * g->stride_c, scratch};
    ftq_parallel_for(pool, (size_t)g->m, min_rows, gemm_rows, &j);
  }
  free(scratch);
  return FTQ_OK;
}

ftq_status ftq_cpu_gemm(void *be, const ftq_gemm_args *g) {
#ifdef FTQ_HAVE_BLAS
  (void)be;
  FTQ_TRY(check_args(g));
  if (g->m == 0 || g->n == 0) return FTQ_OK;
  if (g->m > INT_MAX || g->n > INT_MAX || g->k > INT_MAX || g->lda > INT_MAX || g->ldb > INT_MAX || g->ldc > INT_MAX)
    return ftq_cpu_gemm_plain(be, g); /* beyond BLAS's int sizes */
  for (int64_t bi = 0; bi < g->batch; bi++) {
    float *c = (float *)g->c + bi * g->stride_c;
    if (g->k == 0) { /* BLAS leaves C alone when k == 0 only if beta == 1; be explicit */
      for (int64_t i = 0; i < g->m; i++)
        for (int64_t jj = 0; jj < g->n; jj++) {
          float *x = &c[i * g->ldc + jj];
          *x = g->beta == 0.0f ? 0.0f : g->beta * *x;
        }
      continue;
    }
    cblas_sgemm(CblasRowMajor, g->trans_a ? CblasTrans : CblasNoTrans, g->trans_b ? CblasTrans : CblasNoTrans,
                (int)g->m, (int)g->n, (int)g->k, g->alpha, (const float *)g->a + bi * g->stride_a, (int)g->lda,
                (const float *)g->b + bi * g->stride_b, (int)g->ldb, g->beta, c, (int)g->ldc);
  }
  return FTQ_OK;
#else
  return ftq_cpu_gemm_plain(be, g);
#endif
}

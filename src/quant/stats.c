/* Error statistics of a quantization (ftq_qstat), computed in double on the
 * host from the original and the quantized-then-dequantized values. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "quant/quant_internal.h"

typedef struct pair {
  float y, x;
} pair;

static int cmp_float(const void *a, const void *b) {
  float u = *(const float *)a, v = *(const float *)b;
  return (u > v) - (u < v);
}

static int cmp_pair(const void *a, const void *b) {
  const pair *p = a, *q = b;
  if (p->y != q->y) return (p->y > q->y) - (p->y < q->y);
  return (p->x > q->x) - (p->x < q->x);
}

/* Distinct values of a sorted array (0.0 and -0.0 count as one). */
static size_t count_distinct(const float *v, size_t n) {
  size_t d = 0;
  for (size_t i = 0; i < n; i++)
    if (i == 0 || v[i] != v[i - 1]) d++;
  return d;
}

ftq_status ftq_quant_error_stats(const float *x, const float *y, size_t n, int64_t clipped, double *stats,
                                 size_t n_stats) {
  double se = 0.0, sx = 0.0, maxe = 0.0;
  size_t used = 0, nonzero = 0, zeroed = 0;
  float *xs = ftq_malloc((n ? n : 1) * sizeof(float), "statistics: sorted values");
  pair *ps = ftq_malloc((n ? n : 1) * sizeof(pair), "statistics: value pairs");
  if (!xs || !ps) {
    free(xs);
    free(ps);
    return FTQ_ERR_OUT_OF_MEMORY;
  }
  for (size_t i = 0; i < n; i++) {
    if (!isfinite(x[i])) continue;
    double e = (double)x[i] - (double)y[i];
    if (isnan(e)) e = INFINITY;
    se += e * e;
    sx += (double)x[i] * (double)x[i];
    if (fabs(e) > maxe || isinf(e)) maxe = fabs(e);
    if (x[i] != 0.0f) {
      nonzero++;
      zeroed += y[i] == 0.0f;
    }
    xs[used] = x[i];
    ps[used].y = isnan(y[i]) ? INFINITY : y[i];
    ps[used].x = x[i];
    used++;
  }
  /* collapse: a distinct x is collapsed when its y is also the y of another distinct x */
  qsort(xs, used, sizeof *xs, cmp_float);
  size_t distinct = count_distinct(xs, used);
  qsort(ps, used, sizeof *ps, cmp_pair);
  size_t m = 0; /* collapsed x values gathered into xs */
  for (size_t i = 0; i < used;) {
    size_t j = i + 1, xd = 1;
    while (j < used && ps[j].y == ps[i].y) {
      if (ps[j].x != ps[j - 1].x) xd++;
      j++;
    }
    if (xd > 1)
      for (size_t k = i; k < j; k++)
        if (k == i || ps[k].x != ps[k - 1].x) xs[m++] = ps[k].x;
    i = j;
  }
  qsort(xs, m, sizeof *xs, cmp_float);
  size_t collapsed = count_distinct(xs, m);
  free(xs);
  free(ps);

  double v[FTQ_QSTAT_KNOWN];
  v[FTQ_QSTAT_MSE] = used ? se / (double)used : 0.0;
  v[FTQ_QSTAT_SQNR_DB] = se > 0.0 ? 10.0 * log10(sx / se) : INFINITY;
  v[FTQ_QSTAT_MAX_ABS_ERROR] = maxe;
  v[FTQ_QSTAT_ZEROED_FRACTION] = nonzero ? (double)zeroed / (double)nonzero : 0.0;
  v[FTQ_QSTAT_COLLAPSED_FRACTION] = distinct ? (double)collapsed / (double)distinct : 0.0;
  v[FTQ_QSTAT_CLIPPED_FRACTION] = n ? (double)clipped / (double)n : 0.0;
  for (size_t i = 0; i < n_stats; i++) stats[i] = i < FTQ_QSTAT_KNOWN ? v[i] : NAN;
  return FTQ_OK;
}

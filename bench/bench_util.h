/* Timing helpers the benchmarks share: a monotonic clock in milliseconds
 * and the median of a sample (sorted in place). */
#ifndef FTQ_BENCH_UTIL_H
#define FTQ_BENCH_UTIL_H

#include <stdlib.h>
#include <time.h>

static inline double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static inline int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* The median of n values (v is sorted); 0 for none. */
static inline double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n > 0 ? v[n / 2] : 0.0;
}

#endif /* FTQ_BENCH_UTIL_H */

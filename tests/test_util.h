/* Minimal test harness: CHECK macros count failures and print where; a test
 * returns test_finish() (non-zero on any failure, 77 = skipped for ctest). */
#ifndef FTQ_TEST_UTIL_H
#define FTQ_TEST_UTIL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "libftq/ftq.h"

#define TEST_SKIP_CODE 77

static int test_failures = 0;
static int test_checks = 0;

#define CHECK(cond)                                                          \
  do {                                                                       \
    test_checks++;                                                           \
    if (!(cond)) {                                                           \
      test_failures++;                                                       \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                        \
  } while (0)

#define CHECK_MSG(cond, ...)                                                 \
  do {                                                                       \
    test_checks++;                                                           \
    if (!(cond)) {                                                           \
      test_failures++;                                                       \
      fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                                          \
      fputc('\n', stderr);                                                   \
    }                                                                        \
  } while (0)

/* Expects a status; on mismatch prints the library's last error. */
#define CHECK_STATUS(expr, expected)                                                          \
  do {                                                                                        \
    ftq_status st_ = (expr);                                                                  \
    test_checks++;                                                                            \
    if (st_ != (expected)) {                                                                  \
      test_failures++;                                                                        \
      fprintf(stderr, "%s:%d: %s returned %d (%s), expected %d; last error: %s\n", __FILE__, __LINE__, \
              #expr, (int)st_, ftq_status_string(st_), (int)(expected), ftq_last_error());   \
    }                                                                                         \
  } while (0)

#define CHECK_OK(expr) CHECK_STATUS(expr, FTQ_OK)

/* Fatal variant for setup steps the rest of the test depends on. */
#define REQUIRE_OK(expr)                                                                       \
  do {                                                                                         \
    ftq_status st_ = (expr);                                                                   \
    if (st_ != FTQ_OK) {                                                                       \
      fprintf(stderr, "%s:%d: %s failed: %s: %s\n", __FILE__, __LINE__, #expr, ftq_status_string(st_), \
              ftq_last_error());                                                               \
      exit(1);                                                                                 \
    }                                                                                          \
  } while (0)

/* The last error message contains `needle`. */
#define CHECK_ERROR_MENTIONS(needle)                                                          \
  CHECK_MSG(strstr(ftq_last_error(), (needle)) != NULL, "message \"%s\" lacks \"%s\"", ftq_last_error(), \
            (needle))

/* GPU tests skip only where no GPU can exist: with FTQ_REQUIRE_GPU=1 set,
 * or an NVIDIA device node present, a CUDA module that fails to load or
 * finds no device is a failure, not a skip. Returns the exit code to use. */
static inline int test_gpu_unavailable(const char *name, const char *why) {
  const char *req = getenv("FTQ_REQUIRE_GPU");
  FILE *node = fopen("/dev/nvidiactl", "r");
  int must = (req && *req && strcmp(req, "0") != 0) || node != NULL;
  if (node) fclose(node);
  if (must) {
    fprintf(stderr, "%s: FAILED: a GPU should be usable here but is not: %s\n", name, why);
    return 1;
  }
  printf("%s: SKIP: no CUDA device (%s)\n", name, why);
  return TEST_SKIP_CODE;
}

/* Data-parallel GPU tests: 0 with *ndev >= 2 GPUs to use, else the exit
 * code (a failure where a GPU should be usable, a skip with fewer than 2). */
static inline int test_need_two_gpus(const char *name, int *ndev) {
  *ndev = 0;
  if (ftq_cuda_device_count(ndev) != FTQ_OK || *ndev == 0) return test_gpu_unavailable(name, ftq_last_error());
  if (*ndev < 2) {
    printf("%s: SKIP: %d GPU; data parallel needs 2\n", name, *ndev);
    return TEST_SKIP_CODE;
  }
  return 0;
}

static inline int test_finish(const char *name) {
  if (test_failures) {
    fprintf(stderr, "%s: %d of %d checks FAILED\n", name, test_failures, test_checks);
    return 1;
  }
  printf("%s: all %d checks passed\n", name, test_checks);
  return 0;
}

/* Deterministic test data (splitmix64), independent of the library's RNG. */
static inline uint64_t test_rand_u64(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
static inline float test_rand_uniform(uint64_t *s) { /* [-1, 1) */
  return (float)((double)(test_rand_u64(s) >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0);
}

/* Relative Frobenius error ||a - b|| / ||b|| in double; inf if any NaN. */
static inline double test_rel_error_f32(const float *a, const float *b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) {
    if (isnan(a[i]) || isnan(b[i])) return INFINITY;
    double d = (double)a[i] - (double)b[i];
    num += d * d;
    den += (double)b[i] * (double)b[i];
  }
  return den > 0 ? sqrt(num / den) : sqrt(num);
}

#endif /* FTQ_TEST_UTIL_H */

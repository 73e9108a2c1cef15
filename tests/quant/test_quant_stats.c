/* Quantization statistics on known distributions: NF4 / FP4 on Gaussian
 * weights against the expectation computed by numerical integration
 * (tests/ref/quant/expect_stats.py), INT8 on uniform data against the
 * textbook step^2/12, and every statistic on a small case worked out from
 * its definition in double. */
#include "test_util.h"

static ftq_context *ctx;

static double expected(const char *key) {
  FILE *f = fopen("tests/ref/quant/expected_stats.txt", "r");
  if (!f) {
    fprintf(stderr, "cannot read tests/ref/quant/expected_stats.txt\n");
    exit(1);
  }
  char k[128];
  double v;
  int found = 0;
  char line[256];
  while (fgets(line, sizeof line, f))
    if (line[0] != '#' && sscanf(line, "%127s %lf", k, &v) == 2 && strcmp(k, key) == 0) {
      found = 1;
      break;
    }
  fclose(f);
  if (!found) {
    fprintf(stderr, "expected_stats.txt lacks %s\n", key);
    exit(1);
  }
  return v;
}

static double gauss(uint64_t *s) {
  double u = ((double)(test_rand_u64(s) >> 11) + 0.5) / 9007199254740992.0;
  double v = ((double)(test_rand_u64(s) >> 11) + 0.5) / 9007199254740992.0;
  return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

static void gaussian(const char *type, int64_t bs, double sigma) {
  ftq_options *o;
  REQUIRE_OK(ftq_options_create(&o));
  REQUIRE_OK(ftq_options_set_string(o, "bnb_4bit_quant_type", type));
  REQUIRE_OK(ftq_options_set_int(o, "quant_blocksize", bs));
  ftq_quantizer *q;
  REQUIRE_OK(ftq_quantizer_create(ctx, o, &q));
  int64_t n = 1 << 20;
  float *x = malloc((size_t)n * sizeof(float));
  uint64_t seed = 2024 + (uint64_t)bs;
  for (int64_t i = 0; i < n; i++) x[i] = (float)(gauss(&seed) * sigma); /* the scale must not matter */
  double st[6];
  REQUIRE_OK(ftq_quantizer_error_stats(q, x, FTQ_FLOAT32, FTQ_HOST, 1, &n, st, 6));
  char key[64];
  snprintf(key, sizeof key, "%s_bs%lld_sqnr_db", type, (long long)bs);
  double want = expected(key), want_sqnr = want;
  CHECK_MSG(fabs(st[FTQ_QSTAT_SQNR_DB] - want) < 0.05, "%s bs %lld: SQNR %.4f dB, expected %.4f dB", type,
            (long long)bs, st[FTQ_QSTAT_SQNR_DB], want);
  snprintf(key, sizeof key, "%s_bs%lld_mse", type, (long long)bs);
  want = expected(key) * sigma * sigma;
  CHECK_MSG(fabs(st[FTQ_QSTAT_MSE] / want - 1.0) < 0.01, "%s bs %lld: MSE %.6g, expected %.6g", type, (long long)bs,
            st[FTQ_QSTAT_MSE], want);
  snprintf(key, sizeof key, "%s_bs%lld_zeroed_fraction", type, (long long)bs);
  want = expected(key);
  CHECK_MSG(fabs(st[FTQ_QSTAT_ZEROED_FRACTION] - want) < 0.002, "%s bs %lld: zeroed %.5f, expected %.5f", type,
            (long long)bs, st[FTQ_QSTAT_ZEROED_FRACTION], want);
  /* the largest error is at most half the widest code gap times the largest absmax */
  CHECK(st[FTQ_QSTAT_MAX_ABS_ERROR] > 0 && st[FTQ_QSTAT_MAX_ABS_ERROR] < 6.0 * sigma * 0.2);
  /* 1M distinct values into 16 codes per block: nearly all share a code */
  CHECK_MSG(st[FTQ_QSTAT_COLLAPSED_FRACTION] > 0.9, "collapsed %g", st[FTQ_QSTAT_COLLAPSED_FRACTION]);
  CHECK(st[FTQ_QSTAT_CLIPPED_FRACTION] == 0.0);
  printf("%s bs %lld: SQNR %.3f dB (expected %.3f), zeroed %.4f (expected %.4f)\n", type, (long long)bs,
         st[FTQ_QSTAT_SQNR_DB], want_sqnr, st[FTQ_QSTAT_ZEROED_FRACTION], want);
  free(x);
  ftq_quantizer_destroy(q);
  ftq_options_destroy(o);
}

/* INT8 per channel on uniform data: error uniform in +-step/2 per row. */
static void uniform_int8(void) {
  ftq_options *o;
  REQUIRE_OK(ftq_options_create(&o));
  REQUIRE_OK(ftq_options_set_bool(o, "load_in_8bit", 1));
  ftq_quantizer *q;
  REQUIRE_OK(ftq_quantizer_create(ctx, o, &q));
  int64_t shape[2] = {256, 4096}, n = shape[0] * shape[1];
  float *x = malloc((size_t)n * sizeof(float));
  uint64_t seed = 77;
  double signal = 0, noise = 0;
  for (int64_t r = 0; r < shape[0]; r++) {
    double m = 0;
    for (int64_t c = 0; c < shape[1]; c++) {
      float v = test_rand_uniform(&seed);
      x[r * shape[1] + c] = v;
      signal += (double)v * v;
      m = fabs(v) > m ? fabs(v) : m;
    }
    double step = m / 127.0;
    noise += (double)shape[1] * step * step / 12.0;
  }
  double st[6];
  REQUIRE_OK(ftq_quantizer_error_stats(q, x, FTQ_FLOAT32, FTQ_HOST, 2, shape, st, 6));
  double want = 10.0 * log10(signal / noise);
  CHECK_MSG(fabs(st[FTQ_QSTAT_SQNR_DB] - want) < 0.05, "INT8 uniform: SQNR %.4f dB, expected %.4f dB",
            st[FTQ_QSTAT_SQNR_DB], want);
  printf("int8 per channel, uniform: SQNR %.3f dB (expected %.3f)\n", st[FTQ_QSTAT_SQNR_DB], want);
  free(x);
  ftq_quantizer_destroy(q);
  ftq_options_destroy(o);
}

/* Every statistic on a case small enough to work out: symmetric INT8 per
 * tensor with absmax 127 (scale 1). */
static void small_case(void) {
  ftq_options *o;
  REQUIRE_OK(ftq_options_create(&o));
  REQUIRE_OK(ftq_options_set_bool(o, "load_in_8bit", 1));
  REQUIRE_OK(ftq_options_set_string(o, "int8_granularity", "tensor"));
  ftq_quantizer *q;
  REQUIRE_OK(ftq_quantizer_create(ctx, o, &q));
  float x[9] = {127.0f, 10.2f, 0.3f, -0.4f, 10.4f, 0.0f, 2.5f, 3.5f, NAN};
  float y[8] = {127, 10, 0, 0, 10, 0, 2, 4}; /* rint(x / 1), half to even */
  double se = 0, sx = 0, mx = 0;
  for (int i = 0; i < 8; i++) {
    double e = (double)x[i] - y[i];
    se += e * e;
    sx += (double)x[i] * x[i];
    mx = fabs(e) > mx ? fabs(e) : mx;
  }
  int64_t n = 9;
  double st[8];
  REQUIRE_OK(ftq_quantizer_error_stats(q, x, FTQ_FLOAT32, FTQ_HOST, 1, &n, st, 8));
  CHECK(fabs(st[FTQ_QSTAT_MSE] - se / 8) < 1e-12); /* NaN is left out */
  CHECK(fabs(st[FTQ_QSTAT_SQNR_DB] - 10 * log10(sx / se)) < 1e-9);
  CHECK(fabs(st[FTQ_QSTAT_MAX_ABS_ERROR] - mx) < 1e-12 && mx == 0.5);
  CHECK(fabs(st[FTQ_QSTAT_ZEROED_FRACTION] - 2.0 / 7.0) < 1e-12); /* 0.3 and -0.4 of 7 non-zero */
  CHECK(fabs(st[FTQ_QSTAT_COLLAPSED_FRACTION] - 5.0 / 8.0) < 1e-12); /* {10.2, 10.4} and {0.3, -0.4, 0} */
  CHECK(st[FTQ_QSTAT_CLIPPED_FRACTION] == 0.0);
  CHECK(isnan(st[6]) && isnan(st[7])); /* past the known statistics */
  /* exact: SQNR is +inf */
  float e[4] = {1, 2, -3, 127};
  n = 4;
  REQUIRE_OK(ftq_quantizer_error_stats(q, e, FTQ_FLOAT32, FTQ_HOST, 1, &n, st, 6));
  CHECK(st[FTQ_QSTAT_MSE] == 0 && isinf(st[FTQ_QSTAT_SQNR_DB]) && st[FTQ_QSTAT_COLLAPSED_FRACTION] == 0);
  /* clipping with calibrated parameters */
  REQUIRE_OK(ftq_options_set_string(o, "int8_scheme", "asymmetric"));
  ftq_quantizer *qa;
  REQUIRE_OK(ftq_quantizer_create(ctx, o, &qa));
  float cal[3] = {-1.0f, 0.0f, 1.0f};
  REQUIRE_OK(ftq_quantizer_observe(qa, cal, FTQ_FLOAT32, FTQ_HOST, 3));
  float big[4] = {0.5f, 3.0f, -2.0f, 0.25f};
  n = 4;
  REQUIRE_OK(ftq_quantizer_error_stats(qa, big, FTQ_FLOAT32, FTQ_HOST, 1, &n, st, 6));
  CHECK(st[FTQ_QSTAT_CLIPPED_FRACTION] == 0.5);
  ftq_quantizer_destroy(qa);
  ftq_quantizer_destroy(q);
  ftq_options_destroy(o);
}

int main(void) {
  REQUIRE_OK(ftq_context_create("cpu", NULL, &ctx));
  gaussian("nf4", 64, 1.0);
  gaussian("nf4", 256, 0.02);
  gaussian("fp4", 64, 0.05);
  uniform_int8();
  small_case();
  ftq_context_destroy(ctx);
  return test_finish("test_quant_stats");
}

/* PTQ calibration: min/max and percentile observers against the
 * definitions recomputed in double from all the observed values (sorted),
 * independence from batch order, and the calibrated asymmetric INT8
 * parameters in use (clipping of the values outside the range). */
#include "quant/quant_internal.h"
#include "test_util.h"

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* numpy.percentile's default ("linear") */
static double percentile(const double *sorted, size_t n, double q) {
  double r = q / 100.0 * (double)(n - 1);
  size_t i = (size_t)floor(r);
  if (i + 1 >= n) return sorted[n - 1];
  return sorted[i] + (sorted[i + 1] - sorted[i]) * (r - (double)i);
}

static double gauss(uint64_t *s) {
  double u = ((double)(test_rand_u64(s) >> 11) + 0.5) / 9007199254740992.0;
  double v = ((double)(test_rand_u64(s) >> 11) + 0.5) / 9007199254740992.0;
  return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

int main(void) {
  ftq_context *ctx;
  REQUIRE_OK(ftq_context_create("cpu", NULL, &ctx));
  enum { BATCHES = 8, PER = 50000 };
  size_t n = BATCHES * PER;
  float *x = malloc(n * sizeof(float));
  double *all = malloc(n * sizeof(double));
  uint64_t seed = 31;
  for (size_t i = 0; i < n; i++) {
    x[i] = (float)(gauss(&seed) * 0.7 + 0.3);
    if (i % 9973 == 0) x[i] = (i % 2 ? 1 : -1) * 500.0f; /* rare outliers */
    all[i] = x[i];
  }
  qsort(all, n, sizeof *all, cmp_d);

  ftq_options *o;
  REQUIRE_OK(ftq_options_create(&o));
  REQUIRE_OK(ftq_options_set_bool(o, "load_in_8bit", 1));
  REQUIRE_OK(ftq_options_set_string(o, "int8_scheme", "asymmetric"));
  REQUIRE_OK(ftq_options_set_string(o, "int8_granularity", "tensor"));

  /* min / max */
  ftq_quantizer *mm;
  REQUIRE_OK(ftq_quantizer_create(ctx, o, &mm));
  float s;
  int32_t zp;
  CHECK_STATUS(ftq_quantizer_calibration(mm, &s, &zp), FTQ_ERR_STATE);
  for (int b = 0; b < BATCHES; b++) REQUIRE_OK(ftq_quantizer_observe(mm, x + b * PER, FTQ_FLOAT32, FTQ_HOST, PER));
  REQUIRE_OK(ftq_quantizer_calibration(mm, &s, &zp));
  double lo = fmin(all[0], 0), hi = fmax(all[n - 1], 0);
  float want_s = (float)((hi - lo) / 255.0);
  CHECK_MSG(s == want_s, "minmax scale %.9g, definition %.9g", s, want_s);
  CHECK(zp == (int32_t)nearbyint(-lo / (double)want_s));

  /* percentile: the range excludes the outliers */
  REQUIRE_OK(ftq_options_set_string(o, "observer", "percentile"));
  REQUIRE_OK(ftq_options_set_float(o, "observer_percentile", 99.9));
  ftq_quantizer *pc, *pc2;
  REQUIRE_OK(ftq_quantizer_create(ctx, o, &pc));
  REQUIRE_OK(ftq_quantizer_create(ctx, o, &pc2));
  for (int b = 0; b < BATCHES; b++) {
    REQUIRE_OK(ftq_quantizer_observe(pc, x + b * PER, FTQ_FLOAT32, FTQ_HOST, PER));
    REQUIRE_OK(ftq_quantizer_observe(pc2, x + (BATCHES - 1 - b) * PER, FTQ_FLOAT32, FTQ_HOST, PER));
  }
  float s1, s2;
  int32_t z1, z2;
  REQUIRE_OK(ftq_quantizer_calibration(pc, &s1, &z1));
  REQUIRE_OK(ftq_quantizer_calibration(pc2, &s2, &z2));
  CHECK_MSG(s1 == s2 && z1 == z2, "batch order changed the calibration");
  double p_lo = percentile(all, n, 0.1), p_hi = percentile(all, n, 99.9);
  /* the internal observer reports the percentiles it used */
  ftq_observer obs;
  REQUIRE_OK(ftq_observer_init(&obs, o));
  ftq_observer_add(&obs, x, n);
  double got_lo = ftq_observer_percentile(&obs, 0.1), got_hi = ftq_observer_percentile(&obs, 99.9);
  /* one histogram bin holds the bf16 precision: 2^-7 relative */
  CHECK_MSG(fabs(got_lo - p_lo) <= fabs(p_lo) * 0x1p-7, "0.1th percentile %.6g, exact %.6g", got_lo, p_lo);
  CHECK_MSG(fabs(got_hi - p_hi) <= fabs(p_hi) * 0x1p-7, "99.9th percentile %.6g, exact %.6g", got_hi, p_hi);
  for (double qq = 1; qq < 100; qq += 7.3) {
    double a = ftq_observer_percentile(&obs, qq), e = percentile(all, n, qq);
    CHECK_MSG(fabs(a - e) <= fabs(e) * 0x1p-7 + 1e-6, "percentile %.1f: %.6g, exact %.6g", qq, a, e);
  }
  float ws;
  int32_t wz;
  REQUIRE_OK(ftq_observer_params(&obs, &ws, &wz));
  CHECK(ws == s1 && wz == z1);
  CHECK(s1 < s / 50); /* far narrower than min / max with the outliers */
  ftq_observer_release(&obs);

  /* the calibrated quantizer clips what lies outside its range */
  int64_t shape = (int64_t)n;
  ftq_qtensor *t;
  REQUIRE_OK(ftq_quantizer_quantize(pc, x, FTQ_FLOAT32, FTQ_HOST, 1, &shape, &t));
  int64_t clip_def = 0;
  for (size_t i = 0; i < n; i++) {
    double c = nearbyint((double)x[i] / (double)s1) + z1;
    clip_def += c < 0 || c > 255;
  }
  CHECK_MSG(ftq_qtensor_clipped(t) == clip_def && clip_def > 0, "clipped %lld, definition %lld",
            (long long)ftq_qtensor_clipped(t), (long long)clip_def);
  ftq_qtensor_destroy(t);
  /* and its straight-through gradient is zero there */
  float *g = malloc(n * sizeof(float)), *gi = malloc(n * sizeof(float));
  for (size_t i = 0; i < n; i++) g[i] = 1.0f;
  REQUIRE_OK(ftq_quantizer_fake_quantize_backward(pc, x, g, gi, FTQ_FLOAT32, FTQ_HOST, 1, &shape));
  int64_t zeros = 0;
  for (size_t i = 0; i < n; i++) zeros += gi[i] == 0.0f;
  CHECK(zeros == clip_def);
  free(g);
  free(gi);

  ftq_quantizer_reset_calibration(pc);
  CHECK_STATUS(ftq_quantizer_calibration(pc, &s, &zp), FTQ_ERR_STATE);
  float nan_only[3] = {NAN, INFINITY, -INFINITY};
  REQUIRE_OK(ftq_quantizer_observe(pc, nan_only, FTQ_FLOAT32, FTQ_HOST, 3));
  CHECK_STATUS(ftq_quantizer_calibration(pc, &s, &zp), FTQ_ERR_STATE);
  ftq_quantizer_destroy(mm);
  ftq_quantizer_destroy(pc);
  ftq_quantizer_destroy(pc2);
  ftq_options_destroy(o);
  free(x);
  free(all);
  ftq_context_destroy(ctx);
  return test_finish("test_quant_observer");
}

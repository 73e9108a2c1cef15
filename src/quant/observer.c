/* PTQ calibration: an observer of activations (min / max, and a histogram
 * for percentiles) and the asymmetric INT8 parameters it implies. The
 * histogram has one bin per 16-bit prefix of a float's order-preserving
 * key, so it covers every float, needs no range up front, and its counts
 * do not depend on the order of the batches. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/half.h"
#include "quant/quant_internal.h"

/* Monotonic map of floats to unsigned keys (negative values reversed). */
static inline uint32_t key_of(float v) {
  uint32_t u = ftq_f32_bits(v);
  return u & 0x80000000u ? ~u : u | 0x80000000u;
}
static inline float value_of_key(uint32_t k) { return ftq_bits_f32(k & 0x80000000u ? k & 0x7fffffffu : ~k); }

ftq_status ftq_observer_init(ftq_observer *o, const ftq_options *opts) {
  memset(o, 0, sizeof *o);
  const char *mode;
  FTQ_TRY(ftq_options_get_string(opts, "observer", &mode));
  FTQ_TRY(ftq_options_get_float(opts, "observer_percentile", &o->percentile));
  o->percentile_mode = strcmp(mode, "percentile") == 0;
  if (o->percentile_mode) {
    o->hist = ftq_calloc(FTQ_OBSERVER_BINS, sizeof *o->hist, "percentile observer histogram");
    if (!o->hist) return FTQ_ERR_OUT_OF_MEMORY;
  }
  ftq_observer_reset(o);
  return FTQ_OK;
}

void ftq_observer_release(ftq_observer *o) {
  free(o->hist);
  o->hist = NULL;
}

void ftq_observer_reset(ftq_observer *o) {
  o->min = INFINITY;
  o->max = -INFINITY;
  o->count = 0;
  if (o->hist) memset(o->hist, 0, FTQ_OBSERVER_BINS * sizeof *o->hist);
}

void ftq_observer_add(ftq_observer *o, const float *x, size_t n) {
  for (size_t i = 0; i < n; i++) {
    float v = x[i];
    if (!isfinite(v)) continue;
    if (v == 0.0f) v = 0.0f; /* -0 and +0 share a bin */
    if (v < o->min) o->min = v;
    if (v > o->max) o->max = v;
    o->count++;
    if (o->hist) o->hist[key_of(v) >> 16]++;
  }
}

double ftq_observer_percentile(const ftq_observer *o, double q) {
  if (!o->count) return NAN;
  if (!o->hist) return q <= 50.0 ? o->min : o->max;
  /* numpy "linear": the value at fractional rank q/100 * (count - 1) */
  double rank = q / 100.0 * (double)(o->count - 1);
  uint64_t below = 0;
  for (uint32_t b = 0; b < FTQ_OBSERVER_BINS; b++) {
    uint64_t c = o->hist[b];
    if (!c) continue;
    if ((double)(below + c) > rank) {
      /* spread the bin's values evenly over its range, clamped to what was seen */
      double lo = value_of_key(b << 16), hi = value_of_key(b << 16 | 0xffffu);
      if (lo < o->min) lo = o->min;
      if (hi > o->max) hi = o->max;
      double t = c > 1 ? (rank - (double)below) / (double)(c - 1) : 0.5;
      if (t > 1.0) t = 1.0;
      return lo + (hi - lo) * t;
    }
    below += c;
  }
  return o->max;
}

ftq_status ftq_observer_params(const ftq_observer *o, float *scale, int32_t *zero_point) {
  if (!o->count) return ftq_error(FTQ_ERR_STATE, "calibration: no finite value has been observed yet");
  double lo = o->min, hi = o->max;
  if (o->percentile_mode) {
    lo = ftq_observer_percentile(o, 100.0 - o->percentile);
    hi = ftq_observer_percentile(o, o->percentile);
  }
  if (lo > 0.0) lo = 0.0; /* the range always holds 0, so 0 is exact */
  if (hi < 0.0) hi = 0.0;
  float s = (float)((hi - lo) / 255.0);
  double z = s > 0.0f ? rint(-lo / (double)s) : 0.0;
  if (scale) *scale = s;
  if (zero_point) *zero_point = (int32_t)(z < 0.0 ? 0.0 : z > 255.0 ? 255.0 : z);
  return FTQ_OK;
}

/* Internals of the quantizer shared by its files: allocation and backend
 * descriptors of quantized tensors, the observer, the statistics, and the
 * ftq_quantizer object. */
#ifndef FTQ_QUANT_QUANT_INTERNAL_H
#define FTQ_QUANT_QUANT_INTERNAL_H

#include "quant/qtensor.h"

/* Allocates the buffers of a quantized tensor of this shape (one
 * allocation, accounted under `cat`) without filling them. */
ftq_status ftq_qtensor_alloc(ftq_context *ctx, const ftq_qconfig *cfg, int ndim, const int64_t *shape,
                             ftq_dtype orig_dtype, ftq_memory_category cat, const char *what, ftq_qtensor *out);

/* The backend's view of a quantized tensor. */
void ftq_qtensor_q4_desc(const ftq_qtensor *q, ftq_q4_desc *d);
void ftq_qtensor_int8_desc(const ftq_qtensor *q, ftq_int8_desc *d);

/* Checks a configuration (block size, granularity); `what` names it. */
ftq_status ftq_qconfig_check(const ftq_qconfig *cfg, const char *what);

/* ---- statistics (stats.c) ---- */

/* Number of statistics this build computes (ftq_qstat values 0..N-1). */
#define FTQ_QSTAT_KNOWN 6

/* Fills stats[0..n_stats) from the original values x and their
 * quantized-dequantized y (host fp32, n each); non-finite x are left out;
 * entries past FTQ_QSTAT_KNOWN are NaN. */
ftq_status ftq_quant_error_stats(const float *x, const float *y, size_t n, int64_t clipped, double *stats,
                                 size_t n_stats);

/* ---- calibration (observer.c) ---- */

typedef struct ftq_observer {
  int percentile_mode;
  double percentile; /* p in [50, 100] */
  double min, max;   /* of the finite values seen */
  uint64_t count;    /* finite values seen */
  uint64_t *hist;    /* percentile mode: FTQ_OBSERVER_BINS counts */
} ftq_observer;

/* Bins of the percentile histogram: one per value of the top 16 bits of a
 * float's order-preserving key (the resolution of bf16). */
#define FTQ_OBSERVER_BINS 65536

ftq_status ftq_observer_init(ftq_observer *o, const ftq_options *opts);
void ftq_observer_release(ftq_observer *o);
void ftq_observer_reset(ftq_observer *o);
void ftq_observer_add(ftq_observer *o, const float *x, size_t n);
/* The percentile q (0..100) of what was seen, numpy's "linear" definition
 * read off the histogram (error below one bin). */
double ftq_observer_percentile(const ftq_observer *o, double q);
/* Asymmetric uint8 parameters; FTQ_ERR_STATE if nothing finite was seen. */
ftq_status ftq_observer_params(const ftq_observer *o, float *scale, int32_t *zero_point);

/* ---- the public quantizer ---- */

struct ftq_quantizer {
  ftq_context *ctx;
  ftq_qconfig cfg;
  ftq_observer obs;
};

#endif /* FTQ_QUANT_QUANT_INTERNAL_H */

/* The public quantizer (ftq_quantizer.h): quantize / dequantize / fake
 * quantization / statistics / calibration on host or device buffers, on
 * top of the quantized tensors of qtensor.c. Host buffers on a CUDA
 * context go through a device staging buffer. */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "quant/quant_internal.h"

static int valid_type(ftq_float_type t) { return t == FTQ_FLOAT32 || t == FTQ_FLOAT16 || t == FTQ_BFLOAT16; }

/* ftq_float_type values are the ftq_dtype values of the same types. */
static ftq_dtype dtype_of(ftq_float_type t) { return (ftq_dtype)t; }

static int on_host_only(const ftq_context *ctx, ftq_memory_location where) {
  return where == FTQ_HOST && ctx->type != FTQ_DEVICE_CPU;
}

static ftq_status check_args(const ftq_quantizer *q, const void *buf, ftq_float_type type, ftq_memory_location where,
                             int ndim, const int64_t *shape, const char *fn, size_t *n) {
  FTQ_CHECK_ARG(q, "%s: quantizer is NULL", fn);
  FTQ_CHECK_ARG(buf, "%s: buffer is NULL", fn);
  FTQ_CHECK_ARG(valid_type(type), "%s: element type %d is not an ftq_float_type", fn, (int)type);
  FTQ_CHECK_ARG(where == FTQ_HOST || where == FTQ_DEVICE, "%s: memory location %d", fn, (int)where);
  FTQ_CHECK_ARG(ndim >= 1 && ndim <= FTQ_MAX_DIMS && shape, "%s: %d dimensions (1..%d allowed)", fn, ndim,
                FTQ_MAX_DIMS);
  size_t total = 1;
  for (int i = 0; i < ndim; i++) {
    FTQ_CHECK_ARG(shape[i] >= 1, "%s: size %lld in dimension %d", fn, (long long)shape[i], i);
    FTQ_CHECK_ARG(ftq_mul_size(total, (size_t)shape[i], &total), "%s: shape too large", fn);
  }
  *n = total;
  return FTQ_OK;
}

/* A device view of a caller's buffer: the buffer itself, or a staging copy
 * (uploaded when `upload`). */
typedef struct staged {
  void *ptr;
  ftq_buffer buf;
} staged;

static ftq_status stage(ftq_context *ctx, const void *src, size_t bytes, ftq_memory_location where, int upload,
                        const char *what, staged *s) {
  memset(s, 0, sizeof *s);
  if (!on_host_only(ctx, where)) {
    s->ptr = (void *)src;
    return FTQ_OK;
  }
  FTQ_TRY(ftq_buffer_alloc(ctx, FTQ_MEM_WORKSPACE, bytes, what, &s->buf));
  s->ptr = s->buf.ptr;
  if (!upload) return FTQ_OK;
  ftq_status st = ctx->be->copy(ctx->be_ctx, s->ptr, src, bytes, FTQ_COPY_H2D);
  if (st != FTQ_OK) ftq_buffer_free(ctx, &s->buf);
  return st;
}

static ftq_status unstage(ftq_context *ctx, staged *s, void *dst, size_t bytes, int download) {
  ftq_status st = FTQ_OK;
  if (s->buf.ptr && download) st = ctx->be->copy(ctx->be_ctx, dst, s->ptr, bytes, FTQ_COPY_D2H);
  ftq_buffer_free(ctx, &s->buf);
  return st;
}

/* ---- the quantizer ------------------------------------------------------------ */

ftq_status ftq_quantizer_create(ftq_context *ctx, const ftq_options *opts, ftq_quantizer **out) {
  FTQ_CHECK_ARG(out, "ftq_quantizer_create: out is NULL");
  *out = NULL;
  FTQ_CHECK_ARG(ctx, "ftq_quantizer_create: context is NULL");
  ftq_quantizer *q = ftq_calloc(1, sizeof *q, "quantizer");
  if (!q) return FTQ_ERR_OUT_OF_MEMORY;
  q->ctx = ctx;
  ftq_status st = ftq_qconfig_from_options(opts, &q->cfg);
  if (st == FTQ_OK) st = ftq_qconfig_check(&q->cfg, "quantizer");
  if (st == FTQ_OK) st = ftq_observer_init(&q->obs, opts);
  if (st != FTQ_OK) {
    ftq_quantizer_destroy(q);
    return ftq_error_context(st, "creating a quantizer");
  }
  *out = q;
  return FTQ_OK;
}

void ftq_quantizer_destroy(ftq_quantizer *q) {
  if (!q) return;
  ftq_observer_release(&q->obs);
  free(q);
}

int ftq_quantizer_scheme(const ftq_quantizer *q) { return q ? (int)q->cfg.scheme : -1; }

ftq_status ftq_quantizer_quantized_bytes(const ftq_quantizer *q, int ndim, const int64_t *shape, size_t *bytes) {
  FTQ_CHECK_ARG(q && bytes, "ftq_quantizer_quantized_bytes: NULL argument");
  return ftq_qconfig_bytes(&q->cfg, ndim, shape, bytes);
}

/* Quantizes a device buffer into *qt with the quantizer's settings. */
static ftq_status quantize_device(ftq_quantizer *q, const void *dev, ftq_float_type type, int ndim,
                                  const int64_t *shape, ftq_memory_category cat, ftq_qtensor *qt) {
  return ftq_qtensor_quantize(q->ctx, &q->cfg, dev, dtype_of(type), ndim, shape, cat, "tensor", qt);
}

ftq_status ftq_quantizer_quantize(ftq_quantizer *q, const void *src, ftq_float_type type, ftq_memory_location where,
                                  int ndim, const int64_t *shape, ftq_qtensor **out) {
  FTQ_CHECK_ARG(out, "ftq_quantizer_quantize: out is NULL");
  *out = NULL;
  size_t n;
  FTQ_TRY(check_args(q, src, type, where, ndim, shape, "ftq_quantizer_quantize", &n));
  ftq_qtensor *qt = ftq_calloc(1, sizeof *qt, "quantized tensor");
  if (!qt) return FTQ_ERR_OUT_OF_MEMORY;
  staged s;
  ftq_status st = stage(q->ctx, src, n * ftq_dtype_size(dtype_of(type)), where, 1, "staged input", &s);
  if (st == FTQ_OK) {
    st = quantize_device(q, s.ptr, type, ndim, shape, FTQ_MEM_OTHER, qt);
    unstage(q->ctx, &s, NULL, 0, 0);
  }
  if (st != FTQ_OK) {
    free(qt);
    return st;
  }
  *out = qt;
  return FTQ_OK;
}

ftq_status ftq_quantizer_fake_quantize(ftq_quantizer *q, const void *src, void *dst, ftq_float_type type,
                                       ftq_memory_location where, int ndim, const int64_t *shape) {
  size_t n;
  FTQ_TRY(check_args(q, src, type, where, ndim, shape, "ftq_quantizer_fake_quantize", &n));
  FTQ_CHECK_ARG(dst, "ftq_quantizer_fake_quantize: dst is NULL");
  size_t bytes = n * ftq_dtype_size(dtype_of(type));
  staged s;
  FTQ_TRY(stage(q->ctx, src, bytes, where, 1, "fake-quantize buffer", &s));
  ftq_qtensor qt;
  ftq_status st = quantize_device(q, s.ptr, type, ndim, shape, FTQ_MEM_WORKSPACE, &qt);
  if (st == FTQ_OK) {
    /* on the device, dequantize straight into dst (the staging buffer otherwise) */
    void *target = s.buf.ptr ? s.ptr : dst;
    st = ftq_qtensor_dequantize(&qt, dtype_of(type), target);
    ftq_qtensor_release(&qt);
  }
  ftq_status st2 = unstage(q->ctx, &s, dst, bytes, st == FTQ_OK);
  return st != FTQ_OK ? st : st2;
}

ftq_status ftq_quantizer_fake_quantize_backward(ftq_quantizer *q, const void *src, const void *grad_out,
                                                void *grad_in, ftq_float_type type, ftq_memory_location where,
                                                int ndim, const int64_t *shape) {
  size_t n;
  FTQ_TRY(check_args(q, src, type, where, ndim, shape, "ftq_quantizer_fake_quantize_backward", &n));
  FTQ_CHECK_ARG(grad_out && grad_in, "ftq_quantizer_fake_quantize_backward: gradient buffer is NULL");
  size_t bytes = n * ftq_dtype_size(dtype_of(type));
  ftq_context *ctx = q->ctx;
  if (q->cfg.scheme != FTQ_QSCHEME_INT8_SYM && q->cfg.scheme != FTQ_QSCHEME_INT8_ASYM) {
    /* NF4 / FP4 scale by the block's absmax: nothing clips, the gradient passes */
    if (grad_in == grad_out) return FTQ_OK;
    if (ctx->type == FTQ_DEVICE_CPU || where == FTQ_HOST) {
      memcpy(grad_in, grad_out, bytes);
      return FTQ_OK;
    }
    return ctx->be->copy(ctx->be_ctx, grad_in, grad_out, bytes, FTQ_COPY_D2D);
  }
  staged xs, gs;
  FTQ_TRY(stage(ctx, src, bytes, where, 1, "fake-quantize input", &xs));
  ftq_status st = stage(ctx, grad_out, bytes, where, 1, "fake-quantize gradient", &gs);
  if (st != FTQ_OK) {
    unstage(ctx, &xs, NULL, 0, 0);
    return st;
  }
  ftq_qtensor qt;
  ftq_buffer mask = {0};
  st = quantize_device(q, xs.ptr, type, ndim, shape, FTQ_MEM_WORKSPACE, &qt);
  if (st == FTQ_OK) {
    st = ftq_buffer_alloc(ctx, FTQ_MEM_WORKSPACE, n, "straight-through mask", &mask);
    if (st == FTQ_OK) st = ftq_qtensor_clip_mask(&qt, xs.ptr, dtype_of(type), mask.ptr);
    void *target = gs.buf.ptr ? gs.ptr : grad_in;
    if (st == FTQ_OK) st = ctx->be->mask_select(ctx->be_ctx, n, mask.ptr, gs.ptr, dtype_of(type), target);
    ftq_buffer_free(ctx, &mask);
    ftq_qtensor_release(&qt);
  }
  unstage(ctx, &xs, NULL, 0, 0);
  ftq_status st2 = unstage(ctx, &gs, grad_in, bytes, st == FTQ_OK);
  return st != FTQ_OK ? st : st2;
}

/* The values of a buffer as fp32 in host memory (caller frees). */
static ftq_status host_f32(ftq_context *ctx, const void *src, ftq_dtype dt, size_t n, ftq_memory_location where,
                           float **out) {
  *out = NULL;
  float *h = ftq_malloc((n ? n : 1) * sizeof(float), "host copy for statistics");
  if (!h) return FTQ_ERR_OUT_OF_MEMORY;
  ftq_status st = FTQ_OK;
  if (!on_host_only(ctx, where) && ctx->type != FTQ_DEVICE_CPU) {
    /* on the device: convert there, then download */
    ftq_buffer tmp;
    st = ftq_buffer_alloc(ctx, FTQ_MEM_WORKSPACE, n * sizeof(float), "fp32 copy", &tmp);
    if (st == FTQ_OK) {
      st = ctx->be->convert(ctx->be_ctx, tmp.ptr, FTQ_DTYPE_F32, src, dt, n);
      if (st == FTQ_OK) st = ctx->be->copy(ctx->be_ctx, h, tmp.ptr, n * sizeof(float), FTQ_COPY_D2H);
      ftq_buffer_free(ctx, &tmp);
    }
  } else {
    /* host memory: the CPU backend converts it in place */
    st = ftq_backend_cpu()->convert(NULL, h, FTQ_DTYPE_F32, src, dt, n);
  }
  if (st != FTQ_OK) {
    free(h);
    return st;
  }
  *out = h;
  return FTQ_OK;
}

ftq_status ftq_quantizer_error_stats(ftq_quantizer *q, const void *src, ftq_float_type type,
                                     ftq_memory_location where, int ndim, const int64_t *shape, double *stats,
                                     size_t n_stats) {
  size_t n;
  FTQ_TRY(check_args(q, src, type, where, ndim, shape, "ftq_quantizer_error_stats", &n));
  FTQ_CHECK_ARG(stats || !n_stats, "ftq_quantizer_error_stats: stats is NULL");
  ftq_context *ctx = q->ctx;
  size_t bytes = n * ftq_dtype_size(dtype_of(type));
  staged s;
  FTQ_TRY(stage(ctx, src, bytes, where, 1, "statistics input", &s));
  ftq_qtensor qt;
  float *x = NULL, *y = NULL;
  ftq_buffer deq = {0};
  ftq_status st = quantize_device(q, s.ptr, type, ndim, shape, FTQ_MEM_WORKSPACE, &qt);
  if (st == FTQ_OK) {
    st = ftq_buffer_alloc(ctx, FTQ_MEM_WORKSPACE, n * sizeof(float), "dequantized values", &deq);
    if (st == FTQ_OK) st = ftq_qtensor_dequantize(&qt, FTQ_DTYPE_F32, deq.ptr);
    if (st == FTQ_OK) st = host_f32(ctx, s.ptr, dtype_of(type), n, FTQ_DEVICE, &x);
    if (st == FTQ_OK) st = host_f32(ctx, deq.ptr, FTQ_DTYPE_F32, n, FTQ_DEVICE, &y);
    if (st == FTQ_OK) st = ftq_quant_error_stats(x, y, n, qt.clipped, stats, n_stats);
    ftq_buffer_free(ctx, &deq);
    ftq_qtensor_release(&qt);
  }
  free(x);
  free(y);
  unstage(ctx, &s, NULL, 0, 0);
  return st;
}

ftq_status ftq_quantizer_observe(ftq_quantizer *q, const void *src, ftq_float_type type, ftq_memory_location where,
                                 size_t count) {
  FTQ_CHECK_ARG(q && (src || !count), "ftq_quantizer_observe: NULL argument");
  FTQ_CHECK_ARG(valid_type(type), "ftq_quantizer_observe: element type %d", (int)type);
  FTQ_CHECK_ARG(where == FTQ_HOST || where == FTQ_DEVICE, "ftq_quantizer_observe: memory location %d", (int)where);
  if (!count) return FTQ_OK;
  float *h;
  FTQ_TRY(host_f32(q->ctx, src, dtype_of(type), count, where, &h));
  ftq_observer_add(&q->obs, h, count);
  free(h);
  /* an asymmetric per-tensor quantizer quantizes with what it has seen */
  q->cfg.calibrated = ftq_observer_params(&q->obs, &q->cfg.scale, &q->cfg.zero_point) == FTQ_OK;
  ftq_clear_error();
  return FTQ_OK;
}

ftq_status ftq_quantizer_calibration(const ftq_quantizer *q, float *scale, int32_t *zero_point) {
  FTQ_CHECK_ARG(q, "ftq_quantizer_calibration: quantizer is NULL");
  return ftq_observer_params(&q->obs, scale, zero_point);
}

void ftq_quantizer_reset_calibration(ftq_quantizer *q) {
  if (!q) return;
  ftq_observer_reset(&q->obs);
  q->cfg.calibrated = 0;
}

/* ---- the public quantized tensor ------------------------------------------------ */

void ftq_qtensor_destroy(ftq_qtensor *t) {
  if (!t) return;
  ftq_qtensor_release(t);
  free(t);
}

int ftq_qtensor_scheme(const ftq_qtensor *t) { return t ? (int)t->scheme : -1; }

int ftq_qtensor_shape(const ftq_qtensor *t, int64_t *shape, int max_dims) {
  if (!t) return -1;
  for (int i = 0; shape && i < t->ndim && i < max_dims; i++) shape[i] = t->shape[i];
  return t->ndim;
}

int64_t ftq_qtensor_clipped(const ftq_qtensor *t) { return t ? t->clipped : -1; }

ftq_status ftq_qtensor_dequantize_into(const ftq_qtensor *t, void *dst, ftq_float_type type,
                                       ftq_memory_location where, size_t count) {
  FTQ_CHECK_ARG(t && dst, "ftq_qtensor_dequantize_into: NULL argument");
  FTQ_CHECK_ARG(valid_type(type), "ftq_qtensor_dequantize_into: element type %d", (int)type);
  FTQ_CHECK_ARG(where == FTQ_HOST || where == FTQ_DEVICE, "ftq_qtensor_dequantize_into: memory location %d",
                (int)where);
  size_t n = (size_t)ftq_qtensor_numel(t);
  FTQ_CHECK_ARG(count >= n, "ftq_qtensor_dequantize_into: buffer holds %zu elements, the tensor has %zu", count, n);
  size_t bytes = n * ftq_dtype_size(dtype_of(type));
  staged s;
  FTQ_TRY(stage(t->ctx, dst, bytes, where, 0, "dequantized values", &s));
  ftq_status st = ftq_qtensor_dequantize(t, dtype_of(type), s.ptr);
  ftq_status st2 = unstage(t->ctx, &s, dst, bytes, st == FTQ_OK);
  return st != FTQ_OK ? st : st2;
}

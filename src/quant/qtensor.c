/* Quantized tensors: layout and allocation, quantize / dequantize dispatch
 * to the backend, sizes, and the public ftq_qtensor handle. */
#include "quant/qtensor.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "quant/codebook.h"
#include "quant/quant_internal.h"

ftq_status ftq_qtensor_init_plain(ftq_context *ctx, ftq_dtype dtype, int64_t rows, int64_t cols, const void *host,
                                  const char *what, ftq_qtensor *out) {
  memset(out, 0, sizeof *out);
  if (dtype != FTQ_DTYPE_F32 && dtype != FTQ_DTYPE_F16 && dtype != FTQ_DTYPE_BF16)
    return ftq_error(FTQ_ERR_UNSUPPORTED, "%s: weights must be f32, f16 or bf16 (got %s)", what, ftq_dtype_name(dtype));
  int64_t shape[2] = {rows, cols};
  FTQ_TRY(ftq_tensor_alloc(ctx, FTQ_MEM_WEIGHTS, dtype, 2, shape, what, &out->plain));
  ftq_status st = host ? ftq_tensor_upload(ctx, &out->plain, host) : FTQ_OK;
  if (st != FTQ_OK) {
    ftq_tensor_free(ctx, &out->plain);
    return st;
  }
  out->ctx = ctx;
  out->scheme = FTQ_QSCHEME_NONE;
  out->ndim = 2;
  out->shape[0] = rows;
  out->shape[1] = cols;
  out->orig_dtype = dtype;
  return FTQ_OK;
}

void ftq_qtensor_release(ftq_qtensor *q) {
  if (!q || !q->ctx) return;
  ftq_context *ctx = q->ctx;
  ftq_tensor *owned[] = {&q->plain, &q->packed, &q->absmax, &q->nested_absmax, &q->nested_code,
                         &q->q8, &q->scales, &q->zero_points};
  for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++) ftq_tensor_free(ctx, owned[i]);
  ftq_buffer_free(ctx, &q->storage);
  memset(q, 0, sizeof *q);
}

size_t ftq_qtensor_bytes(const ftq_qtensor *q) {
  if (!q) return 0;
  const ftq_tensor *owned[] = {&q->plain, &q->packed, &q->absmax, &q->nested_absmax, &q->nested_code,
                               &q->q8, &q->scales, &q->zero_points};
  size_t total = q->storage.bytes;
  for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++) total += owned[i]->buf.bytes;
  return total;
}

void ftq_int8_geometry(int ndim, const int64_t *shape, ftq_qgranularity gran, int64_t group_size, int64_t *rows,
                       int64_t *cols, int64_t *group) {
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) n *= shape[i];
  int64_t c = ndim ? shape[ndim - 1] : 0;
  if (gran == FTQ_QGRAN_TENSOR) {
    *rows = 1;
    *cols = n;
    *group = n;
  } else {
    *rows = c ? n / c : 0;
    *cols = c;
    *group = gran == FTQ_QGRAN_CHANNEL ? c : group_size;
  }
  if (*group < 1) *group = 1;
}

/* ---- layout --------------------------------------------------------------- */

/* The parts of a quantized tensor in its one allocation. */
typedef struct qlayout {
  size_t off[4], bytes[4]; /* 4-bit: packed, absmax, absmax2, code2; INT8: q, scales, zero points */
  size_t total;
} qlayout;

static ftq_status layout_of(const ftq_qconfig *cfg, int64_t n, int ndim, const int64_t *shape, qlayout *l) {
  memset(l, 0, sizeof *l);
  if (cfg->scheme == FTQ_QSCHEME_NF4 || cfg->scheme == FTQ_QSCHEME_FP4) {
    int64_t nb = ftq_ceil_div64(n, cfg->blocksize);
    l->bytes[0] = (size_t)((n + 1) / 2);
    l->bytes[1] = (size_t)nb * (cfg->nested ? 1u : 4u);
    if (cfg->nested) {
      l->bytes[2] = (size_t)ftq_ceil_div64(nb, FTQ_NESTED_BLOCKSIZE) * 4u;
      l->bytes[3] = 256u * 4u;
    }
  } else if (cfg->scheme == FTQ_QSCHEME_INT8_SYM || cfg->scheme == FTQ_QSCHEME_INT8_ASYM) {
    int64_t rows, cols, group;
    ftq_int8_geometry(ndim, shape, cfg->granularity, cfg->group_size, &rows, &cols, &group);
    size_t ng = (size_t)(rows * ftq_ceil_div64(cols, group));
    l->bytes[0] = (size_t)n;
    l->bytes[1] = ng * 4u;
    l->bytes[2] = cfg->scheme == FTQ_QSCHEME_INT8_ASYM ? ng * 4u : 0;
  } else {
    return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "quantization scheme %d has no quantized layout", (int)cfg->scheme);
  }
  for (int i = 0; i < 4; i++) {
    l->off[i] = l->total;
    l->total += ftq_arena_round(l->bytes[i]);
  }
  return FTQ_OK;
}

static ftq_status check_shape(int ndim, const int64_t *shape, const char *what, int64_t *n) {
  if (ndim < 1 || ndim > FTQ_MAX_DIMS || !shape)
    return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "%s: %d dimensions (1..%d allowed)", what, ndim, FTQ_MAX_DIMS);
  int64_t total = 1;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 1 || total > INT64_MAX / 8 / shape[i])
      return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "%s: invalid size %lld in dimension %d", what, (long long)shape[i], i);
    total *= shape[i];
  }
  *n = total;
  return FTQ_OK;
}

ftq_status ftq_qconfig_bytes(const ftq_qconfig *cfg, int ndim, const int64_t *shape, size_t *bytes) {
  int64_t n;
  FTQ_TRY(check_shape(ndim, shape, "quantized size", &n));
  qlayout l;
  FTQ_TRY(layout_of(cfg, n, ndim, shape, &l));
  *bytes = l.total;
  return FTQ_OK;
}

static ftq_tensor view1(void *base, size_t off, ftq_dtype dt, int64_t count) {
  return ftq_tensor_view((char *)base + off, dt, 1, &count);
}

ftq_status ftq_qtensor_alloc(ftq_context *ctx, const ftq_qconfig *cfg, int ndim, const int64_t *shape,
                             ftq_dtype orig_dtype, ftq_memory_category cat, const char *what, ftq_qtensor *out) {
  memset(out, 0, sizeof *out);
  int64_t n;
  FTQ_TRY(check_shape(ndim, shape, what, &n));
  qlayout l;
  FTQ_TRY(layout_of(cfg, n, ndim, shape, &l));
  FTQ_TRY(ftq_buffer_alloc(ctx, cat, l.total, what, &out->storage));
  void *base = out->storage.ptr;
  out->ctx = ctx;
  out->scheme = cfg->scheme;
  out->ndim = ndim;
  for (int i = 0; i < ndim; i++) out->shape[i] = shape[i];
  out->orig_dtype = orig_dtype;
  if (cfg->scheme == FTQ_QSCHEME_NF4 || cfg->scheme == FTQ_QSCHEME_FP4) {
    int64_t nb = ftq_ceil_div64(n, cfg->blocksize);
    out->blocksize = cfg->blocksize;
    out->nested = cfg->nested;
    out->packed = view1(base, l.off[0], FTQ_DTYPE_U8, (n + 1) / 2);
    out->absmax = view1(base, l.off[1], cfg->nested ? FTQ_DTYPE_U8 : FTQ_DTYPE_F32, nb);
    if (cfg->nested) {
      out->nested_blocksize = FTQ_NESTED_BLOCKSIZE;
      out->nested_absmax = view1(base, l.off[2], FTQ_DTYPE_F32, ftq_ceil_div64(nb, FTQ_NESTED_BLOCKSIZE));
      out->nested_code = view1(base, l.off[3], FTQ_DTYPE_F32, 256);
    }
  } else {
    int64_t rows, cols, group;
    ftq_int8_geometry(ndim, shape, cfg->granularity, cfg->group_size, &rows, &cols, &group);
    int64_t ng = rows * ftq_ceil_div64(cols, group);
    out->granularity = cfg->granularity;
    out->group_size = group;
    out->q8 = ftq_tensor_view((char *)base + l.off[0],
                              cfg->scheme == FTQ_QSCHEME_INT8_SYM ? FTQ_DTYPE_I8 : FTQ_DTYPE_U8, ndim, shape);
    out->scales = view1(base, l.off[1], FTQ_DTYPE_F32, ng);
    if (cfg->scheme == FTQ_QSCHEME_INT8_ASYM) out->zero_points = view1(base, l.off[2], FTQ_DTYPE_I32, ng);
  }
  return FTQ_OK;
}

/* ---- descriptors for the backend -------------------------------------------- */

void ftq_qtensor_q4_desc(const ftq_qtensor *q, ftq_q4_desc *d) {
  memset(d, 0, sizeof *d);
  d->scheme = (int)q->scheme;
  d->n = ftq_qtensor_numel(q);
  d->blocksize = q->blocksize;
  d->packed = q->packed.data;
  if (q->nested) {
    d->nested = 1;
    d->qabsmax = q->absmax.data;
    d->absmax2 = q->nested_absmax.data;
    d->code2 = q->nested_code.data;
    d->blocksize2 = q->nested_blocksize;
    d->offset = q->nested_offset;
  } else {
    d->absmax = q->absmax.data;
  }
}

void ftq_qtensor_int8_desc(const ftq_qtensor *q, ftq_int8_desc *d) {
  memset(d, 0, sizeof *d);
  int64_t group;
  ftq_int8_geometry(q->ndim, q->shape, q->granularity, q->group_size, &d->rows, &d->cols, &group);
  d->group = q->group_size;
  d->asymmetric = q->scheme == FTQ_QSCHEME_INT8_ASYM;
  d->q = q->q8.data;
  d->scales = q->scales.data;
  d->zero_points = q->zero_points.data;
}

/* ---- quantize / dequantize ---------------------------------------------------- */

static int is_io_float(ftq_dtype t) { return t == FTQ_DTYPE_F32 || t == FTQ_DTYPE_F16 || t == FTQ_DTYPE_BF16; }

static ftq_status quantize_4bit(ftq_context *ctx, const void *src, ftq_dtype dtype, ftq_qtensor *q) {
  ftq_q4_desc d;
  ftq_qtensor_q4_desc(q, &d);
  return ctx->be->quantize_4bit(ctx->be_ctx, &d, src, dtype, ftq_dynamic_map, &q->nested_offset);
}

static ftq_status quantize_int8(ftq_context *ctx, const ftq_qconfig *cfg, const void *src, ftq_dtype dtype,
                                ftq_qtensor *q) {
  ftq_int8_desc d;
  ftq_qtensor_int8_desc(q, &d);
  if (cfg->calibrated && cfg->scheme == FTQ_QSCHEME_INT8_ASYM && cfg->granularity == FTQ_QGRAN_TENSOR) {
    FTQ_TRY(ctx->be->copy(ctx->be_ctx, d.scales, &cfg->scale, sizeof(float), FTQ_COPY_H2D));
    FTQ_TRY(ctx->be->copy(ctx->be_ctx, d.zero_points, &cfg->zero_point, sizeof(int32_t), FTQ_COPY_H2D));
    d.params_given = 1;
  }
  return ctx->be->quantize_int8(ctx->be_ctx, &d, src, dtype, &q->clipped);
}

ftq_status ftq_qconfig_check(const ftq_qconfig *cfg, const char *what) {
  switch (cfg->scheme) {
    case FTQ_QSCHEME_NF4:
    case FTQ_QSCHEME_FP4:
      if (cfg->blocksize < 32 || cfg->blocksize > 4096 || (cfg->blocksize & (cfg->blocksize - 1)))
        return ftq_error(FTQ_ERR_OPTION_RANGE, "%s: quant_blocksize %lld must be a power of two in 32..4096", what,
                         (long long)cfg->blocksize);
      return FTQ_OK;
    case FTQ_QSCHEME_INT8_SYM:
    case FTQ_QSCHEME_INT8_ASYM:
      if (cfg->granularity < FTQ_QGRAN_TENSOR || cfg->granularity > FTQ_QGRAN_GROUP)
        return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "%s: INT8 granularity %d", what, (int)cfg->granularity);
      if (cfg->granularity == FTQ_QGRAN_GROUP && cfg->group_size < 1)
        return ftq_error(FTQ_ERR_OPTION_RANGE, "%s: int8_group_size %lld must be >= 1", what, (long long)cfg->group_size);
      return FTQ_OK;
    case FTQ_QSCHEME_NONE: return FTQ_OK;
  }
  return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "%s: quantization scheme %d", what, (int)cfg->scheme);
}

ftq_status ftq_qtensor_quantize(ftq_context *ctx, const ftq_qconfig *cfg, const void *src, ftq_dtype dtype, int ndim,
                                const int64_t *shape, ftq_memory_category cat, const char *what, ftq_qtensor *out) {
  memset(out, 0, sizeof *out);
  if (!is_io_float(dtype))
    return ftq_error(FTQ_ERR_UNSUPPORTED, "%s: cannot quantize %s values (f32, f16 or bf16 expected)", what,
                     ftq_dtype_name(dtype));
  FTQ_TRY(ftq_qconfig_check(cfg, what));
  if (cfg->scheme == FTQ_QSCHEME_NONE) {
    int64_t n;
    FTQ_TRY(check_shape(ndim, shape, what, &n));
    FTQ_TRY(ftq_tensor_alloc(ctx, cat, dtype, ndim, shape, what, &out->plain));
    out->ctx = ctx;
    out->ndim = ndim;
    for (int i = 0; i < ndim; i++) out->shape[i] = shape[i];
    out->orig_dtype = dtype;
    ftq_status st = ctx->be->copy(ctx->be_ctx, out->plain.data, src, ftq_tensor_bytes(&out->plain), FTQ_COPY_D2D);
    if (st != FTQ_OK) ftq_qtensor_release(out);
    return st;
  }
  FTQ_TRY(ftq_qtensor_alloc(ctx, cfg, ndim, shape, dtype, cat, what, out));
  ftq_status st = cfg->scheme == FTQ_QSCHEME_NF4 || cfg->scheme == FTQ_QSCHEME_FP4
                      ? quantize_4bit(ctx, src, dtype, out)
                      : quantize_int8(ctx, cfg, src, dtype, out);
  if (st != FTQ_OK) {
    ftq_qtensor_release(out);
    return ftq_error_context(st, "quantizing %s", what);
  }
  return FTQ_OK;
}

ftq_status ftq_qtensor_quantize_host(ftq_context *ctx, const ftq_options *opts, const void *host, ftq_dtype dtype,
                                     int64_t rows, int64_t cols, const char *what, ftq_qtensor *out) {
  memset(out, 0, sizeof *out);
  ftq_qconfig cfg;
  FTQ_TRY(ftq_qconfig_for_load(opts, &cfg));
  if (cfg.scheme == FTQ_QSCHEME_NONE) return ftq_qtensor_init_plain(ctx, dtype, rows, cols, host, what, out);
  int64_t shape[2] = {rows, cols};
  if (ctx->type == FTQ_DEVICE_CPU)  /* device memory is host memory */
    return ftq_qtensor_quantize(ctx, &cfg, host, dtype, 2, shape, FTQ_MEM_WEIGHTS, what, out);
  if (!is_io_float(dtype))
    return ftq_error(FTQ_ERR_UNSUPPORTED, "%s: cannot quantize %s values", what, ftq_dtype_name(dtype));
  size_t bytes;
  if (rows < 1 || cols < 1 || !ftq_mul_size((size_t)rows, (size_t)cols, &bytes) ||
      !ftq_mul_size(bytes, ftq_dtype_size(dtype), &bytes))
    return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "%s: invalid shape [%lld, %lld]", what, (long long)rows, (long long)cols);
  ftq_buffer staging;
  FTQ_TRY(ftq_buffer_alloc(ctx, FTQ_MEM_WORKSPACE, bytes, what, &staging));
  ftq_status st = ctx->be->copy(ctx->be_ctx, staging.ptr, host, bytes, FTQ_COPY_H2D);
  if (st == FTQ_OK) st = ftq_qtensor_quantize(ctx, &cfg, staging.ptr, dtype, 2, shape, FTQ_MEM_WEIGHTS, what, out);
  ftq_buffer_free(ctx, &staging);
  return st;
}

ftq_status ftq_qtensor_dequantize(const ftq_qtensor *q, ftq_dtype dst_dtype, void *dst) {
  const ftq_backend *be = q->ctx->be;
  switch (q->scheme) {
    case FTQ_QSCHEME_NONE:
      return be->convert(q->ctx->be_ctx, dst, dst_dtype, q->plain.data, q->plain.dtype,
                         (size_t)ftq_tensor_numel(&q->plain));
    case FTQ_QSCHEME_NF4:
    case FTQ_QSCHEME_FP4: {
      ftq_q4_desc d;
      ftq_qtensor_q4_desc(q, &d);
      return be->dequantize_4bit(q->ctx->be_ctx, &d, dst, dst_dtype);
    }
    case FTQ_QSCHEME_INT8_SYM:
    case FTQ_QSCHEME_INT8_ASYM: {
      ftq_int8_desc d;
      ftq_qtensor_int8_desc(q, &d);
      return be->dequantize_int8(q->ctx->be_ctx, &d, dst, dst_dtype);
    }
  }
  return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "dequantize: quantization scheme %d", (int)q->scheme);
}

ftq_status ftq_qtensor_clip_mask(const ftq_qtensor *q, const void *src, ftq_dtype dtype, uint8_t *mask) {
  if (q->scheme != FTQ_QSCHEME_INT8_SYM && q->scheme != FTQ_QSCHEME_INT8_ASYM)
    return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "clip mask: only INT8 clips (scheme %d)", (int)q->scheme);
  ftq_context *ctx = q->ctx;
  ftq_int8_desc d;
  ftq_qtensor_int8_desc(q, &d);
  ftq_buffer codes;
  FTQ_TRY(ftq_buffer_alloc(ctx, FTQ_MEM_WORKSPACE, (size_t)ftq_qtensor_numel(q), "INT8 codes for the clip mask", &codes));
  d.q = codes.ptr;
  d.params_given = 1;
  d.mask = mask;
  int64_t clipped;
  ftq_status st = ctx->be->quantize_int8(ctx->be_ctx, &d, src, dtype, &clipped);
  ftq_buffer_free(ctx, &codes);
  return st;
}

/* Quantized tensors: lifetime, size, and dequantization dispatch. */
#include "quant/qtensor.h"

#include <string.h>

#include "core/error.h"

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
  memset(q, 0, sizeof *q);
}

size_t ftq_qtensor_bytes(const ftq_qtensor *q) {
  const ftq_tensor *owned[] = {&q->plain, &q->packed, &q->absmax, &q->nested_absmax, &q->nested_code,
                               &q->q8, &q->scales, &q->zero_points};
  size_t total = 0;
  for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++) total += owned[i]->buf.bytes;
  return total;
}

ftq_status ftq_qtensor_dequantize(const ftq_qtensor *q, ftq_dtype dst_dtype, void *dst) {
  switch (q->scheme) {
    case FTQ_QSCHEME_NONE:
      return q->ctx->be->convert(q->ctx->be_ctx, dst, dst_dtype, q->plain.data, q->plain.dtype,
                                 (size_t)ftq_tensor_numel(&q->plain));
    default:
      return ftq_error(FTQ_ERR_UNSUPPORTED, "dequantization of scheme %d is not implemented yet", (int)q->scheme);
  }
}

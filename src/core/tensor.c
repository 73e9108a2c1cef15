/* Internal tensors on a context's device. */
#include "core/tensor.h"

#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"

ftq_status ftq_tensor_alloc(ftq_context *ctx, ftq_memory_category cat, ftq_dtype dtype, int ndim,
                            const int64_t *shape, const char *what, ftq_tensor *out) {
  memset(out, 0, sizeof *out);
  if (ndim < 1 || ndim > FTQ_MAX_DIMS)
    return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "tensor %s: %d dimensions (1..%d allowed)", what, ndim, FTQ_MAX_DIMS);
  size_t bytes = ftq_dtype_size(dtype);
  if (!bytes) return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "tensor %s: invalid dtype %d", what, (int)dtype);
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0 || !ftq_mul_size(bytes, (size_t)shape[i], &bytes))
      return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "tensor %s: invalid or too large shape", what);
    out->shape[i] = shape[i];
  }
  out->ndim = ndim;
  out->dtype = dtype;
  FTQ_TRY(ftq_buffer_alloc(ctx, cat, bytes, what, &out->buf));
  out->data = out->buf.ptr;
  return FTQ_OK;
}

void ftq_tensor_free(ftq_context *ctx, ftq_tensor *t) {
  if (!t) return;
  ftq_buffer_free(ctx, &t->buf);
  memset(t, 0, sizeof *t);
}

ftq_tensor ftq_tensor_view(void *data, ftq_dtype dtype, int ndim, const int64_t *shape) {
  ftq_tensor t;
  memset(&t, 0, sizeof t);
  t.data = data;
  t.dtype = dtype;
  t.ndim = ndim < 0 ? 0 : ndim > FTQ_MAX_DIMS ? FTQ_MAX_DIMS : ndim;
  for (int i = 0; i < t.ndim; i++) t.shape[i] = shape[i];
  return t;
}

ftq_status ftq_tensor_upload(ftq_context *ctx, ftq_tensor *t, const void *host) {
  return ctx->be->copy(ctx->be_ctx, t->data, host, ftq_tensor_bytes(t), FTQ_COPY_H2D);
}

ftq_status ftq_tensor_download(ftq_context *ctx, const ftq_tensor *t, void *host) {
  return ctx->be->copy(ctx->be_ctx, host, t->data, ftq_tensor_bytes(t), FTQ_COPY_D2H);
}

const char *ftq_tensor_describe(const ftq_tensor *t, char *buf, size_t len) {
  size_t w = (size_t)snprintf(buf, len, "[");
  for (int i = 0; i < t->ndim && w < len; i++)
    w += (size_t)snprintf(buf + w, len - w, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
  if (w < len) snprintf(buf + w, len - w, "] %s", ftq_dtype_name(t->dtype));
  return buf;
}

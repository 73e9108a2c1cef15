/* Internal tensors: a device buffer with a dtype and a row-major shape.
 * Shapes are written outermost first, as PyTorch prints them
 * ([out_features, in_features] for a linear weight). */
#ifndef FTQ_CORE_TENSOR_H
#define FTQ_CORE_TENSOR_H

#include <stdint.h>

#include "core/context.h"
#include "core/dtype.h"

#define FTQ_MAX_DIMS 4

typedef struct ftq_tensor {
  ftq_buffer buf; /* owning allocation; buf.ptr NULL for a view */
  void *data;     /* device pointer (host memory on the CPU backend) */
  ftq_dtype dtype;
  int ndim;
  int64_t shape[FTQ_MAX_DIMS];
} ftq_tensor;

static inline int64_t ftq_tensor_numel(const ftq_tensor *t) {
  int64_t n = 1;
  for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
  return t->ndim ? n : 0;
}

static inline size_t ftq_tensor_bytes(const ftq_tensor *t) {
  return (size_t)ftq_tensor_numel(t) * ftq_dtype_size(t->dtype);
}

/* Allocates an uninitialised tensor on the context's device. */
ftq_status ftq_tensor_alloc(ftq_context *ctx, ftq_memory_category cat, ftq_dtype dtype, int ndim,
                            const int64_t *shape, const char *what, ftq_tensor *out);
/* Frees an owning tensor (views and zeroed structs are left alone). */
void ftq_tensor_free(ftq_context *ctx, ftq_tensor *t);
/* A non-owning view of `data` with the given shape. */
ftq_tensor ftq_tensor_view(void *data, ftq_dtype dtype, int ndim, const int64_t *shape);
/* Host <-> device copies of the whole tensor. */
ftq_status ftq_tensor_upload(ftq_context *ctx, ftq_tensor *t, const void *host);
ftq_status ftq_tensor_download(ftq_context *ctx, const ftq_tensor *t, void *host);
/* "[4096, 11008] bf16" into buf (returns buf). */
const char *ftq_tensor_describe(const ftq_tensor *t, char *buf, size_t len);

#endif /* FTQ_CORE_TENSOR_H */

/* Quantized tensors: how a (possibly) quantized weight is laid out in
 * device memory. Linear weights of the model are always held as an
 * ftq_qtensor; scheme NONE means "not quantized" (the weight in `plain`),
 * so the graph has one code path for every base precision.
 *
 * Layouts follow bitsandbytes exactly for NF4/FP4 (qlora-spec.md §1-§2):
 * the weight [out, in] is flattened row-major; block b covers flat elements
 * [b*blocksize, (b+1)*blocksize); two 4-bit codes per byte, the even
 * element in the high nibble. This struct is shared with the CUDA module
 * (C layout, no pointers to host-only state in device code paths). */
#ifndef FTQ_QUANT_QTENSOR_H
#define FTQ_QUANT_QTENSOR_H

#include <stdint.h>

#include "core/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ftq_qscheme {
  FTQ_QSCHEME_NONE = 0,      /* unquantized: `plain` (f32, f16 or bf16) */
  FTQ_QSCHEME_NF4 = 1,       /* 4-bit NormalFloat, blockwise absmax */
  FTQ_QSCHEME_FP4 = 2,       /* 4-bit float (bnb fp4), blockwise absmax */
  FTQ_QSCHEME_INT8_SYM = 3,  /* int8 in [-127, 127], scale = absmax / 127 */
  FTQ_QSCHEME_INT8_ASYM = 4  /* uint8 with a zero point from min/max */
} ftq_qscheme;

typedef enum ftq_qgranularity {
  FTQ_QGRAN_TENSOR = 0,  /* one scale for the tensor */
  FTQ_QGRAN_CHANNEL = 1, /* one per output channel (row) */
  FTQ_QGRAN_GROUP = 2    /* one per `group_size` consecutive elements of a row */
} ftq_qgranularity;

typedef struct ftq_qtensor {
  ftq_context *ctx;      /* device the buffers live on */
  ftq_qscheme scheme;
  int ndim;
  int64_t shape[FTQ_MAX_DIMS]; /* logical shape, e.g. [out_features, in_features] */
  ftq_dtype orig_dtype;  /* dtype it was quantized from; dequantization's default output */

  /* NONE */
  ftq_tensor plain;

  /* NF4 / FP4 */
  int64_t blocksize;     /* 32..4096, power of two */
  ftq_tensor packed;     /* u8 [(numel + 1) / 2] */
  ftq_tensor absmax;     /* f32 [n_blocks]; u8 codes [n_blocks] when nested */
  int nested;            /* double quantization */
  float nested_offset;   /* mean of the fp32 absmax, added back after decoding */
  int64_t nested_blocksize; /* 256 */
  ftq_tensor nested_absmax; /* f32 [ceil(n_blocks / nested_blocksize)] */
  ftq_tensor nested_code;   /* f32 [256]: the dynamic map used (from a checkpoint when loaded) */

  /* INT8 */
  ftq_qgranularity granularity;
  int64_t group_size;
  ftq_tensor q8;         /* i8 (SYM) or u8 (ASYM), logical shape */
  ftq_tensor scales;     /* f32 [n_groups] */
  ftq_tensor zero_points;/* i32 [n_groups] (ASYM) */
  int64_t clipped;       /* values clipped when quantizing */
} ftq_qtensor;

static inline int64_t ftq_qtensor_numel(const ftq_qtensor *q) {
  int64_t n = 1;
  for (int i = 0; i < q->ndim; i++) n *= q->shape[i];
  return q->ndim ? n : 0;
}

/* A NONE-scheme qtensor owning a copy of `host` (dtype f32/f16/bf16, shape
 * [rows, cols]) on ctx's device, accounted as weights. */
ftq_status ftq_qtensor_init_plain(ftq_context *ctx, ftq_dtype dtype, int64_t rows, int64_t cols, const void *host,
                                  const char *what, ftq_qtensor *out);

/* Frees every buffer the qtensor owns and zeroes it. */
void ftq_qtensor_release(ftq_qtensor *q);

/* Writes the dequantized tensor (row-major, logical shape) to `dst`, a
 * device buffer of numel elements of `dst_dtype` (f32, f16 or bf16), on the
 * qtensor's context. Every scheme; NONE converts. */
ftq_status ftq_qtensor_dequantize(const ftq_qtensor *q, ftq_dtype dst_dtype, void *dst);

/* Device bytes the qtensor holds (all its buffers). */
size_t ftq_qtensor_bytes(const ftq_qtensor *q);

#ifdef __cplusplus
}
#endif

#endif /* FTQ_QUANT_QTENSOR_H */

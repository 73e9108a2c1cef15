/* Quantized tensors: how a (possibly) quantized weight is laid out in
 * device memory. Linear weights of the model are always held as an
 * ftq_qtensor; scheme NONE means "not quantized" (the weight in `plain`),
 * so the graph has one code path for every base precision. The public
 * handle ftq_qtensor (ftq_quantizer.h) is this struct on the heap.
 *
 * Layouts follow bitsandbytes exactly for NF4/FP4 (qlora-spec §1-§2):
 * the weight [out, in] is flattened row-major; block b covers flat elements
 * [b*blocksize, (b+1)*blocksize); two 4-bit codes per byte, the even
 * element in the high nibble. INT8 sees the tensor as rows x last
 * dimension (docs/quantization.md). */
#ifndef FTQ_QUANT_QTENSOR_H
#define FTQ_QUANT_QTENSOR_H

#include <stdint.h>

#include "core/tensor.h"
#include "libftq/ftq_options.h"
#include "libftq/ftq_quantizer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* bitsandbytes' nested (double-quant) block size. */
#define FTQ_NESTED_BLOCKSIZE 256

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
  int64_t group_size;    /* elements per scale along a row (cols for CHANNEL, numel for TENSOR) */
  ftq_tensor q8;         /* i8 (SYM) or u8 (ASYM), logical shape */
  ftq_tensor scales;     /* f32 [n_groups] */
  ftq_tensor zero_points;/* i32 [n_groups] (ASYM) */
  int64_t clipped;       /* values clipped when quantizing */

  /* One allocation holding every buffer above (they are views into it);
   * empty when the buffers own their memory (e.g. NONE). */
  ftq_buffer storage;
} ftq_qtensor;

static inline int64_t ftq_qtensor_numel(const ftq_qtensor *q) {
  int64_t n = 1;
  for (int i = 0; i < q->ndim; i++) n *= q->shape[i];
  return q->ndim ? n : 0;
}

/* What a quantization does: the settings an ftq_quantizer holds. */
typedef struct ftq_qconfig {
  ftq_qscheme scheme;
  int64_t blocksize;            /* NF4 / FP4 */
  int nested;                   /* NF4 / FP4 double quantization */
  ftq_qgranularity granularity; /* INT8 */
  int64_t group_size;           /* INT8 GROUP */
  /* Static parameters from calibration, used by INT8_ASYM per tensor. */
  int calibrated;
  float scale;
  int32_t zero_point;
} ftq_qconfig;

/* The stand-alone quantizer's settings: INT8 when `load_in_8bit`, else
 * 4-bit (bnb_4bit_quant_type, quant_blocksize, bnb_4bit_use_double_quant). */
ftq_status ftq_qconfig_from_options(const ftq_options *opts, ftq_qconfig *cfg);

/* The model loader's settings: NONE unless `load_in_4bit` / `load_in_8bit`. */
ftq_status ftq_qconfig_for_load(const ftq_options *opts, ftq_qconfig *cfg);

/* Device bytes a tensor of this shape takes quantized with cfg. */
ftq_status ftq_qconfig_bytes(const ftq_qconfig *cfg, int ndim, const int64_t *shape, size_t *bytes);

/* Quantizes `src` (device memory of ctx; f32/f16/bf16; row-major `shape`)
 * into `out`, whose buffers are accounted under `cat`. `what` names the
 * tensor in errors. On error `out` is left zeroed. */
ftq_status ftq_qtensor_quantize(ftq_context *ctx, const ftq_qconfig *cfg, const void *src, ftq_dtype dtype, int ndim,
                                const int64_t *shape, ftq_memory_category cat, const char *what, ftq_qtensor *out);

/* The model loader's entry point: quantizes a [rows, cols] host weight as
 * the options say (ftq_qconfig_for_load; NONE keeps a plain copy) on ctx's
 * device, uploading the source once, accounted as weights. */
ftq_status ftq_qtensor_quantize_host(ftq_context *ctx, const ftq_options *opts, const void *host, ftq_dtype dtype,
                                     int64_t rows, int64_t cols, const char *what, ftq_qtensor *out);

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

/* The clip mask of the INT8 quantization of `src` with q's parameters
 * (1 = kept): the straight-through gradient's mask. `mask` is a device
 * buffer of numel bytes. Not for NF4 / FP4 (nothing clips there). */
ftq_status ftq_qtensor_clip_mask(const ftq_qtensor *q, const void *src, ftq_dtype dtype, uint8_t *mask);

/* Device bytes the qtensor holds (all its buffers): ftq_qtensor_bytes()
 * of ftq_quantizer.h. */

/* Number of 4-bit blocks / INT8 groups. */
static inline int64_t ftq_ceil_div64(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* The INT8 view of a shape: rows x cols (last dimension), and elements per
 * group for the granularity. */
void ftq_int8_geometry(int ndim, const int64_t *shape, ftq_qgranularity gran, int64_t group_size, int64_t *rows,
                       int64_t *cols, int64_t *group);

#ifdef __cplusplus
}
#endif

#endif /* FTQ_QUANT_QTENSOR_H */

/**
 * @file ftq_quantizer.h
 * @brief Quantization on its own: NF4 / FP4 (optionally double-quantized)
 * and INT8, on host or device buffers, like `bitsandbytes.functional`.
 *
 * An ::ftq_quantizer holds one scheme and its settings, read from options
 * (group "quant"; the names are transformers' BitsAndBytesConfig ones where
 * it has them):
 * - `load_in_8bit` true selects INT8 (`int8_scheme` symmetric | asymmetric,
 *   `int8_granularity` tensor | channel | group, `int8_group_size`);
 *   otherwise the quantizer is 4-bit: `bnb_4bit_quant_type` (nf4 | fp4),
 *   `quant_blocksize` (32..4096, a power of two; default 64) and
 *   `bnb_4bit_use_double_quant`.
 * - `observer` (minmax | percentile) and `observer_percentile` set how
 *   ftq_quantizer_observe() calibrates activations.
 *
 * NF4 and FP4 are bit-exact with bitsandbytes' CUDA kernels (codes, absmax,
 * packing, double-quantized absmax; see docs/quantization.md for the
 * handful of documented edge cases). INT8 follows the textbook definitions:
 * symmetric codes in [-127, 127] with scale = absmax / 127; asymmetric uint8
 * codes with scale = (max(x, 0) - min(x, 0)) / 255 and a zero point; round
 * half to even; values outside the code range are clipped and counted.
 *
 * Buffers are given as fp32, fp16 or bf16 with a shape, in host memory or in
 * device memory of the quantizer's context (for a CPU context both are host
 * memory). A quantized tensor (::ftq_qtensor) owns its data and metadata on
 * the context's device.
 */
#ifndef LIBFTQ_FTQ_QUANTIZER_H
#define LIBFTQ_FTQ_QUANTIZER_H

#include <stddef.h>
#include <stdint.h>

#include "ftq_context.h"
#include "ftq_export.h"
#include "ftq_options.h"
#include "ftq_status.h"

FTQ_EXTERN_C_BEGIN

/** A quantization scheme with its settings (opaque). */
typedef struct ftq_quantizer ftq_quantizer;

/** A quantized tensor: codes, scales and metadata on a device (opaque). */
typedef struct ftq_qtensor ftq_qtensor;

/** Quantization schemes. Values are pinned. */
typedef enum ftq_qscheme {
  FTQ_QSCHEME_NONE = 0,      /**< Not quantized (model weights kept as they are). */
  FTQ_QSCHEME_NF4 = 1,       /**< 4-bit NormalFloat, blockwise absmax (bitsandbytes "nf4"). */
  FTQ_QSCHEME_FP4 = 2,       /**< 4-bit float, blockwise absmax (bitsandbytes "fp4"). */
  FTQ_QSCHEME_INT8_SYM = 3,  /**< int8 in [-127, 127], scale = absmax / 127. */
  FTQ_QSCHEME_INT8_ASYM = 4  /**< uint8 with a zero point from min / max. */
} ftq_qscheme;

/** Which elements share an INT8 scale. Values are pinned. */
typedef enum ftq_qgranularity {
  FTQ_QGRAN_TENSOR = 0,  /**< One scale for the whole tensor. */
  FTQ_QGRAN_CHANNEL = 1, /**< One per output channel (row of a [out, in] weight). */
  FTQ_QGRAN_GROUP = 2    /**< One per `int8_group_size` consecutive elements of a row. */
} ftq_qgranularity;

/** Element type of a caller's buffer. Values are pinned. */
typedef enum ftq_float_type {
  FTQ_FLOAT32 = 0,  /**< IEEE binary32. */
  FTQ_FLOAT16 = 1,  /**< IEEE binary16. */
  FTQ_BFLOAT16 = 2  /**< bfloat16 (the top half of a binary32). */
} ftq_float_type;

/** Where a caller's buffer lives. Values are pinned. */
typedef enum ftq_memory_location {
  FTQ_HOST = 0,  /**< Host memory. */
  FTQ_DEVICE = 1 /**< Device memory of the context (host memory for a CPU context). */
} ftq_memory_location;

/** Error statistics of a quantization, as indices into the array filled by
 *  ftq_quantizer_error_stats(). Values are pinned; new ones are appended. */
typedef enum ftq_qstat {
  FTQ_QSTAT_MSE = 0,                 /**< Mean of (x - x')^2. */
  FTQ_QSTAT_SQNR_DB = 1,             /**< 10 log10(sum x^2 / sum (x - x')^2); +inf when exact. */
  FTQ_QSTAT_MAX_ABS_ERROR = 2,       /**< Largest |x - x'|. */
  FTQ_QSTAT_ZEROED_FRACTION = 3,     /**< Of the non-zero x, the fraction whose x' is 0 ("tiny values killed"). */
  FTQ_QSTAT_COLLAPSED_FRACTION = 4,  /**< Of the distinct x values, the fraction whose x' equals the x' of
                                          another distinct value ("collapse in quantization"). */
  FTQ_QSTAT_CLIPPED_FRACTION = 5     /**< Fraction of elements clipped to the code range (INT8). */
} ftq_qstat;

/**
 * Creates a quantizer on a context from options (group "quant").
 * @param ctx the context whose device quantizes and holds results
 * @param opts options, or NULL for the defaults (FP4, block size 64, no
 *        double quantization: bitsandbytes' own defaults)
 * @param out receives the quantizer; destroy it with ftq_quantizer_destroy()
 * @return FTQ_OK; FTQ_ERR_INVALID_ARGUMENT; FTQ_ERR_OPTION_RANGE naming the
 *         option for a block size that is not a power of two, or both
 *         `load_in_4bit` and `load_in_8bit` set; FTQ_ERR_OUT_OF_MEMORY
 */
FTQ_API ftq_status ftq_quantizer_create(ftq_context *ctx, const ftq_options *opts, ftq_quantizer **out);

/** Destroys a quantizer (quantized tensors made with it stay valid).
 *  @param q the quantizer; NULL is a no-op */
FTQ_API void ftq_quantizer_destroy(ftq_quantizer *q);

/** @param q the quantizer
 *  @return its ::ftq_qscheme, or -1 if @p q is NULL */
FTQ_API int ftq_quantizer_scheme(const ftq_quantizer *q);

/**
 * Reports the device bytes a tensor of this shape takes once quantized
 * (codes, scales and every other buffer the quantized tensor owns).
 * @param q the quantizer
 * @param ndim number of dimensions, 1..4
 * @param shape the sizes, outermost first
 * @param bytes receives the size
 * @return FTQ_OK or FTQ_ERR_INVALID_ARGUMENT
 */
FTQ_API ftq_status ftq_quantizer_quantized_bytes(const ftq_quantizer *q, int ndim, const int64_t *shape,
                                                 size_t *bytes);

/**
 * Quantizes a tensor. NF4/FP4 flatten it row-major into blocks; INT8 treats
 * it as rows x last-dimension (an output channel is a row).
 * @param q the quantizer
 * @param src the values
 * @param type element type of @p src
 * @param where where @p src lives
 * @param ndim number of dimensions, 1..4
 * @param shape the sizes, outermost first
 * @param out receives the quantized tensor; destroy it with ftq_qtensor_destroy()
 * @return FTQ_OK; FTQ_ERR_INVALID_ARGUMENT; FTQ_ERR_OUT_OF_MEMORY /
 *         FTQ_ERR_DEVICE_OUT_OF_MEMORY; FTQ_ERR_CUDA
 */
FTQ_API ftq_status ftq_quantizer_quantize(ftq_quantizer *q, const void *src, ftq_float_type type,
                                          ftq_memory_location where, int ndim, const int64_t *shape,
                                          ftq_qtensor **out);

/**
 * Fake quantization for quantization-aware training, forward pass:
 * dst = dequantize(quantize(src)), in the type of @p src.
 * @param q the quantizer
 * @param src the values
 * @param dst receives the quantized-then-dequantized values (may equal @p src)
 * @param type element type of @p src and @p dst
 * @param where where both buffers live
 * @param ndim number of dimensions, 1..4
 * @param shape the sizes, outermost first
 * @return as ftq_quantizer_quantize()
 */
FTQ_API ftq_status ftq_quantizer_fake_quantize(ftq_quantizer *q, const void *src, void *dst, ftq_float_type type,
                                               ftq_memory_location where, int ndim, const int64_t *shape);

/**
 * Fake quantization, backward pass: the straight-through estimator.
 * grad_in = grad_out where src was not clipped, 0 where it was (INT8 with
 * calibrated parameters; NF4 / FP4 never clip, so there grad_in = grad_out).
 * @param q the quantizer (with the settings of the forward pass)
 * @param src the forward pass's input
 * @param grad_out gradient with respect to the fake-quantized output
 * @param grad_in receives the gradient with respect to @p src (may equal @p grad_out)
 * @param type element type of all three buffers
 * @param where where the buffers live
 * @param ndim number of dimensions, 1..4
 * @param shape the sizes, outermost first
 * @return as ftq_quantizer_quantize()
 */
FTQ_API ftq_status ftq_quantizer_fake_quantize_backward(ftq_quantizer *q, const void *src, const void *grad_out,
                                                        void *grad_in, ftq_float_type type,
                                                        ftq_memory_location where, int ndim, const int64_t *shape);

/**
 * Quantizes a tensor and measures what quantization did to it (::ftq_qstat).
 * @param q the quantizer
 * @param src the values
 * @param type element type of @p src
 * @param where where @p src lives
 * @param ndim number of dimensions, 1..4
 * @param shape the sizes, outermost first
 * @param stats receives the statistics, indexed by ::ftq_qstat
 * @param n_stats entries in @p stats; entries past the statistics this
 *        library knows are set to NaN
 * @return as ftq_quantizer_quantize()
 */
FTQ_API ftq_status ftq_quantizer_error_stats(ftq_quantizer *q, const void *src, ftq_float_type type,
                                             ftq_memory_location where, int ndim, const int64_t *shape,
                                             double *stats, size_t n_stats);

/**
 * Post-training calibration: adds a batch of activations to the
 * quantizer's observer (min / max, and a histogram for the `percentile`
 * observer). Batches may have any size; the result does not depend on
 * their order.
 * @param q the quantizer
 * @param src the activations
 * @param type element type of @p src
 * @param where where @p src lives
 * @param count number of elements
 * @return FTQ_OK, FTQ_ERR_INVALID_ARGUMENT, FTQ_ERR_OUT_OF_MEMORY, FTQ_ERR_CUDA
 */
FTQ_API ftq_status ftq_quantizer_observe(ftq_quantizer *q, const void *src, ftq_float_type type,
                                         ftq_memory_location where, size_t count);

/**
 * The asymmetric INT8 (uint8) parameters of what was observed: range
 * [lo, hi] = [min, max] (`minmax`) or the (100 - p)-th and p-th percentiles
 * (`percentile`), widened to include 0; scale = (hi - lo) / 255, zero point
 * = round(-lo / scale). An asymmetric per-tensor INT8 quantizer with a
 * calibration quantizes with these instead of each tensor's own range.
 * @param q the quantizer
 * @param scale receives the scale (may be NULL)
 * @param zero_point receives the zero point in [0, 255] (may be NULL)
 * @return FTQ_OK; FTQ_ERR_INVALID_ARGUMENT; FTQ_ERR_STATE if nothing finite
 *         was observed yet
 */
FTQ_API ftq_status ftq_quantizer_calibration(const ftq_quantizer *q, float *scale, int32_t *zero_point);

/** Forgets everything observed.
 *  @param q the quantizer; NULL is a no-op */
FTQ_API void ftq_quantizer_reset_calibration(ftq_quantizer *q);

/** Destroys a quantized tensor and frees its device memory.
 *  @param t the tensor; NULL is a no-op */
FTQ_API void ftq_qtensor_destroy(ftq_qtensor *t);

/** @param t the tensor
 *  @return its ::ftq_qscheme, or -1 if @p t is NULL */
FTQ_API int ftq_qtensor_scheme(const ftq_qtensor *t);

/**
 * The logical (unquantized) shape.
 * @param t the tensor
 * @param shape receives up to @p max_dims sizes, outermost first (may be NULL)
 * @param max_dims entries available in @p shape
 * @return the number of dimensions, or -1 if @p t is NULL
 */
FTQ_API int ftq_qtensor_shape(const ftq_qtensor *t, int64_t *shape, int max_dims);

/** @param t the tensor
 *  @return the device bytes it holds (all its buffers), 0 for NULL */
FTQ_API size_t ftq_qtensor_bytes(const ftq_qtensor *t);

/** @param t the tensor
 *  @return how many values were clipped to the code range when it was
 *          quantized (always 0 for NF4 / FP4), or -1 if @p t is NULL */
FTQ_API int64_t ftq_qtensor_clipped(const ftq_qtensor *t);

/**
 * Dequantizes into a caller's buffer (row-major, the logical shape).
 * @param t the tensor
 * @param dst receives the values
 * @param type element type to write (rounded to nearest even)
 * @param where where @p dst lives
 * @param count elements @p dst holds; must be at least the tensor's
 * @return FTQ_OK, FTQ_ERR_INVALID_ARGUMENT, FTQ_ERR_OUT_OF_MEMORY, FTQ_ERR_CUDA
 */
FTQ_API ftq_status ftq_qtensor_dequantize_into(const ftq_qtensor *t, void *dst, ftq_float_type type,
                                               ftq_memory_location where, size_t count);

FTQ_EXTERN_C_END

#endif /* LIBFTQ_FTQ_QUANTIZER_H */

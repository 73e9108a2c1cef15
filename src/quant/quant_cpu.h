/* The CPU backend's quantization operations (the entries of ftq_backend
 * that src/cpu/backend_cpu.c lists; semantics in src/backend.h). */
#ifndef FTQ_QUANT_QUANT_CPU_H
#define FTQ_QUANT_QUANT_CPU_H

#include "backend.h"

ftq_status ftq_cpu_quantize_4bit(void *be, const ftq_q4_desc *d, const void *x, ftq_dtype x_type,
                                 const float *code2_host, float *offset);
ftq_status ftq_cpu_quantize_8bit(void *be, const float *x, size_t n, int64_t blocksize, const float *code,
                                 ftq_center_mode center, float *offset, uint8_t *q, float *absmax);
ftq_status ftq_cpu_dequantize_4bit(void *be, const ftq_q4_desc *d, void *out, ftq_dtype out_type);
ftq_status ftq_cpu_quantize_int8(void *be, const ftq_int8_desc *d, const void *x, ftq_dtype x_type, int64_t *clipped);
ftq_status ftq_cpu_dequantize_int8(void *be, const ftq_int8_desc *d, void *out, ftq_dtype out_type);
ftq_status ftq_cpu_mask_select(void *be, size_t n, const uint8_t *mask, const void *x, ftq_dtype type, void *out);

/* The double-quantization offset: the mean of x in a fixed order that both
 * backends follow, so it is deterministic and the same on CPU and CUDA (a
 * warp's tree over chunks of 256, then a 1024-thread block's tree over the
 * chunk sums; all in double, rounded once to fp32). torch's CUDA mean,
 * which bitsandbytes uses, may differ from it by one ulp. */
float ftq_quant_mean(const float *x, size_t n);

#endif /* FTQ_QUANT_QUANT_CPU_H */

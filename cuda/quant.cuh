// The CUDA backend's quantization operations (cuda/quant.cu), listed in
// the backend table by module.cu; semantics in src/backend.h.
#pragma once

#include "common.cuh"

ftq_status ftq_cuda_quantize_4bit(void *be, const ftq_q4_desc *d, const void *x, ftq_dtype x_type,
                                 const float *code2_host, float *offset);
ftq_status ftq_cuda_quantize_8bit(void *be, const float *x, size_t n, int64_t blocksize, const float *code,
                                  ftq_center_mode center, float *offset, uint8_t *q, float *absmax);
ftq_status ftq_cuda_dequantize_4bit(void *be, const ftq_q4_desc *d, void *out, ftq_dtype out_type);
ftq_status ftq_cuda_quantize_int8(void *be, const ftq_int8_desc *d, const void *x, ftq_dtype x_type, int64_t *clipped);
ftq_status ftq_cuda_dequantize_int8(void *be, const ftq_int8_desc *d, void *out, ftq_dtype out_type);
ftq_status ftq_cuda_mask_select(void *be, size_t n, const uint8_t *mask, const void *x, ftq_dtype type, void *out);

/* GGML tensor types as GGUF files store them: block sizes, byte sizes and
 * dequantization to fp32 for the types common Llama GGUF files use (F32,
 * F16, BF16, F64, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K,
 * Q6_K). Results equal the `gguf` Python package's dequantize() bit for bit
 * (each element is computed with the same fp32 operations in the same
 * order; tests/io/test_gguf checks it). */
#ifndef FTQ_IO_GGML_QUANT_H
#define FTQ_IO_GGML_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "libftq/ftq_status.h"

/* GGML type ids (values as in ggml.h / the GGUF specification). */
enum {
  FTQ_GGML_F32 = 0,
  FTQ_GGML_F16 = 1,
  FTQ_GGML_Q4_0 = 2,
  FTQ_GGML_Q4_1 = 3,
  FTQ_GGML_Q5_0 = 6,
  FTQ_GGML_Q5_1 = 7,
  FTQ_GGML_Q8_0 = 8,
  FTQ_GGML_Q8_1 = 9,
  FTQ_GGML_Q2_K = 10,
  FTQ_GGML_Q3_K = 11,
  FTQ_GGML_Q4_K = 12,
  FTQ_GGML_Q5_K = 13,
  FTQ_GGML_Q6_K = 14,
  FTQ_GGML_Q8_K = 15,
  FTQ_GGML_I8 = 24,
  FTQ_GGML_I16 = 25,
  FTQ_GGML_I32 = 26,
  FTQ_GGML_I64 = 27,
  FTQ_GGML_F64 = 28,
  FTQ_GGML_BF16 = 30
};

typedef struct ftq_ggml_type_info {
  const char *name;    /* "Q4_K" */
  uint32_t block;      /* elements per block (1 for plain types) */
  uint32_t type_size;  /* bytes per block */
  int can_dequantize;  /* ftq_ggml_dequantize supports it */
} ftq_ggml_type_info;

/* Info of a type id, or NULL for ids this build does not know. */
const ftq_ggml_type_info *ftq_ggml_type(uint32_t type);

/* Dequantizes `n` elements (a multiple of the block size) stored as `type`
 * at `src` into fp32 `dst`. FTQ_ERR_UNSUPPORTED for types without a
 * dequantizer. */
ftq_status ftq_ggml_dequantize(uint32_t type, const void *src, float *dst, size_t n);

#endif /* FTQ_IO_GGML_QUANT_H */

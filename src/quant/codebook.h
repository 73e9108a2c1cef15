/* The constants of bitsandbytes' 4-bit and 8-bit blockwise quantizers, and
 * the arithmetic of its CUDA kernels reproduced on the CPU. bitsandbytes is
 * built with --use_fast_math, so its kernels flush subnormals to zero (.ftz)
 * and take the per-block reciprocal with rcp.approx.ftz.f32, which for 13%
 * of mantissas is the other neighbour of the exact 1/x; and NVIDIA
 * arithmetic returns one canonical NaN. The CPU reference reproduces all of
 * it so its codes equal bitsandbytes' CUDA codes bit for bit
 * (docs/quantization.md; tests/ref/quant holds the measurements). */
#ifndef FTQ_QUANT_CODEBOOK_H
#define FTQ_QUANT_CODEBOOK_H

#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "core/half.h"
#include "libftq/ftq_status.h"

/* Dequantization tables, indexed by the 4-bit code (FP4 with its sign
 * applied: code 8 is -0.0, as the CUDA kernel computes it). */
extern const float ftq_nf4_lut[16];
extern const float ftq_fp4_lut[16];
/* The table bitsandbytes' Python code writes as `quant_map` for FP4
 * (get_4bit_type("fp4"): +0 for code 8). */
extern const float ftq_fp4_quant_map[16];
/* dQuantizeNF4's 15 pivots as compiled (ascending). */
extern const float ftq_nf4_thresholds[15];
/* dQuantizeFP4's 7 magnitude pivots (ascending) and the magnitude code of
 * each of the 8 intervals they cut. */
extern const float ftq_fp4_thresholds[7];
extern const uint8_t ftq_fp4_interval_code[8];
/* The signed dynamic 8-bit map (create_dynamic_map(signed=True)), as torch
 * 2.11 on AVX-512 computes it (qlora-spec §2.2). Checkpoints carry their
 * own copy (nested_quant_map), which takes precedence. */
extern const float ftq_dynamic_map[256];

/* The rcp.approx table (rcp_table.c). */
extern const char ftq_rcp_table_b64[];
extern const size_t ftq_rcp_table_b64_len;
extern const size_t ftq_rcp_table_raw_bytes;

/* The decoded table: 2^23 bits (1 MiB), decoded on first use (thread-safe)
 * and kept for the life of the process. FTQ_ERR_INTERNAL if it cannot be
 * decoded. */
ftq_status ftq_rcp_flip_bitmap(const uint8_t **bitmap);

/* ---- the kernels' arithmetic, for the CPU ---- */

static inline float ftq_ftz(float x) { return fabsf(x) < FLT_MIN ? copysignf(0.0f, x) : x; }

static inline float ftq_canonical_nan(float x) { return isnan(x) ? ftq_bits_f32(0x7fffffffu) : x; }

/* mul.ftz.f32 */
static inline float ftq_mul_ftz(float a, float b) { return ftq_canonical_nan(ftq_ftz(ftq_ftz(a) * ftq_ftz(b))); }

/* add.ftz.f32 */
static inline float ftq_add_ftz(float a, float b) { return ftq_canonical_nan(ftq_ftz(ftq_ftz(a) + ftq_ftz(b))); }

/* rcp.approx.ftz.f32, with `bitmap` from ftq_rcp_flip_bitmap(). */
static inline float ftq_rcp_approx_ftz(float a, const uint8_t *bitmap) {
  a = ftq_ftz(a);
  float r = 1.0f / a;
  if (isfinite(a) && a != 0.0f && isfinite(r) && r != 0.0f) {
    uint32_t m = ftq_f32_bits(a) & 0x7fffffu;
    if ((bitmap[m >> 3] >> (m & 7)) & 1u) {
      /* the other neighbour of the exact reciprocal (double is exact enough
       * to tell on which side the rounded value lies) */
      double exact = 1.0 / (double)a;
      uint32_t rb = ftq_f32_bits(r);
      rb = fabs((double)r) < fabs(exact) ? rb + 1u : rb - 1u;
      r = ftq_bits_f32(rb);
    }
  }
  return ftq_canonical_nan(ftq_ftz(r));
}

/* dQuantizeNF4: the number of pivots strictly below x (NaN: 0). */
static inline uint8_t ftq_nf4_code(float x) {
  int c = 0;
  for (int i = 0; i < 15; i++) c += x > ftq_nf4_thresholds[i];
  return (uint8_t)c;
}

/* dQuantizeFP4: sign bit for x < 0 (not for -0 or NaN), then the magnitude. */
static inline uint8_t ftq_fp4_code(float x) {
  uint8_t sign = x < 0.0f ? 8 : 0;
  float a = fabsf(ftq_ftz(x));
  int k = 0;
  for (int i = 0; i < 7; i++) k += a > ftq_fp4_thresholds[i];
  return (uint8_t)(ftq_fp4_interval_code[k] + sign);
}

/* dQuantize<0>: binary search over a sorted 256-entry code, then the
 * midpoint comparison, in the kernel's fp32 arithmetic. */
uint8_t ftq_dquantize8(const float *code, float x);

#endif /* FTQ_QUANT_CODEBOOK_H */

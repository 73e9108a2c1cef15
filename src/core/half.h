/* fp16 / bf16 <-> fp32 conversions with round-to-nearest-even, as the
 * hardware and PyTorch do them. Header-only so every module (and the CUDA
 * module's host code) shares one definition. */
#ifndef FTQ_CORE_HALF_H
#define FTQ_CORE_HALF_H

#include <stdint.h>
#include <string.h>

static inline uint32_t ftq_f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

static inline float ftq_bits_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

/* bf16 is the top half of an fp32; NaNs stay NaN (quiet bit forced). */
static inline uint16_t ftq_f32_to_bf16(float f) {
  uint32_t u = ftq_f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

static inline float ftq_bf16_to_f32(uint16_t h) { return ftq_bits_f32((uint32_t)h << 16); }

static inline float ftq_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  uint32_t u;
  if (exp == 0) {
    if (man == 0) {
      u = sign;
    } else { /* subnormal: normalise */
      int e = -1;
      do {
        e++;
        man <<= 1;
      } while (!(man & 0x400u));
      u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000u | (man << 13) | (man ? 0x400000u : 0);
  } else {
    u = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  return ftq_bits_f32(u);
}

static inline uint16_t ftq_f32_to_f16(float f) {
  uint32_t u = ftq_f32_bits(f);
  uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu)); /* NaN */
  if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to >= 65520: inf */
  if (a < 0x38800000u) {                                  /* below fp16 normal range */
    if (a < 0x33000000u) return sign;                     /* < 2^-25 rounds to 0 */
    uint32_t e = a >> 23;
    uint32_t m = (a & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - e; /* 14..24: value = m * 2^(e-150); want units of 2^-24 */
    uint32_t r = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1u))) r++;
    return (uint16_t)(sign | r);
  }
  /* normal: rebias exponent, round mantissa to 10 bits */
  uint32_t r = a - 0x38000000u; /* exponent - 112 */
  r += 0xfffu + ((r >> 13) & 1u);
  return (uint16_t)(sign | (r >> 13));
}

#endif /* FTQ_CORE_HALF_H */

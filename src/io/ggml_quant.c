/* Dequantization of GGML block formats to fp32. Each formula multiplies
 * and adds in fp32 in the order the `gguf` package (and ggml's reference C)
 * does, so results match them exactly. Bytes are read with memcpy-based
 * helpers: block fields are not naturally aligned. */
#include "io/ggml_quant.h"

#include <string.h>

#include "core/error.h"
#include "core/half.h"

static const struct {
  uint32_t id;
  ftq_ggml_type_info info;
} ggml_types[] = {
    {FTQ_GGML_F32, {"F32", 1, 4, 1}},        {FTQ_GGML_F16, {"F16", 1, 2, 1}},
    {FTQ_GGML_Q4_0, {"Q4_0", 32, 18, 1}},    {FTQ_GGML_Q4_1, {"Q4_1", 32, 20, 1}},
    {FTQ_GGML_Q5_0, {"Q5_0", 32, 22, 1}},    {FTQ_GGML_Q5_1, {"Q5_1", 32, 24, 1}},
    {FTQ_GGML_Q8_0, {"Q8_0", 32, 34, 1}},    {FTQ_GGML_Q8_1, {"Q8_1", 32, 40, 0}},
    {FTQ_GGML_Q2_K, {"Q2_K", 256, 84, 1}},   {FTQ_GGML_Q3_K, {"Q3_K", 256, 110, 1}},
    {FTQ_GGML_Q4_K, {"Q4_K", 256, 144, 1}},  {FTQ_GGML_Q5_K, {"Q5_K", 256, 176, 1}},
    {FTQ_GGML_Q6_K, {"Q6_K", 256, 210, 1}},  {FTQ_GGML_Q8_K, {"Q8_K", 256, 292, 0}},
    {16, {"IQ2_XXS", 256, 66, 0}},           {17, {"IQ2_XS", 256, 74, 0}},
    {18, {"IQ3_XXS", 256, 98, 0}},           {19, {"IQ1_S", 256, 50, 0}},
    {20, {"IQ4_NL", 32, 18, 0}},             {21, {"IQ3_S", 256, 110, 0}},
    {22, {"IQ2_S", 256, 82, 0}},             {23, {"IQ4_XS", 256, 136, 0}},
    {FTQ_GGML_I8, {"I8", 1, 1, 0}},          {FTQ_GGML_I16, {"I16", 1, 2, 0}},
    {FTQ_GGML_I32, {"I32", 1, 4, 0}},        {FTQ_GGML_I64, {"I64", 1, 8, 0}},
    {FTQ_GGML_F64, {"F64", 1, 8, 1}},        {29, {"IQ1_M", 256, 56, 0}},
    {FTQ_GGML_BF16, {"BF16", 1, 2, 1}},      {34, {"TQ1_0", 256, 54, 0}},
    {35, {"TQ2_0", 256, 66, 0}},             {39, {"MXFP4", 32, 17, 0}},
};

const ftq_ggml_type_info *ftq_ggml_type(uint32_t type) {
  for (size_t i = 0; i < sizeof ggml_types / sizeof ggml_types[0]; i++)
    if (ggml_types[i].id == type) return &ggml_types[i].info;
  return NULL;
}

static inline float rd_f16(const uint8_t *p) { return ftq_f16_to_f32((uint16_t)(p[0] | p[1] << 8)); }

/* ---- 32-element blocks ---- */

static void deq_q4_0(const uint8_t *b, float *y) {
  float d = rd_f16(b);
  const uint8_t *qs = b + 2;
  for (int j = 0; j < 16; j++) {
    y[j] = d * (float)((int)(qs[j] & 0xF) - 8);
    y[j + 16] = d * (float)((int)(qs[j] >> 4) - 8);
  }
}

static void deq_q4_1(const uint8_t *b, float *y) {
  float d = rd_f16(b), m = rd_f16(b + 2);
  const uint8_t *qs = b + 4;
  for (int j = 0; j < 16; j++) {
    y[j] = d * (float)(qs[j] & 0xF) + m;
    y[j + 16] = d * (float)(qs[j] >> 4) + m;
  }
}

static uint32_t rd_u32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

static void deq_q5_0(const uint8_t *b, float *y) {
  float d = rd_f16(b);
  uint32_t qh = rd_u32(b + 2);
  const uint8_t *qs = b + 6;
  for (int j = 0; j < 16; j++) {
    int lo = (qs[j] & 0xF) | (int)((qh >> j) & 1) << 4;
    int hi = (qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
    y[j] = d * (float)(lo - 16);
    y[j + 16] = d * (float)(hi - 16);
  }
}

static void deq_q5_1(const uint8_t *b, float *y) {
  float d = rd_f16(b), m = rd_f16(b + 2);
  uint32_t qh = rd_u32(b + 4);
  const uint8_t *qs = b + 8;
  for (int j = 0; j < 16; j++) {
    int lo = (qs[j] & 0xF) | (int)((qh >> j) & 1) << 4;
    int hi = (qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
    y[j] = d * (float)lo + m;
    y[j + 16] = d * (float)hi + m;
  }
}

static void deq_q8_0(const uint8_t *b, float *y) {
  float d = rd_f16(b);
  for (int j = 0; j < 32; j++) y[j] = (float)(int8_t)b[2 + j] * d;
}

/* ---- 256-element super-blocks (K-quants) ---- */

static void deq_q2_k(const uint8_t *b, float *y) {
  const uint8_t *scales = b, *qs = b + 16;
  float d = rd_f16(b + 80), dmin = rd_f16(b + 82);
  for (int e = 0; e < 256; e++) {
    int h = e / 128, s = (e / 32) % 4, l = e % 32;
    uint8_t sc = scales[e / 16];
    float dl = d * (float)(sc & 0xF), ml = dmin * (float)(sc >> 4);
    y[e] = dl * (float)((qs[h * 32 + l] >> (2 * s)) & 3) - ml;
  }
}

static void deq_q3_k(const uint8_t *b, float *y) {
  const uint8_t *hmask = b, *qs = b + 32, *sc = b + 96;
  float d = rd_f16(b + 108);
  float dl[16];
  for (int k = 0; k < 16; k++) {
    int lo = (sc[k % 8] >> (4 * (k / 8))) & 0xF;
    int hi = (sc[8 + k % 4] >> (2 * (k / 4))) & 3;
    dl[k] = d * (float)((lo | hi << 4) - 32);
  }
  for (int e = 0; e < 256; e++) {
    int h = e / 128, s = (e / 32) % 4, l = e % 32;
    int ql = (qs[h * 32 + l] >> (2 * s)) & 3;
    int hbit = (hmask[l] >> (e / 32)) & 1;
    y[e] = dl[e / 16] * (float)(ql - (hbit ? 0 : 4));
  }
}

/* The 6-bit scales and mins of Q4_K / Q5_K sub-block j (0..7). */
static void k_scale_min(const uint8_t *s, int j, int *sc, int *m) {
  if (j < 4) {
    *sc = s[j] & 63;
    *m = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
    *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

static void deq_q4_k(const uint8_t *b, float *y) {
  float d = rd_f16(b), dmin = rd_f16(b + 2);
  const uint8_t *scales = b + 4, *qs = b + 16;
  for (int j = 0; j < 8; j++) {
    int sc, m;
    k_scale_min(scales, j, &sc, &m);
    float d1 = d * (float)sc, m1 = dmin * (float)m;
    int c = j / 2, shift = 4 * (j % 2);
    for (int l = 0; l < 32; l++) y[j * 32 + l] = d1 * (float)((qs[c * 32 + l] >> shift) & 0xF) - m1;
  }
}

static void deq_q5_k(const uint8_t *b, float *y) {
  float d = rd_f16(b), dmin = rd_f16(b + 2);
  const uint8_t *scales = b + 4, *qh = b + 16, *qs = b + 48;
  for (int j = 0; j < 8; j++) {
    int sc, m;
    k_scale_min(scales, j, &sc, &m);
    float d1 = d * (float)sc, m1 = dmin * (float)m;
    int c = j / 2, shift = 4 * (j % 2);
    for (int l = 0; l < 32; l++) {
      int q = ((qs[c * 32 + l] >> shift) & 0xF) | ((qh[l] >> j) & 1) << 4;
      y[j * 32 + l] = d1 * (float)q - m1;
    }
  }
}

static void deq_q6_k(const uint8_t *b, float *y) {
  const uint8_t *ql = b, *qh = b + 128;
  const int8_t *scales = (const int8_t *)(b + 192);
  float d = rd_f16(b + 208);
  for (int e = 0; e < 256; e++) {
    int h = e / 128;
    int lo = (ql[h * 64 + e % 64] >> (4 * ((e / 64) % 2))) & 0xF;
    int hi = (qh[h * 32 + e % 32] >> (2 * ((e / 32) % 4))) & 3;
    y[e] = (d * (float)scales[e / 16]) * (float)((lo | hi << 4) - 32);
  }
}

typedef void (*deq_block_fn)(const uint8_t *, float *);

ftq_status ftq_ggml_dequantize(uint32_t type, const void *src, float *dst, size_t n) {
  const uint8_t *s = src;
  const ftq_ggml_type_info *ti = ftq_ggml_type(type);
  if (!ti || !ti->can_dequantize)
    return ftq_error(FTQ_ERR_UNSUPPORTED, "GGML type %s (%u) cannot be dequantized by libftq", ti ? ti->name : "?", type);
  if (n % ti->block) return ftq_error(FTQ_ERR_INTERNAL, "dequantize: %zu elements is not a multiple of %s blocks", n, ti->name);
  deq_block_fn fn = NULL;
  switch (type) {
    case FTQ_GGML_F32: memcpy(dst, s, n * 4); return FTQ_OK;
    case FTQ_GGML_F16:
      for (size_t i = 0; i < n; i++) dst[i] = rd_f16(s + 2 * i);
      return FTQ_OK;
    case FTQ_GGML_BF16:
      for (size_t i = 0; i < n; i++) dst[i] = ftq_bf16_to_f32((uint16_t)(s[2 * i] | s[2 * i + 1] << 8));
      return FTQ_OK;
    case FTQ_GGML_F64:
      for (size_t i = 0; i < n; i++) {
        double v;
        memcpy(&v, s + 8 * i, 8);
        dst[i] = (float)v;
      }
      return FTQ_OK;
    case FTQ_GGML_Q4_0: fn = deq_q4_0; break;
    case FTQ_GGML_Q4_1: fn = deq_q4_1; break;
    case FTQ_GGML_Q5_0: fn = deq_q5_0; break;
    case FTQ_GGML_Q5_1: fn = deq_q5_1; break;
    case FTQ_GGML_Q8_0: fn = deq_q8_0; break;
    case FTQ_GGML_Q2_K: fn = deq_q2_k; break;
    case FTQ_GGML_Q3_K: fn = deq_q3_k; break;
    case FTQ_GGML_Q4_K: fn = deq_q4_k; break;
    case FTQ_GGML_Q5_K: fn = deq_q5_k; break;
    case FTQ_GGML_Q6_K: fn = deq_q6_k; break;
    default: return ftq_error(FTQ_ERR_INTERNAL, "dequantize: no routine for %s", ti->name);
  }
  size_t nb = n / ti->block;
  for (size_t i = 0; i < nb; i++) fn(s + i * ti->type_size, dst + i * ti->block);
  return FTQ_OK;
}

/* fp16 / bf16 conversions against independent implementations: the
 * compiler's _Float16 (libgcc's soft-float, round to nearest even) and a
 * double-precision nearest-value search for bf16. */
#include "core/half.h"
#include "test_util.h"

static uint32_t bits(float f) { return ftq_f32_bits(f); }

/* bf16 by brute force: the nearest of the two bf16 neighbours, ties to the
 * even one, computed in double. */
static uint16_t ref_bf16(float f) {
  uint32_t u = bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0; /* NaN handled by caller */
  uint16_t lo = (uint16_t)(u >> 16);
  uint16_t hi = (uint16_t)(lo + 1);
  if ((u & 0xffffu) == 0) return lo;
  double dl = fabs((double)f - (double)ftq_bf16_to_f32(lo));
  double dh = fabs((double)ftq_bf16_to_f32(hi) - (double)f);
  if ((hi & 0x7fffu) == 0x7f80u) dh = fabs((double)f) >= 0x1.ffp127 ? 0 : INFINITY; /* max + half ulp ties to even: inf */
  if (dl < dh) return lo;
  if (dh < dl) return hi;
  return (lo & 1u) ? hi : lo;
}

int main(void) {
#ifdef __FLT16_MAX__
  /* every fp16 value widens exactly */
  for (uint32_t h = 0; h < 65536; h++) {
    _Float16 x;
    uint16_t hh = (uint16_t)h;
    memcpy(&x, &hh, 2);
    float ref = (float)x, got = ftq_f16_to_f32(hh);
    if (isnan(ref)) CHECK_MSG(isnan(got), "h=%04x", h);
    else CHECK_MSG(bits(got) == bits(ref), "h=%04x got %08x want %08x", h, bits(got), bits(ref));
  }
  /* narrowing: around every fp16 value (exact, midpoints, +-1 ulp) and random bit patterns */
  uint64_t seed = 1;
  int bad = 0;
  for (uint64_t i = 0; i < 6000000; i++) {
    uint32_t u;
    if (i < 65536 * 5) {
      uint16_t h = (uint16_t)(i / 5);
      float base = ftq_f16_to_f32(h);
      u = bits(base) + (uint32_t)((int)(i % 5) - 2) * 0x1000u; /* +-2 half-ulps of fp16 in fp32 bits */
      if (i % 5 == 2) u = bits(base);
    } else {
      u = (uint32_t)test_rand_u64(&seed);
    }
    float f = ftq_bits_f32(u);
    _Float16 r = (_Float16)f;
    uint16_t want;
    memcpy(&want, &r, 2);
    uint16_t got = ftq_f32_to_f16(f);
    if (isnan(f)) {
      if ((got & 0x7c00u) != 0x7c00u || (got & 0x3ffu) == 0) bad++;
    } else if (got != want) {
      if (bad++ < 10) fprintf(stderr, "f16(%08x) = %04x, want %04x\n", u, got, want);
    }
  }
  CHECK(bad == 0);
#else
  printf("compiler lacks _Float16: fp16 checked by round trip only\n");
  for (uint32_t h = 0; h < 65536; h++) {
    float f = ftq_f16_to_f32((uint16_t)h);
    if (!isnan(f)) CHECK(ftq_f32_to_f16(f) == h);
  }
#endif
  /* known values */
  CHECK(ftq_f32_to_f16(1.0f) == 0x3c00);
  CHECK(ftq_f32_to_f16(-2.0f) == 0xc000);
  CHECK(ftq_f32_to_f16(65504.0f) == 0x7bff);
  CHECK(ftq_f32_to_f16(65520.0f) == 0x7c00);
  CHECK(ftq_f32_to_f16(5.9604645e-08f) == 0x0001);
  CHECK(ftq_f16_to_f32(0x0001) == 5.9604645e-08f);
  CHECK(ftq_f32_to_f16(-0.0f) == 0x8000);

  /* bf16 */
  uint64_t s2 = 7;
  int bad2 = 0;
  for (uint64_t i = 0; i < 4000000; i++) {
    uint32_t u = i < 65536 ? ((uint32_t)i << 16) | 0x8000u : (uint32_t)test_rand_u64(&s2); /* ties first */
    float f = ftq_bits_f32(u);
    uint16_t got = ftq_f32_to_bf16(f);
    if (isnan(f)) {
      if (!isnan(ftq_bf16_to_f32(got))) bad2++;
    } else if (got != ref_bf16(f)) {
      if (bad2++ < 10) fprintf(stderr, "bf16(%08x) = %04x, want %04x\n", u, got, ref_bf16(f));
    }
  }
  CHECK(bad2 == 0);
  CHECK(ftq_f32_to_bf16(1.0f) == 0x3f80);
  CHECK(ftq_bf16_to_f32(0x3f80) == 1.0f);
  CHECK(isnan(ftq_bf16_to_f32(ftq_f32_to_bf16(ftq_bits_f32(0x7f800001u))))); /* signalling NaN stays NaN */
  return test_finish("test_half");
}

/* Philox4x32-10 against the Random123 known-answer vectors, and the
 * derived helpers. */
#include "core/rng.h"
#include "test_util.h"

int main(void) {
  static const uint32_t kat[3][10] = {
      {0, 0, 0, 0, 0, 0, 0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u},
      {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0x408f276du, 0x41c83b0eu,
       0xa20bc7c6u, 0x6d5451fdu},
      {0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u, 0xa4093822u, 0x299f31d0u, 0xd16cfe09u, 0x94fdccebu,
       0x5001e420u, 0x24126ea1u},
  };
  for (int t = 0; t < 3; t++) {
    uint32_t out[4];
    ftq_philox4x32_10(kat[t], kat[t] + 4, out);
    for (int i = 0; i < 4; i++) CHECK_MSG(out[i] == kat[t][6 + i], "kat %d word %d: %08x", t, i, out[i]);
  }
  /* element i of a stream is word i%4 of block i/4; streams and seeds differ */
  uint32_t w[4];
  ftq_rng_block(42, 3, 5, w);
  for (int i = 0; i < 4; i++) CHECK(ftq_rng_u32(42, 3, 20 + (uint64_t)i) == w[i]);
  CHECK(ftq_rng_u32(42, 3, 20) != ftq_rng_u32(42, 4, 20));
  CHECK(ftq_rng_u32(42, 3, 20) != ftq_rng_u32(43, 3, 20));
  CHECK(ftq_rng_u32(1ull << 40, 0, 0) != ftq_rng_u32(0, 0, 0)); /* high seed bits count */
  /* uniform in [0,1) with the right mean and spread */
  double sum = 0, sq = 0, lo = 1, hi = 0;
  const int n = 1000000;
  for (int i = 0; i < n; i++) {
    double u = ftq_rng_uniform(7, 1, (uint64_t)i);
    sum += u;
    sq += u * u;
    if (u < lo) lo = u;
    if (u > hi) hi = u;
  }
  double mean = sum / n, var = sq / n - mean * mean;
  CHECK(lo >= 0.0 && hi < 1.0);
  CHECK(fabs(mean - 0.5) < 0.002);
  CHECK(fabs(var - 1.0 / 12.0) < 0.002);
  CHECK(ftq_u32_to_unit(0xffffffffu) < 1.0f && ftq_u32_to_unit(0) == 0.0f);
  return test_finish("test_rng");
}

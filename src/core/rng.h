/* Counter-based random numbers (Philox4x32-10, Salmon et al. 2011), the
 * generator curand and PyTorch's CUDA backend use. Being counter-based, any
 * element's number is a pure function of (seed, stream, index): the CPU and
 * CUDA backends produce identical dropout masks, recomputation regenerates
 * them exactly, and resuming needs only the counters. Header-only so the
 * CUDA module shares it (functions are usable from device code there). */
#ifndef FTQ_CORE_RNG_H
#define FTQ_CORE_RNG_H

#include <stdint.h>

#ifdef __CUDACC__
#define FTQ_HD __host__ __device__ __forceinline__
#else
#define FTQ_HD static inline
#endif

#define FTQ_PHILOX_M0 0xD2511F53u
#define FTQ_PHILOX_M1 0xCD9E8D57u
#define FTQ_PHILOX_W0 0x9E3779B9u
#define FTQ_PHILOX_W1 0xBB67AE85u

/* One Philox4x32-10 block: 4 random words from a 128-bit counter and a
 * 64-bit key. */
FTQ_HD void ftq_philox4x32_10(const uint32_t ctr_in[4], const uint32_t key_in[2], uint32_t out[4]) {
  uint32_t c0 = ctr_in[0], c1 = ctr_in[1], c2 = ctr_in[2], c3 = ctr_in[3];
  uint32_t k0 = key_in[0], k1 = key_in[1];
  for (int r = 0; r < 10; r++) {
    uint64_t p0 = (uint64_t)FTQ_PHILOX_M0 * c0;
    uint64_t p1 = (uint64_t)FTQ_PHILOX_M1 * c2;
    uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
    uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
    uint32_t n0 = hi1 ^ c1 ^ k0;
    uint32_t n1 = lo1;
    uint32_t n2 = hi0 ^ c3 ^ k1;
    uint32_t n3 = lo0;
    c0 = n0; c1 = n1; c2 = n2; c3 = n3;
    k0 += FTQ_PHILOX_W0;
    k1 += FTQ_PHILOX_W1;
  }
  out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

/* The 4 words for element group `index` (elements 4*index .. 4*index+3) of
 * stream `stream` under `seed`. Streams separate uses (each dropout site,
 * each initialisation, the sampler) so they never share numbers. */
FTQ_HD void ftq_rng_block(uint64_t seed, uint64_t stream, uint64_t index, uint32_t out[4]) {
  uint32_t ctr[4] = {(uint32_t)index, (uint32_t)(index >> 32), (uint32_t)stream, (uint32_t)(stream >> 32)};
  uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
  ftq_philox4x32_10(ctr, key, out);
}

/* 32 random bits for element `i` of a stream. */
FTQ_HD uint32_t ftq_rng_u32(uint64_t seed, uint64_t stream, uint64_t i) {
  uint32_t w[4];
  ftq_rng_block(seed, stream, i >> 2, w);
  return w[i & 3];
}

/* Uniform float in [0, 1) with 24 random bits (exact in fp32). */
FTQ_HD float ftq_u32_to_unit(uint32_t x) { return (float)(x >> 8) * (1.0f / 16777216.0f); }

FTQ_HD float ftq_rng_uniform(uint64_t seed, uint64_t stream, uint64_t i) {
  return ftq_u32_to_unit(ftq_rng_u32(seed, stream, i));
}

#undef FTQ_HD
#endif /* FTQ_CORE_RNG_H */

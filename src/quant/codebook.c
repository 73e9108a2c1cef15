/* Constants of bitsandbytes' blockwise quantizers as its CUDA kernels use
 * them (qlora-spec §1-§2, checked against the SASS of bitsandbytes 0.50.2),
 * dQuantize of the 8-bit path, and the decoder of the rcp.approx table.
 * Tables are written as hexadecimal float literals: exact fp32 values,
 * never recomputed (qlora-spec §1.1). */
#include "quant/codebook.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/error.h"

const float ftq_nf4_lut[16] = {
    -0x1.0000000000000p+0f, -0x1.6473620000000p-1f, -0x1.0cd6600000000p-1f, -0x1.9465400000000p-2f,
    -0x1.23449a0000000p-2f, -0x1.7a6a7e0000000p-3f, -0x1.74f0e20000000p-4f, 0x0.0p+0f,
    0x1.45f5fe0000000p-4f, 0x1.4995c60000000p-3f, 0x1.f809ba0000000p-3f, 0x1.5a06740000000p-2f,
    0x1.c349700000000p-2f, 0x1.200f560000000p-1f, 0x1.7227660000000p-1f, 0x1.0000000000000p+0f,
};

/* The pivots nvcc compiled from dQuantizeNF4's decimal literals. Four of
 * them (bf591cd9, 3df64863, 3f006d03, 3f5c89d9) are one ulp away from the
 * fp32 midpoints of the codebook that qlora-spec §1.4 lists: the literals lie
 * almost exactly between two floats and the compiler rounds the decimal
 * correctly. */
const float ftq_nf4_thresholds[15] = {
    -0x1.b239b20000000p-1f, -0x1.38a4e00000000p-1f, -0x1.d709000000000p-2f, -0x1.5bd4ec0000000p-2f,
    -0x1.e079d80000000p-3f, -0x1.1a71780000000p-3f, -0x1.74f0e20000000p-5f, 0x1.45f5fe0000000p-5f,
    0x1.ec90c60000000p-4f, 0x1.a0cfc00000000p-3f, 0x1.2b05a80000000p-2f, 0x1.8ea7f20000000p-2f,
    0x1.00da060000000p-1f, 0x1.491b5e0000000p-1f, 0x1.b913b20000000p-1f,
};

const float ftq_fp4_lut[16] = {
    0x0.0p+0f, 0x1.5555560000000p-8f, 0x1.5555560000000p-1f, 0x1.0000000000000p+0f,
    0x1.5555560000000p-2f, 0x1.0000000000000p-1f, 0x1.5555560000000p-3f, 0x1.0000000000000p-2f,
    -0x0.0p+0f, -0x1.5555560000000p-8f, -0x1.5555560000000p-1f, -0x1.0000000000000p+0f,
    -0x1.5555560000000p-2f, -0x1.0000000000000p-1f, -0x1.5555560000000p-3f, -0x1.0000000000000p-2f,
};

const float ftq_fp4_quant_map[16] = {
    0x0.0p+0f, 0x1.5555560000000p-8f, 0x1.5555560000000p-1f, 0x1.0000000000000p+0f,
    0x1.5555560000000p-2f, 0x1.0000000000000p-1f, 0x1.5555560000000p-3f, 0x1.0000000000000p-2f,
    0x0.0p+0f, -0x1.5555560000000p-8f, -0x1.5555560000000p-1f, -0x1.0000000000000p+0f,
    -0x1.5555560000000p-2f, -0x1.0000000000000p-1f, -0x1.5555560000000p-3f, -0x1.0000000000000p-2f,
};

const float ftq_fp4_thresholds[7] = {
    0x1.5555720000000p-9f, 0x1.6000000000000p-4f, 0x1.aaaaaa0000000p-3f, 0x1.2aaaaa0000000p-2f,
    0x1.aaaaac0000000p-2f, 0x1.2aaaa00000000p-1f, 0x1.aaaaaa0000000p-1f,
};

const uint8_t ftq_fp4_interval_code[8] = {0, 1, 6, 7, 4, 5, 2, 3};

const float ftq_dynamic_map[256] = {
    -0x1.fc66660000000p-1f, -0x1.f533340000000p-1f, -0x1.ee00000000000p-1f, -0x1.e6cccc0000000p-1f,
    -0x1.df999a0000000p-1f, -0x1.d866660000000p-1f, -0x1.d133340000000p-1f, -0x1.ca00000000000p-1f,
    -0x1.c2cccc0000000p-1f, -0x1.bb999a0000000p-1f, -0x1.b466660000000p-1f, -0x1.ad33340000000p-1f,
    -0x1.a600000000000p-1f, -0x1.9ecccc0000000p-1f, -0x1.97999a0000000p-1f, -0x1.9066660000000p-1f,
    -0x1.8933340000000p-1f, -0x1.8200000000000p-1f, -0x1.7acccc0000000p-1f, -0x1.73999a0000000p-1f,
    -0x1.6c66680000000p-1f, -0x1.6533340000000p-1f, -0x1.5e00000000000p-1f, -0x1.56cccc0000000p-1f,
    -0x1.4f999a0000000p-1f, -0x1.4866680000000p-1f, -0x1.4133340000000p-1f, -0x1.3a00000000000p-1f,
    -0x1.32cccc0000000p-1f, -0x1.2b999a0000000p-1f, -0x1.2466680000000p-1f, -0x1.1d33340000000p-1f,
    -0x1.1600000000000p-1f, -0x1.0ecccc0000000p-1f, -0x1.0799980000000p-1f, -0x1.0066660000000p-1f,
    -0x1.f266640000000p-2f, -0x1.e400000000000p-2f, -0x1.d599980000000p-2f, -0x1.c733340000000p-2f,
    -0x1.b8cccc0000000p-2f, -0x1.aa66660000000p-2f, -0x1.9c00000000000p-2f, -0x1.8d99980000000p-2f,
    -0x1.7f33340000000p-2f, -0x1.70cccc0000000p-2f, -0x1.6266660000000p-2f, -0x1.5400000000000p-2f,
    -0x1.4599980000000p-2f, -0x1.3733340000000p-2f, -0x1.28cccc0000000p-2f, -0x1.1a66680000000p-2f,
    -0x1.0c00000000000p-2f, -0x1.fb33320000000p-3f, -0x1.de66660000000p-3f, -0x1.c1999a0000000p-3f,
    -0x1.a4cccc0000000p-3f, -0x1.8800000000000p-3f, -0x1.6b33340000000p-3f, -0x1.4e66660000000p-3f,
    -0x1.31999a0000000p-3f, -0x1.14cccc0000000p-3f, -0x1.f000000000000p-4f, -0x1.b666680000000p-4f,
    -0x1.93d70a0000000p-4f, -0x1.8851ee0000000p-4f, -0x1.7cccce0000000p-4f, -0x1.7147ae0000000p-4f,
    -0x1.65c2900000000p-4f, -0x1.5a3d700000000p-4f, -0x1.4eb8540000000p-4f, -0x1.4333340000000p-4f,
    -0x1.37ae140000000p-4f, -0x1.2c28f60000000p-4f, -0x1.20a3d60000000p-4f, -0x1.151eba0000000p-4f,
    -0x1.09999a0000000p-4f, -0x1.fc28f60000000p-5f, -0x1.e51eba0000000p-5f, -0x1.ce147a0000000p-5f,
    -0x1.b70a3e0000000p-5f, -0x1.a000000000000p-5f, -0x1.88f5c20000000p-5f, -0x1.71eb860000000p-5f,
    -0x1.5ae1460000000p-5f, -0x1.43d70a0000000p-5f, -0x1.2cccce0000000p-5f, -0x1.15c2900000000p-5f,
    -0x1.fd70a40000000p-6f, -0x1.cf5c2a0000000p-6f, -0x1.a147ae0000000p-6f, -0x1.7333340000000p-6f,
    -0x1.451eba0000000p-6f, -0x1.170a3e0000000p-6f, -0x1.d1eb860000000p-7f, -0x1.75c2900000000p-7f,
    -0x1.3e76c80000000p-7f, -0x1.2c08300000000p-7f, -0x1.19999a0000000p-7f, -0x1.072b020000000p-7f,
    -0x1.e978d40000000p-8f, -0x1.c49ba60000000p-8f, -0x1.9fbe760000000p-8f, -0x1.7ae1480000000p-8f,
    -0x1.56041a0000000p-8f, -0x1.3126e80000000p-8f, -0x1.0c49ba0000000p-8f, -0x1.ced9140000000p-9f,
    -0x1.851eb80000000p-9f, -0x1.3b645a0000000p-9f, -0x1.e353f80000000p-10f, -0x1.4fdf3a0000000p-10f,
    -0x1.eecbfe0000000p-11f, -0x1.b3d07c0000000p-11f, -0x1.78d5000000000p-11f, -0x1.3dd9820000000p-11f,
    -0x1.02de020000000p-11f, -0x1.8fc5060000000p-12f, -0x1.19ce0a0000000p-12f, -0x1.47ae160000000p-13f,
    -0x1.743e960000000p-14f, -0x1.15df660000000p-14f, -0x1.6f00680000000p-15f, -0x1.64840c0000000p-16f,
    -0x1.040bfe0000000p-17f, -0x1.b435280000000p-19f, -0x1.27476e0000000p-21f, 0x0.0p+0f,
    0x1.27476e0000000p-21f, 0x1.b435280000000p-19f, 0x1.040bfe0000000p-17f, 0x1.64840c0000000p-16f,
    0x1.6f00680000000p-15f, 0x1.15df660000000p-14f, 0x1.743e960000000p-14f, 0x1.47ae160000000p-13f,
    0x1.19ce0a0000000p-12f, 0x1.8fc5060000000p-12f, 0x1.02de020000000p-11f, 0x1.3dd9820000000p-11f,
    0x1.78d5000000000p-11f, 0x1.b3d07c0000000p-11f, 0x1.eecbfe0000000p-11f, 0x1.4fdf3a0000000p-10f,
    0x1.e353f80000000p-10f, 0x1.3b645a0000000p-9f, 0x1.851eb80000000p-9f, 0x1.ced9140000000p-9f,
    0x1.0c49ba0000000p-8f, 0x1.3126e80000000p-8f, 0x1.56041a0000000p-8f, 0x1.7ae1480000000p-8f,
    0x1.9fbe760000000p-8f, 0x1.c49ba60000000p-8f, 0x1.e978d40000000p-8f, 0x1.072b020000000p-7f,
    0x1.19999a0000000p-7f, 0x1.2c08300000000p-7f, 0x1.3e76c80000000p-7f, 0x1.75c2900000000p-7f,
    0x1.d1eb860000000p-7f, 0x1.170a3e0000000p-6f, 0x1.451eba0000000p-6f, 0x1.7333340000000p-6f,
    0x1.a147ae0000000p-6f, 0x1.cf5c2a0000000p-6f, 0x1.fd70a40000000p-6f, 0x1.15c2900000000p-5f,
    0x1.2cccce0000000p-5f, 0x1.43d70a0000000p-5f, 0x1.5ae1460000000p-5f, 0x1.71eb860000000p-5f,
    0x1.88f5c20000000p-5f, 0x1.a000000000000p-5f, 0x1.b70a3e0000000p-5f, 0x1.ce147a0000000p-5f,
    0x1.e51eba0000000p-5f, 0x1.fc28f60000000p-5f, 0x1.09999a0000000p-4f, 0x1.151eba0000000p-4f,
    0x1.20a3d60000000p-4f, 0x1.2c28f60000000p-4f, 0x1.37ae140000000p-4f, 0x1.4333340000000p-4f,
    0x1.4eb8540000000p-4f, 0x1.5a3d700000000p-4f, 0x1.65c2900000000p-4f, 0x1.7147ae0000000p-4f,
    0x1.7cccce0000000p-4f, 0x1.8851ee0000000p-4f, 0x1.93d70a0000000p-4f, 0x1.b666680000000p-4f,
    0x1.f000000000000p-4f, 0x1.14cccc0000000p-3f, 0x1.31999a0000000p-3f, 0x1.4e66660000000p-3f,
    0x1.6b33340000000p-3f, 0x1.8800000000000p-3f, 0x1.a4cccc0000000p-3f, 0x1.c1999a0000000p-3f,
    0x1.de66660000000p-3f, 0x1.fb33320000000p-3f, 0x1.0c00000000000p-2f, 0x1.1a66680000000p-2f,
    0x1.28cccc0000000p-2f, 0x1.3733340000000p-2f, 0x1.4599980000000p-2f, 0x1.5400000000000p-2f,
    0x1.6266660000000p-2f, 0x1.70cccc0000000p-2f, 0x1.7f33340000000p-2f, 0x1.8d99980000000p-2f,
    0x1.9c00000000000p-2f, 0x1.aa66660000000p-2f, 0x1.b8cccc0000000p-2f, 0x1.c733340000000p-2f,
    0x1.d599980000000p-2f, 0x1.e400000000000p-2f, 0x1.f266640000000p-2f, 0x1.0066660000000p-1f,
    0x1.0799980000000p-1f, 0x1.0ecccc0000000p-1f, 0x1.1600000000000p-1f, 0x1.1d33340000000p-1f,
    0x1.2466680000000p-1f, 0x1.2b999a0000000p-1f, 0x1.32cccc0000000p-1f, 0x1.3a00000000000p-1f,
    0x1.4133340000000p-1f, 0x1.4866680000000p-1f, 0x1.4f999a0000000p-1f, 0x1.56cccc0000000p-1f,
    0x1.5e00000000000p-1f, 0x1.6533340000000p-1f, 0x1.6c66680000000p-1f, 0x1.73999a0000000p-1f,
    0x1.7acccc0000000p-1f, 0x1.8200000000000p-1f, 0x1.8933340000000p-1f, 0x1.9066660000000p-1f,
    0x1.97999a0000000p-1f, 0x1.9ecccc0000000p-1f, 0x1.a600000000000p-1f, 0x1.ad33340000000p-1f,
    0x1.b466660000000p-1f, 0x1.bb999a0000000p-1f, 0x1.c2cccc0000000p-1f, 0x1.ca00000000000p-1f,
    0x1.d133340000000p-1f, 0x1.d866660000000p-1f, 0x1.df999a0000000p-1f, 0x1.e6cccc0000000p-1f,
    0x1.ee00000000000p-1f, 0x1.f533340000000p-1f, 0x1.fc66660000000p-1f, 0x1.0000000000000p+0f,
};

#define FTQ_Q8_QUALIFIERS
#define FTQ_Q8_NAME ftq_dquantize8
#define FTQ_Q8_MUL_FTZ ftq_mul_ftz
#define FTQ_Q8_ADD_FTZ ftq_add_ftz
#include "quant/dquantize8.h"

/* ---- the rcp.approx table ---- */

static pthread_once_t rcp_once = PTHREAD_ONCE_INIT;
static uint8_t *rcp_bitmap; /* 1 MiB, lives as long as the process */

static int b64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

static void rcp_decode(void) {
  size_t len = ftq_rcp_table_b64_len, zlen = 0;
  unsigned char *z = malloc(len / 4 * 3 + 3);
  uint8_t *bits = malloc(ftq_rcp_table_raw_bytes);
  if (!z || !bits) goto fail;
  uint32_t acc = 0;
  int nacc = 0;
  for (size_t i = 0; i < len; i++) {
    if (ftq_rcp_table_b64[i] == '=') break;
    int v = b64_value(ftq_rcp_table_b64[i]);
    if (v < 0) goto fail;
    acc = acc << 6 | (uint32_t)v;
    if (++nacc == 4) {
      z[zlen++] = (unsigned char)(acc >> 16);
      z[zlen++] = (unsigned char)(acc >> 8);
      z[zlen++] = (unsigned char)acc;
      acc = 0;
      nacc = 0;
    }
  }
  if (nacc == 3) {
    z[zlen++] = (unsigned char)(acc >> 10);
    z[zlen++] = (unsigned char)(acc >> 2);
  } else if (nacc == 2) {
    z[zlen++] = (unsigned char)(acc >> 4);
  }
  uLongf out_len = (uLongf)ftq_rcp_table_raw_bytes;
  if (uncompress(bits, &out_len, z, (uLong)zlen) != Z_OK || out_len != ftq_rcp_table_raw_bytes) goto fail;
  free(z);
  rcp_bitmap = bits;
  return;
fail:
  free(z);
  free(bits);
}

ftq_status ftq_rcp_flip_bitmap(const uint8_t **bitmap) {
  pthread_once(&rcp_once, rcp_decode);
  *bitmap = rcp_bitmap;
  if (!rcp_bitmap)
    return ftq_error(FTQ_ERR_INTERNAL, "the rcp.approx table of src/quant/rcp_table.c could not be decoded "
                                       "(out of memory, or a damaged build)");
  return FTQ_OK;
}

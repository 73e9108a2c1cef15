// Records how the GPU's approximate reciprocal (PTX rcp.approx.ftz.f32, the
// instruction bitsandbytes' 4-bit quantizer runs because it is built with
// --use_fast_math) differs from the correctly rounded one, so the CPU
// reference can reproduce it bit for bit.
//
//   nvcc -O2 -arch=sm_90 rcp_probe.cu -o rcp_probe && ./rcp_probe out.bin
//
// Writes a bitmap of 2^23 bits: bit m is set when, for x = 1.m (mantissa m,
// exponent 0), rcp.approx(x) != rcp.rn(x). Prints the count and checks that
// (a) every differing result is the other neighbour of 1/x (error < 1 ulp)
// and (b) the result depends on the mantissa only (every normal exponent
// whose reciprocal is normal gives the same mantissa bits, either sign).
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

__device__ __forceinline__ float rcp_approx(float x) {
  float r;
  asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
  return r;
}

__global__ void table_kernel(uint32_t *bits, unsigned long long *count) {
  uint32_t m = blockIdx.x * blockDim.x + threadIdx.x;
  if (m >= (1u << 23)) return;
  float x = __uint_as_float(0x3f800000u | m);
  float a = rcp_approx(x), r = __frcp_rn(x);
  uint32_t ua = __float_as_uint(a), ur = __float_as_uint(r);
  if (ua != ur) {
    atomicOr(&bits[m >> 5], 1u << (m & 31));
    atomicAdd(&count[0], 1ull);
    if (ua != ur + 1 && ua + 1 != ur) atomicAdd(&count[1], 1ull);  // not a neighbour of the rounded value
    if (ua > ur) atomicAdd(&count[2], 1ull);                        // approx above
  }
}

// Exponent independence: for mantissa m and every exponent e with a normal
// reciprocal, the result's mantissa bits equal those at exponent 0.
__global__ void exp_kernel(unsigned long long *bad, uint32_t step) {
  uint32_t m = (blockIdx.x * blockDim.x + threadIdx.x) * step;
  if (m >= (1u << 23)) return;
  uint32_t ref = __float_as_uint(rcp_approx(__uint_as_float(0x3f800000u | m)));
  for (int e = 1; e <= 253; e++) {
    float x = __uint_as_float(((uint32_t)e << 23) | m);
    float a = rcp_approx(x);
    uint32_t ua = __float_as_uint(a);
    uint32_t ea = (ua >> 23) & 0xff;
    if (ea == 0) continue;  // flushed: checked separately on the host
    int expect = (int)((ref >> 23) & 0xff) + 127 - e;
    if ((ua & 0x7fffffu) != (ref & 0x7fffffu) || (int)ea != expect) atomicAdd(bad, 1ull);
    if (__float_as_uint(rcp_approx(-x)) != (ua | 0x80000000u)) atomicAdd(bad, 1ull);  // sign is separate
  }
}

__global__ void special_kernel(const float *in, float *out, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = rcp_approx(in[i]);
}

int main(int argc, char **argv) {
  const char *path = argc > 1 ? argv[1] : "rcp_approx_diff.bin";
  uint32_t *d_bits;
  unsigned long long *d_count, *d_bad;
  cudaMalloc(&d_bits, (1u << 23) / 8);
  cudaMalloc(&d_count, 24);
  cudaMalloc(&d_bad, 8);
  cudaMemset(d_bits, 0, (1u << 23) / 8);
  cudaMemset(d_count, 0, 24);
  cudaMemset(d_bad, 0, 8);
  table_kernel<<<(1u << 23) / 256, 256>>>(d_bits, d_count);
  exp_kernel<<<(1u << 23) / 256 / 16, 256>>>(d_bad, 16);
  std::vector<uint32_t> bits((1u << 23) / 32);
  unsigned long long bad = 0;
  cudaMemcpy(bits.data(), d_bits, (1u << 23) / 8, cudaMemcpyDeviceToHost);
  cudaMemcpy(&bad, d_bad, 8, cudaMemcpyDeviceToHost);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) { fprintf(stderr, "CUDA error: %s\n", cudaGetErrorString(e)); return 1; }
  unsigned long long cnt[3];
  cudaMemcpy(cnt, d_count, 24, cudaMemcpyDeviceToHost);
  // among differing ones: is the approximation the other neighbour of the exact 1/x?
  long other_side = 0;
  for (uint32_t m = 0; m < (1u << 23); m++) {
    if (!(bits[m >> 5] >> (m & 31) & 1)) continue;
    float x; uint32_t ux = 0x3f800000u | m; memcpy(&x, &ux, 4);
    float rn = 1.0f / x;  // host: correctly rounded
    double ex = 1.0 / (double)x;
    /* approx is above rn exactly when it sits on the other side of ex iff rn < ex */
    if (rn < ex) other_side++;
  }
  // special values
  float sp[] = {0.0f, -0.0f, 1e-40f, -1e-40f, INFINITY, -INFINITY, NAN, 3.4e38f, -3.4e38f, 8.6e37f, 8.5e37f,
                1.17549435e-38f, 2.0f, 0.5f};
  int ns = sizeof sp / sizeof sp[0];
  float *d_in, *d_out, out[32];
  cudaMalloc(&d_in, sizeof sp);
  cudaMalloc(&d_out, sizeof sp);
  cudaMemcpy(d_in, sp, sizeof sp, cudaMemcpyHostToDevice);
  special_kernel<<<1, 32>>>(d_in, d_out, ns);
  cudaMemcpy(out, d_out, sizeof sp, cudaMemcpyDeviceToHost);
  for (int i = 0; i < ns; i++) {
    uint32_t a, b; memcpy(&a, &sp[i], 4); memcpy(&b, &out[i], 4);
    printf("rcp.approx.ftz(%08x = %g) = %08x (%g)\n", a, sp[i], b, out[i]);
  }
  printf("differing mantissas: %llu of %u (%.4f%%); not neighbours: %llu; approx above rn: %llu; rn below exact: %ld;"
         " exponent mismatches: %llu\n", cnt[0], 1u << 23, 100.0 * cnt[0] / (1u << 23), cnt[1], cnt[2], other_side, bad);
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(bits.data(), 4, bits.size(), f) != bits.size()) { perror(path); return 1; }
  fclose(f);
  return 0;
}

// AdamW update on the GPU. Explicit round-to-nearest fp32 operations (no
// FMA contraction) in the CPU backend's order, so both backends give the
// same bits; m and v may be pinned host memory (paged states), read and
// written over the bus by this kernel.
#include <math.h>

#include "common.cuh"

// ---------------------------------------------------------------------------
// CUDA kernels

__global__ void adamw_kernel(ftq_adamw_args a) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < a.n; i += (size_t)gridDim.x * blockDim.x) {
    float g = __fmul_rn(a.grad[i], a.grad_scale);
    float p = a.param[i], m = a.m[i], v = a.v[i];
    if (a.mode == FTQ_ADAMW_BNB) {
      m = __fadd_rn(__fmul_rn(m, a.beta1), __fmul_rn(a.one_minus_beta1, g));
      v = __fadd_rn(__fmul_rn(v, a.beta2), __fmul_rn(a.one_minus_beta2, __fmul_rn(g, g)));
      p = __fadd_rn(p, __fmul_rn(a.step_size, __fdiv_rn(m, __fadd_rn(__fsqrt_rn(v), a.eps))));
      p = __fmul_rn(p, a.decay_factor);
    } else {
      p = __fmul_rn(p, a.decay_factor);
      m = __fadd_rn(m, __fmul_rn(a.one_minus_beta1, __fsub_rn(g, m)));
      v = __fmul_rn(v, a.beta2);
      v = __fadd_rn(v, __fmul_rn(__fmul_rn(a.one_minus_beta2, g), g));
      float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(v), a.bc2_sqrt), a.eps);
      p = __fadd_rn(p, __fdiv_rn(__fmul_rn(a.step_size, m), denom));
    }
    a.param[i] = p;
    a.m[i] = m;
    a.v[i] = v;
  }
}

// ---------------------------------------------------------------------------
// kernel launchers

ftq_status ftq_cuda_adamw(void *be, const ftq_adamw_args *a) {
  ftq_cuda *c = (ftq_cuda *)be;
  if (!a->n) return FTQ_OK;
  FTQ_TRY_CU(ftq_cuda_enter(c));
  FTQ_PROFILE(c, FTQ_PROF_ADAMW);
  const int threads = 256;
  adamw_kernel<<<ftq_grid_for(a->n, threads, c), threads, 0, c->stream>>>(*a);
  FTQ_CUDA_LAUNCH_CHECK("adamw");
  return FTQ_OK;
}

/* CPU backend: the plain-C fp32 reference implementation of every backend
 * operation. Device memory is host memory; work is split over the
 * context's thread pool where it pays. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/half.h"
#include "core/log.h"
#include "cpu/cpu.h"
#ifdef FTQ_HAVE_BLAS
#include <cblas.h>
#endif
#include "quant/quant_cpu.h"

#ifdef FTQ_HAVE_BLAS
#define CPU_GEMM_NAME FTQ_BLAS_NAME
#else
#define CPU_GEMM_NAME "plain-C GEMM"
#endif

static ftq_status cpu_device_count(int *count) {
  *count = 1;
  return FTQ_OK;
}

static ftq_status cpu_create(const ftq_backend_config *cfg, void **be, char *name, size_t len) {
  ftq_cpu *c = ftq_calloc(1, sizeof *c, "CPU backend");
  if (!c) return FTQ_ERR_OUT_OF_MEMORY;
  c->num_threads = cfg->num_threads;
  ftq_status st = ftq_threadpool_create(cfg->num_threads, &c->pool);
  if (st != FTQ_OK) {
    free(c);
    return st;
  }
  char gemm[96];
  snprintf(gemm, sizeof gemm, "%s", CPU_GEMM_NAME);
#ifdef FTQ_HAVE_BLAS
  /* OpenBLAS picks its kernels by CPU model at load; on models it does not
   * know it falls back to generic ones 3-4x slower. Say which it runs, and
   * warn when the generic ones run on a CPU with AVX2. */
  const char *core = openblas_get_corename();
  snprintf(gemm, sizeof gemm, "%s %s", CPU_GEMM_NAME, core ? core : "?");
  if (core && (!strcmp(core, "Prescott") || !strcmp(core, "Core2") || !strcmp(core, "Nehalem")) &&
      __builtin_cpu_supports("avx2"))
    ftq_log(cfg->ctx, FTQ_LOG_WARN,
            "OpenBLAS runs its generic %s kernels on a CPU with AVX2%s: CPU GEMMs are several times slower than "
            "they could be; set OPENBLAS_CORETYPE=%s in the environment", core,
            __builtin_cpu_supports("avx512f") ? "/AVX-512" : "", __builtin_cpu_supports("avx512f") ? "SkylakeX" : "Haswell");
#endif
  snprintf(name, len, "cpu (%d thread%s, %s)", c->num_threads, c->num_threads == 1 ? "" : "s", gemm);
  *be = c;
  return FTQ_OK;
}

static void cpu_destroy(void *be) {
  ftq_cpu *c = be;
  ftq_threadpool_destroy(c->pool);
  free(c);
}

static ftq_status cpu_device_memory(void *be, size_t *free_bytes, size_t *total_bytes) {
  (void)be;
  long pages = sysconf(_SC_PHYS_PAGES), avail = sysconf(_SC_AVPHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
  *total_bytes = pages > 0 && psz > 0 ? (size_t)pages * (size_t)psz : 0;
  *free_bytes = avail > 0 && psz > 0 ? (size_t)avail * (size_t)psz : 0;
  return FTQ_OK;
}

static ftq_status cpu_synchronize(void *be) {
  (void)be;
  return FTQ_OK;
}

static ftq_status cpu_alloc(void *be, size_t bytes, void **ptr) {
  (void)be;
  /* 256-byte alignment, as cudaMalloc gives (arenas rely on it); size
   * rounded up as aligned_alloc needs */
  size_t rounded = (bytes + 255u) & ~(size_t)255u;
  *ptr = rounded >= bytes ? aligned_alloc(256, rounded) : NULL;
  if (!*ptr) return ftq_error(FTQ_ERR_OUT_OF_MEMORY, "out of host memory (%zu bytes)", bytes);
  return FTQ_OK;
}

static void cpu_free(void *be, void *ptr) {
  (void)be;
  free(ptr);
}

static ftq_status cpu_copy(void *be, void *dst, const void *src, size_t bytes, ftq_copy_kind kind) {
  (void)be;
  (void)kind;
  if (bytes) memmove(dst, src, bytes);
  return FTQ_OK;
}

float ftq_cpu_load(const void *x, ftq_dtype t, size_t i) {
  switch (t) {
    case FTQ_DTYPE_F32: return ((const float *)x)[i];
    case FTQ_DTYPE_F16: return ftq_f16_to_f32(((const uint16_t *)x)[i]);
    case FTQ_DTYPE_BF16: return ftq_bf16_to_f32(((const uint16_t *)x)[i]);
    case FTQ_DTYPE_F64: return (float)((const double *)x)[i];
    default: return NAN;
  }
}

static int is_io_float(ftq_dtype t) { return t == FTQ_DTYPE_F32 || t == FTQ_DTYPE_F16 || t == FTQ_DTYPE_BF16; }

static ftq_status cpu_fill(void *be, void *x, ftq_dtype t, size_t n, float v) {
  (void)be;
  switch (t) {
    case FTQ_DTYPE_F32:
      for (size_t i = 0; i < n; i++) ((float *)x)[i] = v;
      return FTQ_OK;
    case FTQ_DTYPE_F16:
    case FTQ_DTYPE_BF16: {
      uint16_t h = t == FTQ_DTYPE_F16 ? ftq_f32_to_f16(v) : ftq_f32_to_bf16(v);
      for (size_t i = 0; i < n; i++) ((uint16_t *)x)[i] = h;
      return FTQ_OK;
    }
    case FTQ_DTYPE_I32:
    case FTQ_DTYPE_U8:
    case FTQ_DTYPE_I8:
    case FTQ_DTYPE_I64: {
      if (v != floorf(v)) return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "fill: %g is not integral for %s", v, ftq_dtype_name(t));
      for (size_t i = 0; i < n; i++) {
        if (t == FTQ_DTYPE_I32) ((int32_t *)x)[i] = (int32_t)v;
        else if (t == FTQ_DTYPE_I64) ((int64_t *)x)[i] = (int64_t)v;
        else if (t == FTQ_DTYPE_I8) ((int8_t *)x)[i] = (int8_t)v;
        else ((uint8_t *)x)[i] = (uint8_t)v;
      }
      return FTQ_OK;
    }
    default: return ftq_error(FTQ_ERR_UNSUPPORTED, "fill: dtype %s not supported", ftq_dtype_name(t));
  }
}

static ftq_status cpu_convert(void *be, void *dst, ftq_dtype dt, const void *src, ftq_dtype st, size_t n) {
  (void)be;
  if (!is_io_float(dt) || !is_io_float(st))
    return ftq_error(FTQ_ERR_UNSUPPORTED, "convert: %s -> %s not supported", ftq_dtype_name(st), ftq_dtype_name(dt));
  for (size_t i = 0; i < n; i++) {
    float v = ftq_cpu_load(src, st, i);
    if (dt == FTQ_DTYPE_F32) ((float *)dst)[i] = v;
    else if (dt == FTQ_DTYPE_F16) ((uint16_t *)dst)[i] = ftq_f32_to_f16(v);
    else ((uint16_t *)dst)[i] = ftq_f32_to_bf16(v);
  }
  return FTQ_OK;
}

static ftq_status cpu_axpby(void *be, size_t n, float a, const float *x, float b, float *y) {
  (void)be;
  if (b == 0.0f)
    for (size_t i = 0; i < n; i++) y[i] = a * x[i];
  else
    for (size_t i = 0; i < n; i++) y[i] = a * x[i] + b * y[i];
  return FTQ_OK;
}

static ftq_status cpu_reduce(void *be, ftq_reduce_op op, const void *x, ftq_dtype t, size_t n, double *result) {
  (void)be;
  if (!is_io_float(t)) return ftq_error(FTQ_ERR_UNSUPPORTED, "reduce: dtype %s not supported", ftq_dtype_name(t));
  double acc = 0.0;
  for (size_t i = 0; i < n; i++) {
    double v = ftq_cpu_load(x, t, i);
    switch (op) {
      case FTQ_REDUCE_SUM: acc += v; break;
      case FTQ_REDUCE_SUMSQ: acc += v * v; break;
      case FTQ_REDUCE_ABSMAX:
        if (isnan(v)) acc = NAN;
        else if (!isnan(acc) && fabs(v) > acc) acc = fabs(v);
        break;
    }
  }
  *result = acc;
  return FTQ_OK;
}

static const ftq_backend cpu_backend = {
    .abi = FTQ_BACKEND_ABI,
    .size = sizeof(ftq_backend),
    .name = "cpu",
    .device_count = cpu_device_count,
    .create = cpu_create,
    .destroy = cpu_destroy,
    .device_memory = cpu_device_memory,
    .synchronize = cpu_synchronize,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .host_alloc = cpu_alloc,
    .host_free = cpu_free,
    .copy = cpu_copy,
    .fill = cpu_fill,
    .convert = cpu_convert,
    .axpby = cpu_axpby,
    .reduce = cpu_reduce,
    .gemm = ftq_cpu_gemm,
    .adamw = ftq_cpu_adamw,
    .quantize_4bit = ftq_cpu_quantize_4bit,
    .quantize_8bit = ftq_cpu_quantize_8bit,
    .dequantize_4bit = ftq_cpu_dequantize_4bit,
    .quantize_int8 = ftq_cpu_quantize_int8,
    .dequantize_int8 = ftq_cpu_dequantize_int8,
    .mask_select = ftq_cpu_mask_select,
    .embedding = ftq_cpu_embedding,
    .rmsnorm = ftq_cpu_rmsnorm,
    .rmsnorm_backward = ftq_cpu_rmsnorm_backward,
    .linear = ftq_cpu_linear,
    .linear_backward = ftq_cpu_linear_backward,
    .rope = ftq_cpu_rope,
    .attention = ftq_cpu_attention,
    .attention_backward = ftq_cpu_attention_backward,
    .swiglu = ftq_cpu_swiglu,
    .swiglu_backward = ftq_cpu_swiglu_backward,
    .lm_head = ftq_cpu_lm_head,
};

const ftq_backend *ftq_backend_cpu(void) { return &cpu_backend; }

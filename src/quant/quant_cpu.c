/* CPU backend operations of the quantizer: 4-bit blockwise (NF4/FP4) and
 * 8-bit dynamic blockwise in bitsandbytes' CUDA arithmetic (codebook.h),
 * and INT8 by the textbook definitions in double precision. Work is split
 * over blocks / groups with the context's thread pool. cuda/quant.cu
 * implements the same operations with the same results, bit for bit. */
#include "quant/quant_cpu.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/half.h"
#include "cpu/cpu.h"
#include "quant/codebook.h"
#include "quant/qtensor.h"

static int is_io_float(ftq_dtype t) { return t == FTQ_DTYPE_F32 || t == FTQ_DTYPE_F16 || t == FTQ_DTYPE_BF16; }

static inline float load_f(const void *x, ftq_dtype t, size_t i) {
  switch (t) {
    case FTQ_DTYPE_F16: return ftq_f16_to_f32(((const uint16_t *)x)[i]);
    case FTQ_DTYPE_BF16: return ftq_bf16_to_f32(((const uint16_t *)x)[i]);
    default: return ((const float *)x)[i];
  }
}

static inline void store_f(void *x, ftq_dtype t, size_t i, float v) {
  switch (t) {
    case FTQ_DTYPE_F16: ((uint16_t *)x)[i] = ftq_f32_to_f16(v); break;
    case FTQ_DTYPE_BF16: ((uint16_t *)x)[i] = ftq_f32_to_bf16(v); break;
    default: ((float *)x)[i] = v; break;
  }
}

static ftq_threadpool *pool_of(void *be) { return ((ftq_cpu *)be)->pool; }

/* Absmax of a block as the kernels reduce it: |x| with subnormals flushed,
 * NaN skipped (fmaxf), starting from -FLT_MAX; the zero padding of a
 * partial block takes part. */
static float block_absmax(const float *v, int64_t count, int64_t bs) {
  float am = -FLT_MAX;
  for (int64_t i = 0; i < count; i++) {
    float a = fabsf(ftq_ftz(v[i]));
    if (a > am) am = a; /* false for NaN */
  }
  if (count < bs && am < 0.0f) am = 0.0f;
  return am;
}

/* ---- 4-bit ---------------------------------------------------------------- */

typedef struct q4_job {
  const ftq_q4_desc *d;
  const void *x;
  ftq_dtype type;
  const uint8_t *rcp;
  float *scratch; /* blocksize floats per worker */
} q4_job;

static void q4_quantize_range(void *arg, size_t begin, size_t end, int worker) {
  const q4_job *j = arg;
  const ftq_q4_desc *d = j->d;
  int64_t bs = d->blocksize;
  float *v = j->scratch + (size_t)worker * (size_t)bs;
  for (size_t b = begin; b < end; b++) {
    int64_t first = (int64_t)b * bs;
    int64_t count = d->n - first < bs ? d->n - first : bs;
    for (int64_t i = 0; i < count; i++) v[i] = load_f(j->x, j->type, (size_t)(first + i));
    float am = block_absmax(v, count, bs);
    float inv = ftq_rcp_approx_ftz(am, j->rcp);
    uint8_t *out = d->packed + first / 2;
    for (int64_t i = 0; i < count; i += 2) {
      float a = ftq_mul_ftz(v[i], inv);
      /* past the end: the kernels' zero padding, scaled like the rest */
      float b2 = ftq_mul_ftz(i + 1 < count ? v[i + 1] : 0.0f, inv);
      uint8_t hi, lo;
      if (d->scheme == FTQ_QSCHEME_NF4) {
        hi = ftq_nf4_code(a);
        lo = ftq_nf4_code(b2);
      } else {
        hi = ftq_fp4_code(a);
        lo = ftq_fp4_code(b2);
      }
      out[i / 2] = (uint8_t)(hi << 4 | lo);
    }
    d->absmax[b] = am;
  }
}

ftq_status ftq_cpu_quantize_4bit(void *be, const ftq_q4_desc *d, const void *x, ftq_dtype x_type,
                                 const float *code2_host, float *offset) {
  if (!is_io_float(x_type))
    return ftq_error(FTQ_ERR_UNSUPPORTED, "quantize_4bit: input dtype %s (f32, f16 or bf16 expected)",
                     ftq_dtype_name(x_type));
  if (d->n <= 0) return FTQ_OK;
  size_t nb = (size_t)ftq_ceil_div64(d->n, d->blocksize);
  ftq_q4_desc flat = *d;
  float *raw = NULL;
  if (d->nested) { /* the fp32 absmax lives only until it is quantized itself */
    raw = ftq_malloc(nb * sizeof(float), "fp32 absmax before double quantization");
    if (!raw) return FTQ_ERR_OUT_OF_MEMORY;
    flat.absmax = raw;
  }
  q4_job job = {&flat, x, x_type, NULL, NULL};
  ftq_status st = ftq_rcp_flip_bitmap(&job.rcp);
  size_t workers = (size_t)ftq_threadpool_size(pool_of(be));
  if (st == FTQ_OK) {
    job.scratch = ftq_malloc((workers ? workers : 1) * (size_t)d->blocksize * sizeof(float), "quantize_4bit scratch");
    if (!job.scratch) st = FTQ_ERR_OUT_OF_MEMORY;
  }
  if (st == FTQ_OK)
    ftq_parallel_for(pool_of(be), nb, (size_t)(16384 / d->blocksize) + 1, q4_quantize_range, &job);
  free(job.scratch);
  if (st == FTQ_OK && d->nested) {
    memcpy(d->code2, code2_host, 256 * sizeof(float));
    st = ftq_cpu_quantize_8bit(be, raw, nb, d->blocksize2, d->code2, FTQ_CENTER_MEAN, offset, d->qabsmax, d->absmax2);
  }
  free(raw);
  return st;
}

/* Absmax of block b of a 4-bit tensor, decoding it when nested. */
static inline float q4_block_absmax(const ftq_q4_desc *d, int64_t b) {
  if (!d->nested) return d->absmax[b];
  float dq = ftq_mul_ftz(d->code2[d->qabsmax[b]], d->absmax2[b / d->blocksize2]);
  return ftq_canonical_nan(dq + d->offset); /* torch's add: IEEE, no flush */
}

typedef struct dq4_job {
  const ftq_q4_desc *d;
  void *out;
  ftq_dtype type;
} dq4_job;

static void q4_dequantize_range(void *arg, size_t begin, size_t end, int worker) {
  (void)worker;
  const dq4_job *j = arg;
  const ftq_q4_desc *d = j->d;
  const float *lut = d->scheme == FTQ_QSCHEME_NF4 ? ftq_nf4_lut : ftq_fp4_lut;
  for (size_t b = begin; b < end; b++) {
    int64_t first = (int64_t)b * d->blocksize;
    int64_t count = d->n - first < d->blocksize ? d->n - first : d->blocksize;
    float am = q4_block_absmax(d, (int64_t)b);
    /* the 16 products of the block, each the kernel's one multiply */
    float val[16];
    for (int c = 0; c < 16; c++) val[c] = ftq_mul_ftz(lut[c], am);
    const uint8_t *p = d->packed + first / 2;
    if (j->type == FTQ_DTYPE_F32) {
      float *o = (float *)j->out + first;
      for (int64_t i = 0; i + 1 < count; i += 2) {
        o[i] = val[p[i / 2] >> 4];
        o[i + 1] = val[p[i / 2] & 15];
      }
      if (count & 1) o[count - 1] = val[p[count / 2] >> 4];
    } else {
      uint16_t h[16];
      for (int c = 0; c < 16; c++) h[c] = j->type == FTQ_DTYPE_F16 ? ftq_f32_to_f16(val[c]) : ftq_f32_to_bf16(val[c]);
      uint16_t *o = (uint16_t *)j->out + first;
      for (int64_t i = 0; i + 1 < count; i += 2) {
        o[i] = h[p[i / 2] >> 4];
        o[i + 1] = h[p[i / 2] & 15];
      }
      if (count & 1) o[count - 1] = h[p[count / 2] >> 4];
    }
  }
}

ftq_status ftq_cpu_dequantize_4bit(void *be, const ftq_q4_desc *d, void *out, ftq_dtype out_type) {
  if (!is_io_float(out_type))
    return ftq_error(FTQ_ERR_UNSUPPORTED, "dequantize_4bit: output dtype %s (f32, f16 or bf16 expected)",
                     ftq_dtype_name(out_type));
  if (d->n <= 0) return FTQ_OK;
  dq4_job job = {d, out, out_type};
  size_t nb = (size_t)ftq_ceil_div64(d->n, d->blocksize);
  ftq_parallel_for(pool_of(be), nb, (size_t)(16384 / d->blocksize) + 1, q4_dequantize_range, &job);
  return FTQ_OK;
}

/* ---- 8-bit dynamic blockwise ------------------------------------------------ */

/* A warp's tree sum of 32 lanes, as __shfl_down_sync does it: at offset
 * o, lane l adds lane l + o; lane 0 ends with the total. */
static double tree32(double *v) {
  for (int o = 16; o > 0; o >>= 1)
    for (int l = 0; l < o; l++) v[l] = v[l] + v[l + o];
  return v[0];
}

float ftq_quant_mean(const float *x, size_t n) {
  if (!n) return 0.0f;
  size_t chunks = (n + 255) / 256;
  double thread[1024] = {0}; /* thread t of the second level sums chunks t, t + 1024, ... in order */
  for (size_t c = 0; c < chunks; c++) { /* one warp per chunk: lane l takes l, l + 32, ... */
    double lane[32];
    for (int l = 0; l < 32; l++) {
      double s = 0.0;
      for (size_t i = c * 256 + (size_t)l; i < c * 256 + 256 && i < n; i += 32) s += (double)x[i];
      lane[l] = s;
    }
    thread[c % 1024] += tree32(lane);
  }
  double warp[32];
  for (int w = 0; w < 32; w++) warp[w] = tree32(thread + 32 * w);
  return (float)(tree32(warp) / (double)n);
}

typedef struct q8_job {
  const float *x;
  size_t n;
  int64_t bs;
  const float *code;
  int centered;
  float offset;
  uint8_t *q;
  float *absmax;
  const uint8_t *rcp;
} q8_job;

static void q8_quantize_range(void *arg, size_t begin, size_t end, int worker) {
  (void)worker;
  const q8_job *j = arg;
  float v[256];
  for (size_t b = begin; b < end; b++) {
    size_t first = b * (size_t)j->bs;
    int64_t count = (int64_t)(j->n - first) < j->bs ? (int64_t)(j->n - first) : j->bs;
    float am = -FLT_MAX;
    for (int64_t i = 0; i < count; i++) {
      float x = j->x[first + (size_t)i];
      if (j->centered) x = ftq_canonical_nan(x - j->offset); /* torch's subtraction */
      float a = fabsf(ftq_ftz(x));
      if (a > am) am = a;
    }
    if (count < j->bs && am < 0.0f) am = 0.0f;
    float inv = ftq_rcp_approx_ftz(am, j->rcp);
    for (int64_t i0 = 0; i0 < count; i0 += 256) {
      int64_t m = count - i0 < 256 ? count - i0 : 256;
      for (int64_t i = 0; i < m; i++) {
        float x = j->x[first + (size_t)(i0 + i)];
        if (j->centered) x = ftq_canonical_nan(x - j->offset);
        v[i] = ftq_mul_ftz(x, inv);
      }
      for (int64_t i = 0; i < m; i++) j->q[first + (size_t)(i0 + i)] = ftq_dquantize8(j->code, v[i]);
    }
    j->absmax[b] = am;
  }
}

ftq_status ftq_cpu_quantize_8bit(void *be, const float *x, size_t n, int64_t blocksize, const float *code,
                                 ftq_center_mode center, float *offset, uint8_t *q, float *absmax) {
  if (!n) return FTQ_OK;
  q8_job job = {x, n, blocksize, code, center != FTQ_CENTER_NONE, 0.0f, q, absmax, NULL};
  FTQ_TRY(ftq_rcp_flip_bitmap(&job.rcp));
  if (center == FTQ_CENTER_MEAN) *offset = ftq_quant_mean(x, n);
  if (center != FTQ_CENTER_NONE) job.offset = *offset;
  size_t nb = (n + (size_t)blocksize - 1) / (size_t)blocksize;
  ftq_parallel_for(pool_of(be), nb, 16, q8_quantize_range, &job);
  return FTQ_OK;
}

/* ---- INT8 ------------------------------------------------------------------- */

typedef struct i8_job {
  const ftq_int8_desc *d;
  const void *x;
  ftq_dtype type;
  void *out; /* dequantize */
  int64_t groups_per_row;
  int64_t *clipped; /* per group */
} i8_job;

/* Group g's first element and length (a row's last group may be short). */
static void i8_group_span(const i8_job *j, size_t g, size_t *first, int64_t *len) {
  const ftq_int8_desc *d = j->d;
  int64_t row = (int64_t)g / j->groups_per_row, col0 = ((int64_t)g % j->groups_per_row) * d->group;
  *len = d->cols - col0 < d->group ? d->cols - col0 : d->group;
  *first = (size_t)(row * d->cols + col0);
}

/* Scale and zero point of a group from its finite values (qlora-spec §3.3),
 * computed in double and stored as fp32 / int32. */
static void i8_params(const ftq_int8_desc *d, const void *x, ftq_dtype t, size_t first, int64_t len, float *scale,
                      int32_t *zp) {
  double lo = 0.0, hi = 0.0, amax = 0.0;
  for (int64_t i = 0; i < len; i++) {
    double v = load_f(x, t, first + (size_t)i);
    if (!isfinite(v)) continue;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
    if (fabs(v) > amax) amax = fabs(v);
  }
  if (!d->asymmetric) {
    *scale = (float)(amax / 127.0);
    *zp = 0;
  } else {
    float s = (float)((hi - lo) / 255.0);
    double z = s > 0.0f ? rint(-lo / (double)s) : 0.0;
    *scale = s;
    *zp = (int32_t)(z < 0.0 ? 0.0 : z > 255.0 ? 255.0 : z);
  }
}

/* The code of one value; *clip set when it fell outside the range. */
static inline int32_t i8_code(double v, float s, int32_t zp, int asym, int *clip) {
  int32_t lo = asym ? 0 : -127, hi = asym ? 255 : 127;
  *clip = 0;
  if (isnan(v)) return zp;
  if (s == 0.0f) {
    *clip = v != 0.0;
    return zp;
  }
  double t = rint(v / (double)s) + (double)zp;
  if (t < lo) {
    *clip = 1;
    return lo;
  }
  if (t > hi) {
    *clip = 1;
    return hi;
  }
  return (int32_t)t;
}

static void i8_quantize_range(void *arg, size_t begin, size_t end, int worker) {
  (void)worker;
  const i8_job *j = arg;
  const ftq_int8_desc *d = j->d;
  for (size_t g = begin; g < end; g++) {
    size_t first;
    int64_t len;
    i8_group_span(j, g, &first, &len);
    if (!d->params_given) {
      int32_t zp = 0;
      i8_params(d, j->x, j->type, first, len, &d->scales[g], &zp);
      if (d->asymmetric) d->zero_points[g] = zp;
    }
    float s = d->scales[g];
    int32_t zp = d->asymmetric ? d->zero_points[g] : 0;
    int64_t clipped = 0;
    for (int64_t i = 0; i < len; i++) {
      int clip;
      int32_t c = i8_code(load_f(j->x, j->type, first + (size_t)i), s, zp, d->asymmetric, &clip);
      clipped += clip;
      if (d->asymmetric) ((uint8_t *)d->q)[first + (size_t)i] = (uint8_t)c;
      else ((int8_t *)d->q)[first + (size_t)i] = (int8_t)c;
      if (d->mask) d->mask[first + (size_t)i] = (uint8_t)!clip;
    }
    j->clipped[g] = clipped;
  }
}

ftq_status ftq_cpu_quantize_int8(void *be, const ftq_int8_desc *d, const void *x, ftq_dtype x_type, int64_t *clipped) {
  if (!is_io_float(x_type))
    return ftq_error(FTQ_ERR_UNSUPPORTED, "quantize_int8: input dtype %s (f32, f16 or bf16 expected)",
                     ftq_dtype_name(x_type));
  *clipped = 0;
  if (d->rows <= 0 || d->cols <= 0) return FTQ_OK;
  int64_t gpr = ftq_ceil_div64(d->cols, d->group);
  size_t ng = (size_t)(d->rows * gpr);
  int64_t *counts = ftq_calloc(ng, sizeof *counts, "quantize_int8 clip counts");
  if (!counts) return FTQ_ERR_OUT_OF_MEMORY;
  i8_job job = {d, x, x_type, NULL, gpr, counts};
  ftq_parallel_for(pool_of(be), ng, (size_t)(65536 / d->group) + 1, i8_quantize_range, &job);
  for (size_t g = 0; g < ng; g++) *clipped += counts[g];
  free(counts);
  return FTQ_OK;
}

static void i8_dequantize_range(void *arg, size_t begin, size_t end, int worker) {
  (void)worker;
  const i8_job *j = arg;
  const ftq_int8_desc *d = j->d;
  for (size_t g = begin; g < end; g++) {
    size_t first;
    int64_t len;
    i8_group_span(j, g, &first, &len);
    float s = d->scales[g];
    int32_t zp = d->asymmetric ? d->zero_points[g] : 0;
    for (int64_t i = 0; i < len; i++) {
      int32_t c = d->asymmetric ? (int32_t)((const uint8_t *)d->q)[first + (size_t)i]
                                : (int32_t)((const int8_t *)d->q)[first + (size_t)i];
      store_f(j->out, j->type, first + (size_t)i, ftq_canonical_nan((float)(c - zp) * s));
    }
  }
}

ftq_status ftq_cpu_dequantize_int8(void *be, const ftq_int8_desc *d, void *out, ftq_dtype out_type) {
  if (!is_io_float(out_type))
    return ftq_error(FTQ_ERR_UNSUPPORTED, "dequantize_int8: output dtype %s (f32, f16 or bf16 expected)",
                     ftq_dtype_name(out_type));
  if (d->rows <= 0 || d->cols <= 0) return FTQ_OK;
  int64_t gpr = ftq_ceil_div64(d->cols, d->group);
  i8_job job = {d, NULL, FTQ_DTYPE_F32, out, gpr, NULL};
  job.type = out_type;
  ftq_parallel_for(pool_of(be), (size_t)(d->rows * gpr), (size_t)(65536 / d->group) + 1, i8_dequantize_range, &job);
  return FTQ_OK;
}

ftq_status ftq_cpu_mask_select(void *be, size_t n, const uint8_t *mask, const void *x, ftq_dtype type, void *out) {
  (void)be;
  size_t es = ftq_dtype_size(type);
  if (!es) return ftq_error(FTQ_ERR_UNSUPPORTED, "mask_select: dtype %s", ftq_dtype_name(type));
  for (size_t i = 0; i < n; i++) {
    if (!mask || mask[i]) {
      if (out != x) memcpy((char *)out + i * es, (const char *)x + i * es, es);
    } else {
      memset((char *)out + i * es, 0, es);
    }
  }
  return FTQ_OK;
}

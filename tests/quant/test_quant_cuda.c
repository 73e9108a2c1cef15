/* The CUDA quantization kernels against bitsandbytes' vectors and against
 * the CPU backend: codes, absmax, nested absmax, offsets, INT8 scales /
 * zero points / clip counts / masks bit-exact, dequantized values exact,
 * over every scheme, block size, input dtype, odd lengths, unaligned
 * buffers, special values, and data built to land on the pivots where the
 * approximate reciprocal decides (so the CPU's rcp.approx table is checked
 * against this GPU). */
#include <stdarg.h>

#include "core/context.h"
#include "quant/codebook.h"
#include "quant/quant_internal.h"
#include "ref_file.h"
#include "test_util.h"

static ftq_context *cpu, *gpu;
static int quick; /* FTQ_TEST_QUICK: small sizes only (under compute-sanitizer) */

/* A host copy of a qtensor part (device buffers on the GPU context). */
static void *host_copy(const ftq_qtensor *q, const ftq_tensor *t) {
  size_t bytes = ftq_tensor_bytes(t);
  void *h = malloc(bytes ? bytes : 1);
  if (bytes) REQUIRE_OK(q->ctx->be->copy(q->ctx->be_ctx, h, t->data, bytes, FTQ_COPY_D2H));
  return h;
}

static void *to_device(const void *host, size_t bytes, ftq_buffer *buf) {
  REQUIRE_OK(ftq_buffer_alloc(gpu, FTQ_MEM_OTHER, bytes ? bytes : 1, "test input", buf));
  if (bytes) REQUIRE_OK(gpu->be->copy(gpu->be_ctx, buf->ptr, host, bytes, FTQ_COPY_H2D));
  return buf->ptr;
}

static size_t ndiff(const void *a, const void *b, size_t n, size_t es) {
  size_t d = 0;
  for (size_t i = 0; i < n; i++) d += memcmp((const char *)a + i * es, (const char *)b + i * es, es) != 0;
  return d;
}

static void same_part(const char *what, const char *part, const ftq_qtensor *c, const ftq_tensor *tc,
                      const ftq_qtensor *g, const ftq_tensor *tg) {
  CHECK_MSG(ftq_tensor_bytes(tc) == ftq_tensor_bytes(tg), "%s %s: sizes differ", what, part);
  void *a = host_copy(c, tc), *b = host_copy(g, tg);
  size_t es = ftq_dtype_size(tc->dtype), n = ftq_tensor_bytes(tc) / (es ? es : 1);
  size_t d = ndiff(a, b, n, es);
  CHECK_MSG(d == 0, "%s %s: %zu of %zu elements differ between CPU and CUDA", what, part, d, n);
  free(a);
  free(b);
}

/* Quantizes `x` (host, dtype, shape) on both backends, compares every part
 * and the dequantized values. `unaligned` moves the GPU input one element
 * off 16-byte alignment. */
static void both(const char *what, const ftq_qconfig *cfg, const void *x, ftq_dtype dt, int ndim,
                 const int64_t *shape, int unaligned) {
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) n *= shape[i];
  size_t es = ftq_dtype_size(dt), bytes = (size_t)n * es, misalign = unaligned ? es : 0;
  ftq_qtensor qc, qg;
  REQUIRE_OK(ftq_qtensor_quantize(cpu, cfg, x, dt, ndim, shape, FTQ_MEM_OTHER, what, &qc));
  ftq_buffer in;
  char *padded = calloc(1, bytes + misalign);
  memcpy(padded + misalign, x, bytes);
  char *dx = to_device(padded, bytes + misalign, &in);
  REQUIRE_OK(ftq_qtensor_quantize(gpu, cfg, dx + misalign, dt, ndim, shape, FTQ_MEM_OTHER, what, &qg));
  ftq_buffer_free(gpu, &in);
  free(padded);
  if (cfg->scheme == FTQ_QSCHEME_NF4 || cfg->scheme == FTQ_QSCHEME_FP4) {
    same_part(what, "codes", &qc, &qc.packed, &qg, &qg.packed);
    same_part(what, "absmax", &qc, &qc.absmax, &qg, &qg.absmax);
    if (cfg->nested) {
      CHECK_MSG(ftq_f32_bits(qc.nested_offset) == ftq_f32_bits(qg.nested_offset), "%s: offsets %.9g / %.9g", what,
                qc.nested_offset, qg.nested_offset);
      same_part(what, "nested absmax", &qc, &qc.nested_absmax, &qg, &qg.nested_absmax);
    }
  } else {
    same_part(what, "codes", &qc, &qc.q8, &qg, &qg.q8);
    same_part(what, "scales", &qc, &qc.scales, &qg, &qg.scales);
    if (cfg->scheme == FTQ_QSCHEME_INT8_ASYM) same_part(what, "zero points", &qc, &qc.zero_points, &qg, &qg.zero_points);
    CHECK_MSG(qc.clipped == qg.clipped, "%s: clipped %lld (CPU) / %lld (CUDA)", what, (long long)qc.clipped,
              (long long)qg.clipped);
  }
  ftq_dtype outs[3] = {FTQ_DTYPE_F32, FTQ_DTYPE_F16, FTQ_DTYPE_BF16};
  for (int k = 0; k < 3; k++) {
    size_t ob = (size_t)n * ftq_dtype_size(outs[k]);
    void *hc = malloc(ob), *hg = malloc(ob);
    ftq_buffer out;
    REQUIRE_OK(ftq_buffer_alloc(gpu, FTQ_MEM_OTHER, ob + 2, "dequantized", &out));
    size_t mis = k == 2 ? 2 : 0; /* one unaligned output */
    CHECK_OK(ftq_qtensor_dequantize(&qc, outs[k], hc));
    CHECK_OK(ftq_qtensor_dequantize(&qg, outs[k], (char *)out.ptr + mis));
    REQUIRE_OK(gpu->be->copy(gpu->be_ctx, hg, (char *)out.ptr + mis, ob, FTQ_COPY_D2H));
    size_t d = ndiff(hc, hg, (size_t)n, ftq_dtype_size(outs[k]));
    CHECK_MSG(d == 0, "%s: %zu of %lld dequantized %s values differ", what, d, (long long)n, ftq_dtype_name(outs[k]));
    ftq_buffer_free(gpu, &out);
    free(hc);
    free(hg);
  }
  ftq_qtensor_release(&qc);
  ftq_qtensor_release(&qg);
}

static double gauss(uint64_t *s) {
  double u = ((double)(test_rand_u64(s) >> 11) + 0.5) / 9007199254740992.0;
  double v = ((double)(test_rand_u64(s) >> 11) + 0.5) / 9007199254740992.0;
  return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

static void *make_data(int64_t n, ftq_dtype dt, uint64_t seed, int specials) {
  float *f = malloc((size_t)n * sizeof(float));
  for (int64_t i = 0; i < n; i++) f[i] = (float)(gauss(&seed) * 0.02);
  if (specials && n > 300) {
    for (int64_t i = 64; i < 128 && i < n; i++) f[i] = 0.0f; /* a zero block at bs <= 64 */
    f[3] = NAN;
    f[5] = INFINITY;
    f[200] = -INFINITY;
    f[7] = 1e-40f;
    f[9] = -0.0f;
  }
  void *out = malloc((size_t)n * ftq_dtype_size(dt));
  REQUIRE_OK(ftq_backend_cpu()->convert(NULL, out, dt, f, FTQ_DTYPE_F32, (size_t)n));
  free(f);
  return out;
}

/* Blocks of 32 whose values are pivots times the block's absmax, so the
 * code depends on the last bit of the approximate reciprocal. */
static float *pivot_data(int64_t blocks, uint64_t seed) {
  float *f = malloc((size_t)blocks * 32 * sizeof(float));
  for (int64_t b = 0; b < blocks; b++) {
    uint32_t m = (uint32_t)(test_rand_u64(&seed) & 0x7fffffu);
    int e = 120 + (int)(test_rand_u64(&seed) % 10);
    float a = ftq_bits_f32((uint32_t)e << 23 | m);
    float *v = f + b * 32;
    v[0] = a;
    for (int k = 1; k < 32; k++) {
      float t = ftq_nf4_thresholds[(k - 1) % 15];
      if (k > 16) t = ftq_fp4_thresholds[(k - 17) % 7] * (k & 1 ? -1.0f : 1.0f);
      v[k] = (float)((double)t * (double)a);
      if (k % 3 == 0) v[k] = nextafterf(v[k], INFINITY);
      if (k % 5 == 0) v[k] = nextafterf(v[k], -INFINITY);
    }
  }
  return f;
}

static void four_bit(void) {
  int64_t lens[] = {1, 7, 33, 1000, 4097 * 3, 100003, (1 << 20) + 13};
  ftq_dtype dts[3] = {FTQ_DTYPE_F32, FTQ_DTYPE_F16, FTQ_DTYPE_BF16};
  uint64_t seed = 7;
  for (int s = 0; s < 2; s++)
    for (int d = 0; d < 3; d++)
      for (int64_t bs = 32; bs <= 4096; bs *= 2)
        for (int nested = 0; nested < 2; nested++)
          for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            int64_t n = lens[li];
            if (n > 200000 && (bs != 64 || d == 0)) continue; /* the big case at the common block size */
            if (quick && (n > 20000 || (bs != 64 && bs != 4096 && bs != 32))) continue;
            ftq_qconfig cfg = {s ? FTQ_QSCHEME_FP4 : FTQ_QSCHEME_NF4, bs, nested, FTQ_QGRAN_TENSOR, 0, 0, 0, 0};
            void *x = make_data(n, dts[d], seed++, 1);
            char what[128];
            snprintf(what, sizeof what, "%s %s bs %lld%s n %lld", s ? "fp4" : "nf4", ftq_dtype_name(dts[d]),
                     (long long)bs, nested ? " dq" : "", (long long)n);
            both(what, &cfg, x, dts[d], 1, &n, li == 3);
            free(x);
          }
  /* the approximate reciprocal at work: 2^16 blocks on the pivots */
  int64_t blocks = quick ? 256 : 1 << 16, n = blocks * 32;
  float *p = pivot_data(blocks, 99);
  ftq_qconfig nf4 = {FTQ_QSCHEME_NF4, 32, 0, FTQ_QGRAN_TENSOR, 0, 0, 0, 0}, fp4 = nf4;
  fp4.scheme = FTQ_QSCHEME_FP4;
  both("nf4 on the pivots", &nf4, p, FTQ_DTYPE_F32, 1, &n, 0);
  both("fp4 on the pivots", &fp4, p, FTQ_DTYPE_F32, 1, &n, 0);
  free(p);
}

static void int8(void) {
  ftq_dtype dts[3] = {FTQ_DTYPE_F32, FTQ_DTYPE_F16, FTQ_DTYPE_BF16};
  int64_t shapes[][2] = {{1, 1}, {7, 33}, {64, 4096}, {3, 10000}};
  ftq_qgranularity grans[3] = {FTQ_QGRAN_TENSOR, FTQ_QGRAN_CHANNEL, FTQ_QGRAN_GROUP};
  uint64_t seed = 1234;
  for (int a = 0; a < 2; a++)
    for (int g = 0; g < 3; g++)
      for (int d = 0; d < 3; d++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
          ftq_qconfig cfg = {a ? FTQ_QSCHEME_INT8_ASYM : FTQ_QSCHEME_INT8_SYM, 0, 0, grans[g], 100, 0, 0, 0};
          int64_t n = shapes[s][0] * shapes[s][1];
          if (quick && (n > 1000 || d == 1)) continue;
          void *x = make_data(n, dts[d], seed++, 1);
          char what[128];
          snprintf(what, sizeof what, "int8 %s gran %d %s [%lld, %lld]", a ? "asym" : "sym", g,
                   ftq_dtype_name(dts[d]), (long long)shapes[s][0], (long long)shapes[s][1]);
          both(what, &cfg, x, dts[d], 2, shapes[s], s == 2);
          /* calibrated (static) parameters clip */
          if (a && g == 0) {
            cfg.calibrated = 1;
            cfg.scale = 0.0003f;
            cfg.zero_point = 100;
            snprintf(what, sizeof what, "int8 calibrated %s [%lld, %lld]", ftq_dtype_name(dts[d]),
                     (long long)shapes[s][0], (long long)shapes[s][1]);
            both(what, &cfg, x, dts[d], 2, shapes[s], 0);
          }
          free(x);
        }
}

/* Every variant of the dequantization kernel (cuda/quant.cu) gives the
 * same values. */
static void dequant_variants(void) {
  /* pdl: the default on sm_90 (codes read before the previous kernel ends,
   * except right after their quantize); pdlsync: waits first; gc: the double-
   * quant code table from global memory */
  const char *variants[] = {"16", "16cs", "w1", "w1cs", "w2", "w2cs", "w4", "w4cs", "w2cs-pdl", "w2cs-pdlsync",
                            "w2cs-pdl-gc"};
  int64_t lens[] = {33, 4097, 100003, (1 << 20) + 13};
  uint64_t seed = 4242;
  for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
    setenv("FTQ_DEQUANT_VARIANT", variants[v], 1);
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++)
      for (int nested = 0; nested < 2; nested++) {
        int64_t n = lens[li];
        if (quick && n > 5000) continue;
        ftq_qconfig cfg = {nested ? FTQ_QSCHEME_NF4 : FTQ_QSCHEME_FP4, 64, nested, FTQ_QGRAN_TENSOR, 0, 0, 0, 0};
        void *x = make_data(n, FTQ_DTYPE_BF16, seed++, 1);
        char what[128];
        snprintf(what, sizeof what, "dequantize variant %s n %lld%s", variants[v], (long long)n, nested ? " dq" : "");
        both(what, &cfg, x, FTQ_DTYPE_BF16, 1, &n, 0);
        free(x);
      }
  }
  unsetenv("FTQ_DEQUANT_VARIANT");
}

/* bitsandbytes' own vectors, on the GPU. */
static void bnb_vectors(void) {
  ref_file rf;
  if (!ref_open("tests/ref/quant/quant_ref.bin", &rf)) {
    CHECK_MSG(0, "cannot read tests/ref/quant/quant_ref.bin");
    return;
  }
  const char *qts[2] = {"nf4", "fp4"}, *dts[3] = {"f32", "f16", "bf16"};
  ftq_dtype dt[3] = {FTQ_DTYPE_F32, FTQ_DTYPE_F16, FTQ_DTYPE_BF16};
  int cases = 0;
  for (int a = 0; a < 2; a++)
    for (int b = 0; b < 3; b++)
      for (int64_t bs = 16; bs <= 4096; bs *= 2) {
        char name[128], key[160];
        if (bs == 16) snprintf(name, sizeof name, "special/%s/%s", qts[a], dts[b]);
        else snprintf(name, sizeof name, "q4/%s/%s/bs%lld", qts[a], dts[b], (long long)bs);
        snprintf(key, sizeof key, "%s/x", name);
        const ref_rec *x = ref_get(&rf, key);
        snprintf(key, sizeof key, "%s/packed", name);
        const ref_rec *p = ref_get(&rf, key);
        snprintf(key, sizeof key, "%s/absmax", name);
        const ref_rec *am = ref_get(&rf, key);
        snprintf(key, sizeof key, "%s/deq", name);
        const ref_rec *dq = ref_get(&rf, key);
        if (!x || !p || !am || !dq) {
          CHECK_MSG(0, "records of %s missing", name);
          continue;
        }
        ftq_qconfig cfg = {a ? FTQ_QSCHEME_FP4 : FTQ_QSCHEME_NF4, bs == 16 ? 64 : bs, 0, FTQ_QGRAN_TENSOR, 0, 0, 0, 0};
        int64_t n = x->numel;
        ftq_buffer in;
        void *dx = to_device(x->data, x->bytes, &in);
        ftq_qtensor q;
        REQUIRE_OK(ftq_qtensor_quantize(gpu, &cfg, dx, dt[b], 1, &n, FTQ_MEM_OTHER, name, &q));
        void *hp = host_copy(&q, &q.packed), *ha = host_copy(&q, &q.absmax);
        CHECK_MSG(ndiff(hp, p->data, (size_t)p->numel, 1) == 0, "%s: CUDA codes differ from bitsandbytes", name);
        CHECK_MSG(ndiff(ha, am->data, (size_t)am->numel, 4) == 0, "%s: CUDA absmax differs from bitsandbytes", name);
        ftq_buffer out;
        REQUIRE_OK(ftq_buffer_alloc(gpu, FTQ_MEM_OTHER, dq->bytes, "deq", &out));
        CHECK_OK(ftq_qtensor_dequantize(&q, dt[b], out.ptr));
        void *hd = malloc(dq->bytes);
        REQUIRE_OK(gpu->be->copy(gpu->be_ctx, hd, out.ptr, dq->bytes, FTQ_COPY_D2H));
        CHECK_MSG(memcmp(hd, dq->data, dq->bytes) == 0, "%s: CUDA dequantized values differ from bitsandbytes", name);
        free(hp);
        free(ha);
        free(hd);
        ftq_buffer_free(gpu, &out);
        ftq_buffer_free(gpu, &in);
        ftq_qtensor_release(&q);
        cases++;
      }
  CHECK(cases == 54);
  ref_close(&rf);
}

/* The public API on a CUDA context agrees with the CPU context. */
static void public_api(void) {
  ftq_options *o;
  REQUIRE_OK(ftq_options_create(&o));
  REQUIRE_OK(ftq_options_set_string(o, "bnb_4bit_quant_type", "nf4"));
  REQUIRE_OK(ftq_options_set_bool(o, "bnb_4bit_use_double_quant", 1));
  ftq_quantizer *qc, *qg;
  REQUIRE_OK(ftq_quantizer_create(cpu, o, &qc));
  REQUIRE_OK(ftq_quantizer_create(gpu, o, &qg));
  int64_t shape[2] = {quick ? 4 : 128, 4096}, n = shape[0] * shape[1];
  uint16_t *x = make_data(n, FTQ_DTYPE_BF16, 5, 0);
  ftq_qtensor *tc, *tg;
  REQUIRE_OK(ftq_quantizer_quantize(qc, x, FTQ_BFLOAT16, FTQ_HOST, 2, shape, &tc));
  REQUIRE_OK(ftq_quantizer_quantize(qg, x, FTQ_BFLOAT16, FTQ_HOST, 2, shape, &tg));
  CHECK(ftq_qtensor_bytes(tc) == ftq_qtensor_bytes(tg));
  uint16_t *yc = malloc((size_t)n * 2), *yg = malloc((size_t)n * 2);
  CHECK_OK(ftq_qtensor_dequantize_into(tc, yc, FTQ_BFLOAT16, FTQ_HOST, (size_t)n));
  CHECK_OK(ftq_qtensor_dequantize_into(tg, yg, FTQ_BFLOAT16, FTQ_HOST, (size_t)n));
  CHECK(memcmp(yc, yg, (size_t)n * 2) == 0);
  CHECK_OK(ftq_quantizer_fake_quantize(qg, x, yg, FTQ_BFLOAT16, FTQ_HOST, 2, shape));
  CHECK(memcmp(yc, yg, (size_t)n * 2) == 0);
  double sc[6], sg[6];
  CHECK_OK(ftq_quantizer_error_stats(qc, x, FTQ_BFLOAT16, FTQ_HOST, 2, shape, sc, 6));
  CHECK_OK(ftq_quantizer_error_stats(qg, x, FTQ_BFLOAT16, FTQ_HOST, 2, shape, sg, 6));
  CHECK(memcmp(sc, sg, sizeof sc) == 0);
  ftq_qtensor_destroy(tc);
  ftq_qtensor_destroy(tg);
  ftq_quantizer_destroy(qc);
  ftq_quantizer_destroy(qg);
  free(x);
  free(yc);
  free(yg);
  ftq_options_destroy(o);
}

int main(void) {
  int count = 0;
  ftq_cuda_device_count(&count);
  if (count == 0) return test_gpu_unavailable("test_quant_cuda", ftq_last_error());
  const char *q = getenv("FTQ_TEST_QUICK");
  quick = q && *q && strcmp(q, "0") != 0;
  REQUIRE_OK(ftq_context_create("cpu", NULL, &cpu));
  REQUIRE_OK(ftq_context_create("cuda:0", NULL, &gpu));
  bnb_vectors();
  four_bit();
  dequant_variants();
  int8();
  public_api();
  size_t cur;
  CHECK_OK(ftq_context_memory(gpu, FTQ_MEM_ALL, &cur, NULL));
  CHECK_MSG(cur == 0, "%zu device bytes still held", cur);
  ftq_context_destroy(gpu);
  ftq_context_destroy(cpu);
  return test_finish("test_quant_cuda");
}

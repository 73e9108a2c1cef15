/* INT8 (symmetric and asymmetric; per tensor, per channel, per group)
 * against a float64 recomputation of the definitions (qlora-spec §3.3):
 * scales, zero points, codes with round half to even, clipping and its
 * count, the straight-through mask, dequantized values; and the model
 * loader's entry point (ftq_qtensor_quantize_host) for every scheme. */
#include "core/context.h"
#include "core/half.h"
#include "quant/quant_internal.h"
#include "test_util.h"

static ftq_context *ctx;

static float to_f32(const void *x, ftq_dtype t, size_t i) {
  if (t == FTQ_DTYPE_F16) return ftq_f16_to_f32(((const uint16_t *)x)[i]);
  if (t == FTQ_DTYPE_BF16) return ftq_bf16_to_f32(((const uint16_t *)x)[i]);
  return ((const float *)x)[i];
}

/* The definitions, in double, for one group. */
typedef struct ref_group {
  float scale;
  int32_t zp;
} ref_group;

static ref_group ref_params(const void *x, ftq_dtype t, size_t first, int64_t len, int asym) {
  double lo = 0, hi = 0, amax = 0;
  for (int64_t i = 0; i < len; i++) {
    double v = to_f32(x, t, first + (size_t)i);
    if (!isfinite(v)) continue;
    lo = v < lo ? v : lo;
    hi = v > hi ? v : hi;
    amax = fabs(v) > amax ? fabs(v) : amax;
  }
  ref_group g;
  if (!asym) {
    g.scale = (float)(amax / 127.0);
    g.zp = 0;
  } else {
    g.scale = (float)((hi - lo) / 255.0);
    double z = g.scale > 0 ? nearbyint(-lo / (double)g.scale) : 0.0;
    g.zp = (int32_t)fmin(fmax(z, 0.0), 255.0);
  }
  return g;
}

static int32_t ref_code(double v, ref_group g, int asym, int *clip) {
  double lo = asym ? 0 : -127, hi = asym ? 255 : 127;
  *clip = 0;
  if (isnan(v)) return g.zp;
  if (g.scale == 0) {
    *clip = v != 0;
    return g.zp;
  }
  double q = nearbyint(v / (double)g.scale) + g.zp; /* the default rounding: half to even */
  if (q < lo || q > hi) *clip = 1;
  return (int32_t)fmin(fmax(q, lo), hi);
}

static void check_case(ftq_qscheme scheme, ftq_qgranularity gran, int64_t group_size, ftq_dtype dt, int64_t rows,
                       int64_t cols, const void *x, const ftq_qconfig *calib) {
  int asym = scheme == FTQ_QSCHEME_INT8_ASYM;
  ftq_qconfig cfg = {scheme, 0, 0, gran, group_size, 0, 0, 0};
  if (calib) cfg = *calib;
  int64_t shape[2] = {rows, cols};
  ftq_qtensor q;
  char what[128];
  snprintf(what, sizeof what, "%s gran %d g %lld %s [%lld, %lld]%s", asym ? "asym" : "sym", (int)gran,
           (long long)group_size, ftq_dtype_name(dt), (long long)rows, (long long)cols, calib ? " calibrated" : "");
  REQUIRE_OK(ftq_qtensor_quantize(ctx, &cfg, x, dt, 2, shape, FTQ_MEM_OTHER, what, &q));
  int64_t r, c, group;
  ftq_int8_geometry(2, shape, gran, group_size, &r, &c, &group);
  int64_t gpr = (c + group - 1) / group;
  int64_t clipped = 0, bad_params = 0, bad_codes = 0, bad_deq = 0;
  float *deq = malloc((size_t)(rows * cols) * sizeof(float));
  REQUIRE_OK(ftq_qtensor_dequantize(&q, FTQ_DTYPE_F32, deq));
  uint8_t *mask = malloc((size_t)(rows * cols));
  CHECK_OK(ftq_qtensor_clip_mask(&q, x, dt, mask));
  int64_t bad_mask = 0;
  for (int64_t row = 0; row < r; row++)
    for (int64_t j = 0; j < gpr; j++) {
      int64_t col0 = j * group, len = c - col0 < group ? c - col0 : group;
      size_t first = (size_t)(row * c + col0);
      ref_group g = calib ? (ref_group){calib->scale, calib->zero_point} : ref_params(x, dt, first, len, asym);
      int64_t gi = row * gpr + j;
      float s = ((float *)q.scales.data)[gi];
      int32_t zp = asym ? ((int32_t *)q.zero_points.data)[gi] : 0;
      bad_params += ftq_f32_bits(s) != ftq_f32_bits(g.scale) || zp != g.zp;
      for (int64_t i = 0; i < len; i++) {
        int clip;
        int32_t code = ref_code(to_f32(x, dt, first + (size_t)i), g, asym, &clip);
        int32_t got = asym ? ((uint8_t *)q.q8.data)[first + (size_t)i] : ((int8_t *)q.q8.data)[first + (size_t)i];
        bad_codes += got != code;
        clipped += clip;
        bad_mask += mask[first + (size_t)i] != !clip;
        /* (q - zp) * s: exact in double, rounded once to fp32 */
        float want = (float)((double)(code - g.zp) * (double)g.scale);
        bad_deq += ftq_f32_bits(deq[first + (size_t)i]) != ftq_f32_bits(want);
      }
    }
  CHECK_MSG(bad_params == 0, "%s: %lld groups with other scale / zero point than the definition", what,
            (long long)bad_params);
  CHECK_MSG(bad_codes == 0, "%s: %lld codes differ from the definition", what, (long long)bad_codes);
  CHECK_MSG(bad_deq == 0, "%s: %lld dequantized values differ", what, (long long)bad_deq);
  CHECK_MSG(bad_mask == 0, "%s: %lld mask entries differ", what, (long long)bad_mask);
  CHECK_MSG(q.clipped == clipped, "%s: clipped %lld, definition %lld", what, (long long)q.clipped, (long long)clipped);
  free(deq);
  free(mask);
  ftq_qtensor_release(&q);
}

static void *data(int64_t n, ftq_dtype dt, uint64_t seed) {
  float *f = malloc((size_t)n * sizeof(float));
  for (int64_t i = 0; i < n; i++) f[i] = test_rand_uniform(&seed) * (i % 17 == 0 ? 3.0f : 0.5f);
  if (n > 40) {
    f[2] = NAN;
    f[11] = INFINITY;
    f[12] = -INFINITY;
    f[13] = 0.0f;
    f[14] = -0.0f;
    f[15] = 1e-40f;
  }
  void *out = malloc((size_t)n * ftq_dtype_size(dt));
  REQUIRE_OK(ftq_backend_cpu()->convert(NULL, out, dt, f, FTQ_DTYPE_F32, (size_t)n));
  free(f);
  return out;
}

static void ties(void) {
  /* absmax 127 gives scale 1 exactly: halves round to even */
  float x[8] = {127.0f, 2.5f, 3.5f, -2.5f, -3.5f, 0.5f, -0.5f, 126.5f};
  int8_t want[8] = {127, 2, 4, -2, -4, 0, 0, 126};
  ftq_qconfig cfg = {FTQ_QSCHEME_INT8_SYM, 0, 0, FTQ_QGRAN_TENSOR, 0, 0, 0, 0};
  int64_t n = 8;
  ftq_qtensor q;
  REQUIRE_OK(ftq_qtensor_quantize(ctx, &cfg, x, FTQ_DTYPE_F32, 1, &n, FTQ_MEM_OTHER, "ties", &q));
  CHECK(((float *)q.scales.data)[0] == 1.0f);
  for (int i = 0; i < 8; i++) CHECK_MSG(((int8_t *)q.q8.data)[i] == want[i], "tie %g -> %d", x[i], ((int8_t *)q.q8.data)[i]);
  ftq_qtensor_release(&q);
}

static void loader(void) {
  ftq_options *o;
  REQUIRE_OK(ftq_options_create(&o));
  float w[6 * 64];
  uint64_t seed = 3;
  for (int i = 0; i < 6 * 64; i++) w[i] = test_rand_uniform(&seed);
  ftq_qtensor q;
  /* nothing set: a plain copy */
  REQUIRE_OK(ftq_qtensor_quantize_host(ctx, o, w, FTQ_DTYPE_F32, 6, 64, "w", &q));
  CHECK(q.scheme == FTQ_QSCHEME_NONE && memcmp(q.plain.data, w, sizeof w) == 0);
  ftq_qtensor_release(&q);
  REQUIRE_OK(ftq_options_set_bool(o, "load_in_4bit", 1));
  REQUIRE_OK(ftq_options_set_string(o, "bnb_4bit_quant_type", "nf4"));
  REQUIRE_OK(ftq_options_set_bool(o, "bnb_4bit_use_double_quant", 1));
  REQUIRE_OK(ftq_qtensor_quantize_host(ctx, o, w, FTQ_DTYPE_F32, 6, 64, "w", &q));
  CHECK(q.scheme == FTQ_QSCHEME_NF4 && q.nested && q.blocksize == 64 && q.shape[0] == 6 && q.shape[1] == 64);
  size_t cur;
  CHECK_OK(ftq_context_memory(ctx, FTQ_MEM_WEIGHTS, &cur, NULL));
  CHECK(cur == ftq_qtensor_bytes(&q));
  ftq_qtensor_release(&q);
  REQUIRE_OK(ftq_options_set_bool(o, "load_in_8bit", 1));
  CHECK_STATUS(ftq_qtensor_quantize_host(ctx, o, w, FTQ_DTYPE_F32, 6, 64, "w", &q), FTQ_ERR_OPTION_RANGE);
  REQUIRE_OK(ftq_options_set_bool(o, "load_in_4bit", 0));
  REQUIRE_OK(ftq_qtensor_quantize_host(ctx, o, w, FTQ_DTYPE_F32, 6, 64, "w", &q));
  CHECK(q.scheme == FTQ_QSCHEME_INT8_SYM && q.granularity == FTQ_QGRAN_CHANNEL && q.scales.shape[0] == 6);
  ftq_qtensor_release(&q);
  CHECK_STATUS(ftq_qtensor_quantize_host(ctx, o, w, FTQ_DTYPE_I32, 6, 64, "w", &q), FTQ_ERR_UNSUPPORTED);
  CHECK_ERROR_MENTIONS("w");
  ftq_options_destroy(o);
}

int main(void) {
  REQUIRE_OK(ftq_context_create("cpu", NULL, &ctx));
  ftq_dtype dts[3] = {FTQ_DTYPE_F32, FTQ_DTYPE_F16, FTQ_DTYPE_BF16};
  int64_t shapes[][2] = {{1, 1}, {5, 33}, {16, 256}, {2, 5000}};
  ftq_qgranularity grans[3] = {FTQ_QGRAN_TENSOR, FTQ_QGRAN_CHANNEL, FTQ_QGRAN_GROUP};
  uint64_t seed = 11;
  for (int a = 0; a < 2; a++)
    for (int g = 0; g < 3; g++)
      for (int d = 0; d < 3; d++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
          int64_t n = shapes[s][0] * shapes[s][1];
          void *x = data(n, dts[d], seed++);
          ftq_qscheme scheme = a ? FTQ_QSCHEME_INT8_ASYM : FTQ_QSCHEME_INT8_SYM;
          check_case(scheme, grans[g], 7, dts[d], shapes[s][0], shapes[s][1], x, NULL);
          if (g == 2) check_case(scheme, grans[g], 64, dts[d], shapes[s][0], shapes[s][1], x, NULL);
          if (a && g == 0) {
            ftq_qconfig cal = {scheme, 0, 0, FTQ_QGRAN_TENSOR, 0, 1, 0.002f, 120};
            check_case(scheme, grans[g], 0, dts[d], shapes[s][0], shapes[s][1], x, &cal);
          }
          free(x);
        }
  /* all-zero and all-NaN groups */
  float z[64] = {0};
  check_case(FTQ_QSCHEME_INT8_SYM, FTQ_QGRAN_CHANNEL, 0, FTQ_DTYPE_F32, 4, 16, z, NULL);
  check_case(FTQ_QSCHEME_INT8_ASYM, FTQ_QGRAN_CHANNEL, 0, FTQ_DTYPE_F32, 4, 16, z, NULL);
  for (int i = 0; i < 64; i++) z[i] = NAN;
  check_case(FTQ_QSCHEME_INT8_ASYM, FTQ_QGRAN_TENSOR, 0, FTQ_DTYPE_F32, 4, 16, z, NULL);
  ties();
  loader();
  ftq_context_destroy(ctx);
  return test_finish("test_quant_int8");
}

/* The public quantizer API as an application uses it (libftq.so only):
 * options, sizes, quantize / dequantize on host buffers in every element
 * type, fake quantization forward and backward, and errors that name what
 * is wrong. */
#include "test_util.h"

static ftq_context *ctx;

static ftq_quantizer *make(const char *type, int64_t bs, int dq, int int8, const char *scheme, const char *gran) {
  ftq_options *o;
  REQUIRE_OK(ftq_options_create(&o));
  if (type) REQUIRE_OK(ftq_options_set_string(o, "bnb_4bit_quant_type", type));
  if (bs) REQUIRE_OK(ftq_options_set_int(o, "quant_blocksize", bs));
  REQUIRE_OK(ftq_options_set_bool(o, "bnb_4bit_use_double_quant", dq));
  REQUIRE_OK(ftq_options_set_bool(o, "load_in_8bit", int8));
  if (scheme) REQUIRE_OK(ftq_options_set_string(o, "int8_scheme", scheme));
  if (gran) REQUIRE_OK(ftq_options_set_string(o, "int8_granularity", gran));
  ftq_quantizer *q;
  REQUIRE_OK(ftq_quantizer_create(ctx, o, &q));
  ftq_options_destroy(o);
  return q;
}

static uint16_t f2bf(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

static void round_trip(ftq_quantizer *q, int expect_scheme, const char *what) {
  int64_t shape[2] = {24, 200}, n = shape[0] * shape[1];
  float *x = malloc((size_t)n * 4), *y = malloc((size_t)n * 4), *z = malloc((size_t)n * 4);
  uint16_t *xb = malloc((size_t)n * 2), *yb = malloc((size_t)n * 2);
  uint64_t seed = 5;
  for (int64_t i = 0; i < n; i++) {
    x[i] = test_rand_uniform(&seed) * 0.1f;
    xb[i] = f2bf(x[i]);
  }
  CHECK(ftq_quantizer_scheme(q) == expect_scheme);
  size_t bytes;
  CHECK_OK(ftq_quantizer_quantized_bytes(q, 2, shape, &bytes));
  ftq_qtensor *t;
  REQUIRE_OK(ftq_quantizer_quantize(q, x, FTQ_FLOAT32, FTQ_HOST, 2, shape, &t));
  CHECK_MSG(ftq_qtensor_bytes(t) == bytes, "%s: %zu bytes held, %zu reported", what, ftq_qtensor_bytes(t), bytes);
  CHECK(bytes < (size_t)n * 2); /* smaller than bf16 */
  int64_t sh[4] = {0};
  CHECK(ftq_qtensor_shape(t, sh, 4) == 2 && sh[0] == 24 && sh[1] == 200);
  CHECK(ftq_qtensor_scheme(t) == expect_scheme);
  CHECK(ftq_qtensor_clipped(t) == 0);
  CHECK_OK(ftq_qtensor_dequantize_into(t, y, FTQ_FLOAT32, FTQ_HOST, (size_t)n));
  double err = test_rel_error_f32(y, x, (size_t)n);
  CHECK_MSG(err > 0 && err < (expect_scheme >= FTQ_QSCHEME_INT8_SYM ? 0.02 : 0.2), "%s: relative error %g", what, err);
  /* the same values in every output type */
  CHECK_OK(ftq_qtensor_dequantize_into(t, yb, FTQ_BFLOAT16, FTQ_DEVICE, (size_t)n)); /* CPU: device = host */
  for (int64_t i = 0; i < n; i++) CHECK(yb[i] == f2bf(y[i]));
  CHECK_STATUS(ftq_qtensor_dequantize_into(t, y, FTQ_FLOAT32, FTQ_HOST, (size_t)n - 1), FTQ_ERR_INVALID_ARGUMENT);
  CHECK_ERROR_MENTIONS("elements");
  /* fake quantization equals quantize + dequantize, also in place */
  memcpy(z, x, (size_t)n * 4);
  CHECK_OK(ftq_quantizer_fake_quantize(q, z, z, FTQ_FLOAT32, FTQ_HOST, 2, shape));
  CHECK(memcmp(z, y, (size_t)n * 4) == 0);
  /* backward: nothing clips with the tensor's own range */
  CHECK_OK(ftq_quantizer_fake_quantize_backward(q, x, x, z, FTQ_FLOAT32, FTQ_HOST, 2, shape));
  CHECK(memcmp(z, x, (size_t)n * 4) == 0);
  /* bf16 input */
  ftq_qtensor *tb;
  CHECK_OK(ftq_quantizer_quantize(q, xb, FTQ_BFLOAT16, FTQ_HOST, 2, shape, &tb));
  ftq_qtensor_destroy(tb);
  double st[6];
  CHECK_OK(ftq_quantizer_error_stats(q, xb, FTQ_BFLOAT16, FTQ_HOST, 2, shape, st, 6));
  CHECK(st[FTQ_QSTAT_SQNR_DB] > 10);
  ftq_qtensor_destroy(t);
  free(x);
  free(y);
  free(z);
  free(xb);
  free(yb);
}

static void errors(void) {
  ftq_quantizer *q = make("nf4", 0, 0, 0, NULL, NULL);
  float x[4] = {1, 2, 3, 4};
  int64_t shape[2] = {2, 2}, bad[2] = {2, 0};
  ftq_qtensor *t = (ftq_qtensor *)&t;
  CHECK_STATUS(ftq_quantizer_quantize(q, NULL, FTQ_FLOAT32, FTQ_HOST, 2, shape, &t), FTQ_ERR_INVALID_ARGUMENT);
  CHECK(t == NULL);
  CHECK_STATUS(ftq_quantizer_quantize(q, x, (ftq_float_type)7, FTQ_HOST, 2, shape, &t), FTQ_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(ftq_quantizer_quantize(q, x, FTQ_FLOAT32, FTQ_HOST, 0, shape, &t), FTQ_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(ftq_quantizer_quantize(q, x, FTQ_FLOAT32, FTQ_HOST, 5, shape, &t), FTQ_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(ftq_quantizer_quantize(q, x, FTQ_FLOAT32, FTQ_HOST, 2, bad, &t), FTQ_ERR_INVALID_ARGUMENT);
  CHECK_ERROR_MENTIONS("dimension 1");
  CHECK_STATUS(ftq_quantizer_quantize(NULL, x, FTQ_FLOAT32, FTQ_HOST, 2, shape, &t), FTQ_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(ftq_quantizer_quantize(q, x, FTQ_FLOAT32, (ftq_memory_location)3, 2, shape, &t),
               FTQ_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(ftq_quantizer_fake_quantize(q, x, NULL, FTQ_FLOAT32, FTQ_HOST, 2, shape), FTQ_ERR_INVALID_ARGUMENT);
  size_t b;
  CHECK_STATUS(ftq_quantizer_quantized_bytes(q, 2, bad, &b), FTQ_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(ftq_quantizer_observe(q, x, (ftq_float_type)9, FTQ_HOST, 4), FTQ_ERR_INVALID_ARGUMENT);
  ftq_quantizer_destroy(q);
  /* options */
  ftq_options *o;
  REQUIRE_OK(ftq_options_create(&o));
  CHECK_STATUS(ftq_options_set_int(o, "quant_blocksize", 16), FTQ_ERR_OPTION_RANGE);
  CHECK_STATUS(ftq_options_set_string(o, "bnb_4bit_quant_type", "int4"), FTQ_ERR_OPTION_RANGE);
  REQUIRE_OK(ftq_options_set_int(o, "quant_blocksize", 100));
  CHECK_STATUS(ftq_quantizer_create(ctx, o, &q), FTQ_ERR_OPTION_RANGE);
  CHECK_ERROR_MENTIONS("quant_blocksize");
  CHECK(q == NULL);
  REQUIRE_OK(ftq_options_set_int(o, "quant_blocksize", 4096));
  REQUIRE_OK(ftq_options_set_bool(o, "load_in_4bit", 1));
  REQUIRE_OK(ftq_options_set_bool(o, "load_in_8bit", 1));
  CHECK_STATUS(ftq_quantizer_create(ctx, o, &q), FTQ_ERR_OPTION_RANGE);
  CHECK_ERROR_MENTIONS("load_in_8bit");
  CHECK_STATUS(ftq_quantizer_create(NULL, o, &q), FTQ_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(ftq_quantizer_create(ctx, o, NULL), FTQ_ERR_INVALID_ARGUMENT);
  CHECK_OK(ftq_options_load_json(o, "{\"load_in_8bit\": false, \"bnb_4bit_quant_type\": \"nf4\","
                                    " \"bnb_4bit_use_double_quant\": true, \"bnb_4bit_compute_dtype\": \"bfloat16\"}"));
  CHECK_OK(ftq_quantizer_create(ctx, o, &q));
  CHECK(ftq_quantizer_scheme(q) == FTQ_QSCHEME_NF4);
  ftq_quantizer_destroy(q);
  ftq_options_destroy(o);
  /* NULL handles */
  ftq_quantizer_destroy(NULL);
  ftq_qtensor_destroy(NULL);
  ftq_quantizer_reset_calibration(NULL);
  CHECK(ftq_quantizer_scheme(NULL) == -1 && ftq_qtensor_scheme(NULL) == -1 && ftq_qtensor_shape(NULL, NULL, 0) == -1);
  CHECK(ftq_qtensor_bytes(NULL) == 0 && ftq_qtensor_clipped(NULL) == -1);
  const char *names[] = {"load_in_4bit", "load_in_8bit", "bnb_4bit_quant_type", "bnb_4bit_use_double_quant",
                         "bnb_4bit_compute_dtype", "quant_blocksize", "int8_scheme", "int8_granularity",
                         "int8_group_size", "observer", "observer_percentile"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    size_t idx;
    CHECK_MSG(ftq_option_find(names[i], &idx) == FTQ_OK && strcmp(ftq_option_group(idx), "quant") == 0,
              "option %s", names[i]);
  }
}

int main(void) {
  REQUIRE_OK(ftq_context_create("cpu", NULL, &ctx));
  ftq_quantizer *q = make(NULL, 0, 0, 0, NULL, NULL); /* bitsandbytes' defaults: fp4, 64 */
  round_trip(q, FTQ_QSCHEME_FP4, "default (fp4)");
  ftq_quantizer_destroy(q);
  q = make("nf4", 128, 1, 0, NULL, NULL);
  round_trip(q, FTQ_QSCHEME_NF4, "nf4 bs 128 dq");
  ftq_quantizer_destroy(q);
  q = make("nf4", 32, 0, 0, NULL, NULL);
  round_trip(q, FTQ_QSCHEME_NF4, "nf4 bs 32");
  ftq_quantizer_destroy(q);
  q = make(NULL, 0, 0, 1, "symmetric", "group");
  round_trip(q, FTQ_QSCHEME_INT8_SYM, "int8 sym group");
  ftq_quantizer_destroy(q);
  q = make(NULL, 0, 0, 1, "asymmetric", "channel");
  round_trip(q, FTQ_QSCHEME_INT8_ASYM, "int8 asym channel");
  ftq_quantizer_destroy(q);
  errors();
  size_t cur;
  CHECK_OK(ftq_context_memory(ctx, FTQ_MEM_ALL, &cur, NULL));
  CHECK_MSG(cur == 0, "%zu bytes still accounted", cur);
  ftq_context_destroy(ctx);
  return test_finish("test_quant_api");
}

/* Merging: merged weights against a float64 recomputation of
 * W + scaling B A from the reference files; merged model folders (f32,
 * bf16, sharded, NF4 re-quantized in bitsandbytes' layout, from an NF4 base,
 * from a GGUF base) checked tensor by tensor, loaded back and run against
 * PEFT's merge_and_unload() logits; files copied; errors. */
#include <jansson.h>

#include "core/half.h"
#include "lora/lora.h"
#include "peft_test.h"

#define QVOD REF_DIR "/adapter_qvod"
static const double TOL = 2e-5;

static const char *const PROJ[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};

static const float *tensor_f32(const ftq_safetensors *f, const char *name, int64_t *rows, int64_t *cols) {
  const ftq_st_tensor *t = ftq_safetensors_find(f, name);
  if (!t || t->dtype != FTQ_DTYPE_F32 || t->ndim != 2) {
    fprintf(stderr, "%s: no f32 matrix %s\n", ftq_safetensors_path(f), name);
    exit(1);
  }
  *rows = t->shape[0];
  *cols = t->shape[1];
  return t->data;
}

/* W + scaling B A in float64 from the files, for (layer, projection). */
static double *merged64(const ftq_safetensors *base, const ftq_safetensors *ad, int layer, int p, double scaling,
                        int *adapted, int64_t *out, int64_t *in) {
  char name[160];
  snprintf(name, sizeof name, "model.layers.%d.%s.weight", layer, PROJ[p]);
  const float *W = tensor_f32(base, name, out, in);
  double *y = malloc(sizeof(double) * (size_t)(*out * *in));
  for (int64_t i = 0; i < *out * *in; i++) y[i] = W[i];
  snprintf(name, sizeof name, "base_model.model.model.layers.%d.%s.lora_A.weight", layer, PROJ[p]);
  *adapted = ftq_safetensors_find(ad, name) != NULL;
  if (!*adapted) return y;
  int64_t r, in2, out2, r2;
  const float *A = tensor_f32(ad, name, &r, &in2);
  snprintf(name, sizeof name, "base_model.model.model.layers.%d.%s.lora_B.weight", layer, PROJ[p]);
  const float *B = tensor_f32(ad, name, &out2, &r2);
  for (int64_t o = 0; o < *out; o++)
    for (int64_t i = 0; i < *in; i++) {
      double s = 0;
      for (int64_t k = 0; k < r; k++) s += (double)B[o * r + k] * (double)A[k * *in + i];
      y[o * *in + i] += scaling * s;
    }
  return y;
}

static float *merged_weight(ftq_model *m, const ftq_lora *l, int layer, int p, size_t *n) {
  char name[128];
  int64_t shape[2];
  snprintf(name, sizeof name, "model.layers.%d.%s.weight", layer, PROJ[p]);
  REQUIRE_OK(ftq_model_merged_weight(m, l, name, NULL, 0, shape));
  *n = (size_t)(shape[0] * shape[1]);
  float *w = malloc(sizeof(float) * *n);
  REQUIRE_OK(ftq_model_merged_weight(m, l, name, w, *n, NULL));
  return w;
}

static void check_merged_weights(ftq_model *m, const ftq_lora *l) {
  ftq_safetensors *base, *ad;
  REQUIRE_OK(ftq_safetensors_open(TINY "/model.safetensors", &base));
  REQUIRE_OK(ftq_safetensors_open(QVOD "/adapter_model.safetensors", &ad));
  for (int layer = 0; layer < 2; layer++)
    for (int p = 0; p < 7; p++) {
      int adapted;
      int64_t out, in;
      double *ref = merged64(base, ad, layer, p, 8.0 / 4.0, &adapted, &out, &in);
      size_t n;
      float *got = merged_weight(m, l, layer, p, &n);
      CHECK(n == (size_t)(out * in));
      double err = 0, big = 0;
      int exact = 1;
      for (size_t i = 0; i < n; i++) {
        err = fmax(err, fabs(got[i] - ref[i]));
        big = fmax(big, fabs(ref[i]));
        exact &= !adapted ? got[i] == (float)ref[i] : 1;
      }
      CHECK_MSG(err <= 1e-6 * big, "layer %d %s: merged weight off by %.3g (max %.3g)", layer, PROJ[p], err, big);
      CHECK_MSG(exact, "layer %d %s: a projection the adapter leaves alone changed", layer, PROJ[p]);
      free(ref);
      free(got);
    }
  /* the base weight alone is the checkpoint's, bit for bit */
  size_t n;
  int64_t out, in;
  float *plain = merged_weight(m, NULL, 1, 3, &n);
  const float *W = tensor_f32(base, "model.layers.1.self_attn.o_proj.weight", &out, &in);
  CHECK(memcmp(plain, W, n * sizeof(float)) == 0);
  free(plain);
  /* errors */
  float x[4];
  CHECK_STATUS(ftq_model_merged_weight(m, l, "model.norm.weight", x, 4, NULL), FTQ_ERR_NOT_FOUND);
  CHECK_ERROR_MENTIONS("model.norm.weight");
  CHECK_STATUS(ftq_model_merged_weight(m, l, "model.layers.0.self_attn.q_proj.weight", x, 4, NULL), FTQ_ERR_SHAPE);
  CHECK_STATUS(ftq_model_merged_weight(m, l, "model.layers.7.self_attn.q_proj.weight", x, 4, NULL), FTQ_ERR_NOT_FOUND);
  ftq_safetensors_close(ad);
  ftq_safetensors_close(base);
}

/* Every tensor of a saved folder: the projections equal the merged weights
 * (rounded to `dtype`), the rest the checkpoint's (rounded likewise). */
static void check_saved_tensors(ftq_model *m, const ftq_lora *l, const char *dir, ftq_dtype dtype) {
  ftq_st_set *saved;
  ftq_safetensors *base;
  REQUIRE_OK(ftq_st_set_open(dir, &saved));
  REQUIRE_OK(ftq_safetensors_open(TINY "/model.safetensors", &base));
  CHECK_MSG(ftq_st_set_count(saved) == ftq_safetensors_count(base), "%zu tensors saved, the checkpoint has %zu",
            ftq_st_set_count(saved), ftq_safetensors_count(base));
  for (size_t i = 0; i < ftq_safetensors_count(base); i++) {
    const ftq_st_tensor *b = ftq_safetensors_tensor(base, i), *s = ftq_st_set_find(saved, b->name);
    CHECK_MSG(s && s->dtype == dtype && s->ndim == b->ndim && s->numel == b->numel, "tensor %s", b->name);
    if (!s || s->dtype != dtype || s->numel != b->numel) continue;
    const float *want = b->data;
    float *merged = NULL;
    int layer, p = -1;
    for (int k = 0; k < 7; k++) {
      char name[128];
      for (layer = 0; layer < 2 && p < 0; layer++) {
        snprintf(name, sizeof name, "model.layers.%d.%s.weight", layer, PROJ[k]);
        if (strcmp(name, b->name) == 0) p = k;
      }
      if (p >= 0) break;
    }
    if (p >= 0) {
      size_t n;
      want = merged = merged_weight(m, l, layer - 1, p, &n);
    }
    int same = 1;
    for (uint64_t e = 0; e < b->numel && same; e++) {
      if (dtype == FTQ_DTYPE_F32) same = ((const float *)s->data)[e] == want[e];
      else same = ((const uint16_t *)s->data)[e] == ftq_f32_to_bf16(want[e]);
    }
    CHECK_MSG(same, "%s: saved values differ from the %s ones", b->name, p >= 0 ? "merged" : "checkpoint's");
    free(merged);
  }
  ftq_safetensors_close(base);
  ftq_st_set_close(saved);
}

static json_t *load_json(const char *path) {
  json_error_t err;
  json_t *v = json_load_file(path, 0, &err);
  if (!v) fprintf(stderr, "%s: %s\n", path, err.text);
  return v;
}

static void check_config(const char *dir, const char *dtype, int quantized) {
  json_t *got = load_json(pt_path(dir, "config.json")), *src = load_json(TINY "/config.json");
  CHECK(got && src);
  if (!got || !src) return;
  CHECK(json_is_string(json_object_get(got, "dtype")) && strcmp(json_string_value(json_object_get(got, "dtype")), dtype) == 0);
  json_t *q = json_object_get(got, "quantization_config");
  CHECK(!quantized == !q);
  if (q) {
    CHECK(json_is_true(json_object_get(q, "load_in_4bit")));
    CHECK(strcmp(json_string_value(json_object_get(q, "quant_method")), "bitsandbytes") == 0);
    CHECK(strcmp(json_string_value(json_object_get(q, "bnb_4bit_quant_type")), "nf4") == 0);
    CHECK(json_is_true(json_object_get(q, "bnb_4bit_use_double_quant")));
  }
  /* every other key is the base model's */
  json_object_del(got, "dtype");
  json_object_del(got, "quantization_config");
  json_object_del(src, "dtype");
  CHECK_MSG(json_equal(got, src), "config.json keys other than dtype / quantization_config changed");
  json_decref(got);
  json_decref(src);
}

static void check_save_f32(ftq_model *m, const ftq_lora *l, const pt_ref *r, const char *tmp) {
  char dir[512];
  snprintf(dir, sizeof dir, "%s/merged", tmp);
  CHECK_OK(ftq_model_save_merged(m, l, dir, NULL));
  check_saved_tensors(m, l, dir, FTQ_DTYPE_F32);
  check_config(dir, "float32", 0);
  CHECK(pt_same_file(pt_path(dir, "tokenizer.json"), TINY "/tokenizer.json"));
  CHECK(pt_same_file(pt_path(dir, "tokenizer_config.json"), TINY "/tokenizer_config.json"));
  ftq_model *mm;
  REQUIRE_OK(ftq_model_load(m->ctx, dir, NULL, &mm));
  float *got = pt_logits(mm, r->ids), *adapter = pt_logits(m, r->ids);
  size_t n = (size_t)(ROWS * SEQ * r->vocab);
  double e1 = pt_max_rel(got, pt_ref_logits(r, "logits_qvod_merged"), n), e2 = pt_max_rel(got, adapter, n);
  CHECK_MSG(e1 < TOL, "merged model vs PEFT merge_and_unload: %.3g", e1);
  CHECK_MSG(e2 < TOL, "merged model vs base + adapter: %.3g", e2);
  free(got);

  /* sharded: same values in several files + the index */
  ftq_options *o;
  REQUIRE_OK(ftq_options_create(&o));
  REQUIRE_OK(ftq_options_set_string(o, "max_shard_size", "100KB"));
  snprintf(dir, sizeof dir, "%s/sharded", tmp);
  CHECK_OK(ftq_model_save_merged(m, l, dir, o));
  CHECK(access(pt_path(dir, "model.safetensors.index.json"), F_OK) == 0);
  /* the 156 kB embedding alone, then the layers */
  CHECK(access(pt_path(dir, "model-00002-of-00002.safetensors"), F_OK) == 0);
  check_saved_tensors(m, l, dir, FTQ_DTYPE_F32);
  ftq_model *ms;
  REQUIRE_OK(ftq_model_load(m->ctx, dir, NULL, &ms));
  float *got2 = pt_logits(ms, r->ids), *merged = pt_logits(mm, r->ids);
  CHECK(memcmp(got2, merged, n * sizeof(float)) == 0);
  free(got2);
  free(merged);
  free(adapter);
  ftq_model_destroy(ms);
  ftq_model_destroy(mm);

  /* bf16 weights, rounded to nearest even */
  REQUIRE_OK(ftq_options_unset(o, "max_shard_size"));
  REQUIRE_OK(ftq_options_set_string(o, "torch_dtype", "bfloat16"));
  snprintf(dir, sizeof dir, "%s/bf16", tmp);
  CHECK_OK(ftq_model_save_merged(m, l, dir, o));
  check_saved_tensors(m, l, dir, FTQ_DTYPE_BF16);
  check_config(dir, "bfloat16", 0);
  ftq_options_destroy(o);
}

/* NF4 re-quantization: every projection in bitsandbytes' layout, equal to
 * fake_quant(W') from the stand-alone quantizer. */
static void check_save_nf4(ftq_model *m, const ftq_lora *l, const char *tmp) {
  char dir[512];
  snprintf(dir, sizeof dir, "%s/nf4", tmp);
  ftq_options *o;
  REQUIRE_OK(ftq_options_create(&o));
  REQUIRE_OK(ftq_options_set_bool(o, "load_in_4bit", 1));
  REQUIRE_OK(ftq_options_set_string(o, "bnb_4bit_quant_type", "nf4"));
  REQUIRE_OK(ftq_options_set_bool(o, "bnb_4bit_use_double_quant", 1));
  CHECK_OK(ftq_model_save_merged(m, l, dir, o));
  check_config(dir, "float32", 1);
  ftq_quantizer *q;
  REQUIRE_OK(ftq_quantizer_create(m->ctx, o, &q));
  ftq_st_set *set;
  REQUIRE_OK(ftq_st_set_open(dir, &set));
  for (int layer = 0; layer < 2; layer++)
    for (int p = 0; p < 7; p++) {
      char prefix[128];
      snprintf(prefix, sizeof prefix, "model.layers.%d.%s.", layer, PROJ[p]);
      ftq_qtensor qt;
      pt_bnb_qtensor(m->ctx, set, prefix, &qt);
      size_t n;
      float *w = merged_weight(m, l, layer, p, &n), *fq = malloc(n * sizeof(float)), *got = malloc(n * sizeof(float));
      int64_t shape[2] = {qt.shape[0], qt.shape[1]};
      REQUIRE_OK(ftq_quantizer_fake_quantize(q, w, fq, FTQ_FLOAT32, FTQ_HOST, 2, shape));
      REQUIRE_OK(ftq_qtensor_dequantize(&qt, FTQ_DTYPE_F32, got));
      CHECK_MSG(qt.scheme == FTQ_QSCHEME_NF4 && qt.nested && qt.blocksize == 64, "%s: quantization", prefix);
      CHECK_MSG(memcmp(got, fq, n * sizeof(float)) == 0, "%s: saved codes are not fake_quant(W')", prefix);
      ftq_qtensor_release(&qt);
      free(w);
      free(fq);
      free(got);
    }
  /* non-linear weights stay unquantized */
  const ftq_st_tensor *e = ftq_st_set_find(set, "model.embed_tokens.weight");
  CHECK(e && e->dtype == FTQ_DTYPE_F32);
  ftq_st_set_close(set);
  ftq_quantizer_destroy(q);
  ftq_options_destroy(o);
}

/* An NF4 base (quantized at load): projections the adapter leaves alone keep
 * their codes; unquantized output is dequant(W) + scaling B A. */
static void check_nf4_base(ftq_context *ctx, const char *tmp) {
  ftq_options *o;
  REQUIRE_OK(ftq_options_create(&o));
  REQUIRE_OK(ftq_options_set_bool(o, "load_in_4bit", 1));
  REQUIRE_OK(ftq_options_set_string(o, "bnb_4bit_quant_type", "nf4"));
  ftq_model *m;
  ftq_lora *l;
  REQUIRE_OK(ftq_model_load(ctx, TINY, o, &m));
  REQUIRE_OK(ftq_lora_load(m, QVOD, NULL, NULL, &l));
  char dir[512];
  snprintf(dir, sizeof dir, "%s/nf4_base", tmp);
  CHECK_OK(ftq_model_save_merged(m, l, dir, o));
  ftq_st_set *set;
  REQUIRE_OK(ftq_st_set_open(dir, &set));
  for (int p = 0; p < 7; p++) {
    char prefix[128];
    snprintf(prefix, sizeof prefix, "model.layers.0.%s.", PROJ[p]);
    ftq_qtensor qt;
    pt_bnb_qtensor(ctx, set, prefix, &qt);
    size_t n;
    float *base = merged_weight(m, NULL, 0, p, &n), *got = malloc(n * sizeof(float));
    REQUIRE_OK(ftq_qtensor_dequantize(&qt, FTQ_DTYPE_F32, got));
    int same = memcmp(got, base, n * sizeof(float)) == 0;
    const int adapted = p == 0 || p == 2 || p == 3 || p == 6;
    CHECK_MSG(same == !adapted, "%s: %s", prefix, adapted ? "merged update missing" : "untouched codes changed");
    ftq_qtensor_release(&qt);
    free(base);
    free(got);
  }
  ftq_st_set_close(set);

  /* unquantized output from the NF4 base */
  snprintf(dir, sizeof dir, "%s/nf4_base_f32", tmp);
  CHECK_OK(ftq_model_save_merged(m, l, dir, NULL));
  REQUIRE_OK(ftq_st_set_open(dir, &set));
  size_t n;
  float *want = merged_weight(m, l, 1, 6, &n);
  const ftq_st_tensor *t = ftq_st_set_find(set, "model.layers.1.mlp.down_proj.weight");
  CHECK(t && t->dtype == FTQ_DTYPE_F32 && memcmp(t->data, want, n * sizeof(float)) == 0);
  float *base = merged_weight(m, NULL, 1, 6, &n);
  CHECK(memcmp(want, base, n * sizeof(float)) != 0);
  free(want);
  free(base);
  ftq_st_set_close(set);
  ftq_lora_destroy(l);
  ftq_model_destroy(m);
  ftq_options_destroy(o);
}

/* A GGUF base: config.json and the weights, no tokenizer files. */
static void check_gguf_base(ftq_context *ctx, const char *tmp) {
  ftq_model *g, *back;
  REQUIRE_OK(ftq_model_load(ctx, "tests/ref/io/gguf/tiny_llama.gguf", NULL, &g));
  char dir[512];
  snprintf(dir, sizeof dir, "%s/from_gguf", tmp);
  CHECK_OK(ftq_model_save_merged(g, NULL, dir, NULL));
  CHECK(access(pt_path(dir, "config.json"), F_OK) == 0);
  CHECK(access(pt_path(dir, "tokenizer.json"), F_OK) != 0);
  REQUIRE_OK(ftq_model_load(ctx, dir, NULL, &back));
  int32_t ids[ROWS * SEQ];
  for (int i = 0; i < ROWS * SEQ; i++) ids[i] = (i * 37 + 5) % (int32_t)g->cfg.vocab_size;
  float *a = pt_logits(g, ids), *b = pt_logits(back, ids);
  double e = pt_max_rel(b, a, (size_t)(ROWS * SEQ * g->cfg.vocab_size));
  CHECK_MSG(e < 1e-6, "model saved from GGUF: logits differ by %.3g", e);
  free(a);
  free(b);
  ftq_model_destroy(back);
  ftq_model_destroy(g);
}

static void check_errors(ftq_model *m, const ftq_lora *l, const char *tmp) {
  ftq_options *o;
  REQUIRE_OK(ftq_options_create(&o));
  char dir[512];
  snprintf(dir, sizeof dir, "%s/err", tmp);
  REQUIRE_OK(ftq_options_set_bool(o, "load_in_8bit", 1));
  CHECK_STATUS(ftq_model_save_merged(m, l, dir, o), FTQ_ERR_UNSUPPORTED);
  CHECK_ERROR_MENTIONS("load_in_8bit");
  REQUIRE_OK(ftq_options_unset(o, "load_in_8bit"));
  REQUIRE_OK(ftq_options_set_string(o, "max_shard_size", "lots"));
  CHECK_STATUS(ftq_model_save_merged(m, l, dir, o), FTQ_ERR_OPTION_RANGE);
  CHECK_ERROR_MENTIONS("max_shard_size");
  CHECK_STATUS(ftq_model_save_merged(m, l, pt_path(tmp, "no/such/folder"), NULL), FTQ_ERR_IO);
  CHECK_STATUS(ftq_model_save_merged(m, l, NULL, NULL), FTQ_ERR_INVALID_ARGUMENT);
  /* an adapter of another model */
  ftq_model *other;
  REQUIRE_OK(ftq_model_load(m->ctx, TINY, NULL, &other));
  CHECK_STATUS(ftq_model_save_merged(other, l, dir, NULL), FTQ_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(ftq_model_merged_weight(other, l, "model.layers.0.mlp.up_proj.weight", NULL, 0, NULL),
               FTQ_ERR_INVALID_ARGUMENT);
  ftq_model_destroy(other);
  ftq_options_destroy(o);
}

int main(void) {
  pt_env e;
  pt_env_open(&e);
  ftq_lora *l;
  REQUIRE_OK(ftq_lora_load(e.m, QVOD, NULL, NULL, &l));
  REQUIRE_OK(ftq_lora_set_active(l, 1));
  char *tmp = pt_tmpdir();

  check_merged_weights(e.m, l);
  check_save_f32(e.m, l, &e.r, tmp);
  check_save_nf4(e.m, l, tmp);
  check_nf4_base(e.ctx, tmp);
  check_gguf_base(e.ctx, tmp);
  check_errors(e.m, l, tmp);

  pt_rmtree(tmp);
  ftq_lora_destroy(l);
  return pt_env_close(&e, "test_merge");
}

/* Loading models on the CPU backend: tiny random models saved by
 * transformers (single file bf16; sharded f16 with tied embeddings,
 * attention biases and linear rope; Qwen2 f32 with q/k/v biases and an eos
 * list) and the tiny Llama converted to GGUF with llama.cpp's q/k
 * permutation, each compared with per-tensor statistics transformers / the
 * gguf package produced (make_refs.py); the torch_dtype option; errors for
 * wrong shapes, missing tensors and bad dtypes; random initialisation. */
#include <dirent.h>
#include <unistd.h>

#include "core/half.h"
#include "io/file.h"
#include "io/safetensors.h"
#include "model/model_load.h"
#include "model_test_util.h"

#define REF "tests/ref/io/"

/* ---- reading weights back ---- */

static float *to_f32(const ftq_tensor *t) {
  size_t n = (size_t)ftq_tensor_numel(t);
  float *x = malloc(n * sizeof *x + 1);
  for (size_t i = 0; i < n; i++) {
    switch (t->dtype) {
      case FTQ_DTYPE_F32: x[i] = ((const float *)t->data)[i]; break;
      case FTQ_DTYPE_F16: x[i] = ftq_f16_to_f32(((const uint16_t *)t->data)[i]); break;
      case FTQ_DTYPE_BF16: x[i] = ftq_bf16_to_f32(((const uint16_t *)t->data)[i]); break;
      default: x[i] = NAN;
    }
  }
  return x;
}

/* The model tensor a Hugging Face name refers to (parsed independently of
 * the loader's own tables). */
static const ftq_tensor *by_name(const ftq_model *m, const char *name) {
  int l;
  char mod[64], proj[64], suffix[16];
  static const char *projs[] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  if (!strcmp(name, "model.embed_tokens.weight")) return &m->tok_embeddings;
  if (!strcmp(name, "model.norm.weight")) return &m->final_norm;
  if (!strcmp(name, "lm_head.weight")) return &m->lm_head;
  if (sscanf(name, "model.layers.%d.%63[a-z_].weight", &l, mod) == 2 && !strstr(name, "proj")) {
    if (!strcmp(mod, "input_layernorm")) return &m->layers[l].attn_norm;
    if (!strcmp(mod, "post_attention_layernorm")) return &m->layers[l].ffn_norm;
    return NULL;
  }
  if (sscanf(name, "model.layers.%d.%63[a-z_].%63[a-z_].%15s", &l, mod, proj, suffix) == 4) {
    for (int p = 0; p < 7; p++)
      if (!strcmp(proj, projs[p]))
        return !strcmp(suffix, "weight") ? &m->layers[l].proj[p].plain : &m->layers[l].bias[p];
  }
  return NULL;
}

/* Every reference tensor is in the model with the same values (and dtype
 * want_dtype unless that is FTQ_DTYPE_COUNT). */
static void check_model(const ftq_model *m, const char *stats_path, ftq_dtype want_dtype) {
  json_t *ref = test_load_json(stats_path);
  json_t *tensors = json_object_get(ref, "tensors");
  const char *name;
  json_t *st;
  json_object_foreach(tensors, name, st) {
    const ftq_tensor *t = by_name(m, name);
    CHECK_MSG(t && t->data, "%s: not in the model", name);
    if (!t || !t->data) continue;
    CHECK_MSG(want_dtype == FTQ_DTYPE_COUNT || t->dtype == want_dtype, "%s: dtype %s", name, ftq_dtype_name(t->dtype));
    float *x = to_f32(t);
    int f = test_check_stats(name, x, (size_t)ftq_tensor_numel(t), st);
    test_failures += f;
    test_checks++;
    free(x);
  }
  int64_t n;
  CHECK_OK(ftq_model_parameter_count(m, FTQ_PARAMS_ALL, &n));
  CHECK_MSG(n == json_integer_value(json_object_get(ref, "num_parameters")), "%s: %lld parameters, transformers says %lld",
            stats_path, (long long)n, (long long)json_integer_value(json_object_get(ref, "num_parameters")));
  json_decref(ref);
}

/* ---- log capture ---- */

static char logbuf[1 << 16];
static void log_cb(void *user, ftq_log_level level, const char *msg) {
  (void)user;
  (void)level;
  size_t n = strlen(logbuf);
  snprintf(logbuf + n, sizeof logbuf - n, "%s\n", msg);
}

static void test_hf_folders(ftq_context *ctx) {
  ftq_model *m;
  logbuf[0] = '\0';
  REQUIRE_OK(ftq_model_load(ctx, REF "tiny_llama", NULL, &m));
  check_model(m, REF "tiny_llama.stats.json", FTQ_DTYPE_BF16);
  CHECK_MSG(strstr(logbuf, "LlamaForCausalLM") && strstr(logbuf, "parameters") && strstr(logbuf, "bf16"), "log: %s", logbuf);
  CHECK(m->lm_head.data != NULL && m->layers[0].bias[0].data == NULL);
  /* sizes: the model's view, by kind and by category, and the context's */
  size_t all, by_kind = 0, cur, mem;
  int64_t count, sum = 0;
  CHECK_OK(ftq_model_parameter_bytes(m, FTQ_PARAMS_ALL, &all));
  for (int k = FTQ_PARAMS_LINEAR; k <= FTQ_PARAMS_BIAS; k++) {
    size_t b;
    CHECK_OK(ftq_model_parameter_bytes(m, (ftq_param_kind)k, &b));
    by_kind += b;
    CHECK_OK(ftq_model_parameter_count(m, (ftq_param_kind)k, &count));
    sum += count;
  }
  CHECK_OK(ftq_model_parameter_count(m, FTQ_PARAMS_ALL, &count));
  CHECK(all == by_kind && count == sum && all == (size_t)count * 2);
  CHECK_OK(ftq_model_parameter_count(m, FTQ_PARAMS_LINEAR, &count));
  CHECK(count == 2 * (64 * 64 * 2 + 32 * 64 * 2 + 3 * 64 * 128));
  CHECK_OK(ftq_model_memory(m, FTQ_MEM_WEIGHTS, &mem));
  CHECK_OK(ftq_context_memory(ctx, FTQ_MEM_WEIGHTS, &cur, NULL));
  CHECK(mem == all && cur == all);
  CHECK_OK(ftq_model_memory(m, FTQ_MEM_ACTIVATIONS, &mem));
  CHECK(mem == 0);
  CHECK_STATUS(ftq_model_parameter_count(m, (ftq_param_kind)9, &count), FTQ_ERR_INVALID_ARGUMENT);
  ftq_model_destroy(m);
  CHECK_OK(ftq_context_memory(ctx, FTQ_MEM_ALL, &cur, NULL));
  CHECK(cur == 0);

  /* torch_dtype converts at load */
  ftq_options *o;
  REQUIRE_OK(ftq_options_create(&o));
  REQUIRE_OK(ftq_options_set_string(o, "torch_dtype", "float32"));
  REQUIRE_OK(ftq_model_load(ctx, REF "tiny_llama", o, &m));
  check_model(m, REF "tiny_llama.stats.json", FTQ_DTYPE_F32); /* bf16 -> f32 is exact */
  ftq_model_destroy(m);
  REQUIRE_OK(ftq_options_set_string(o, "torch_dtype", "float16"));
  REQUIRE_OK(ftq_model_load(ctx, REF "tiny_llama/model.safetensors", o, &m));
  CHECK(m->tok_embeddings.dtype == FTQ_DTYPE_F16 && m->layers[1].proj[FTQ_PROJ_DOWN].plain.dtype == FTQ_DTYPE_F16);
  ftq_model_destroy(m);
  ftq_options_destroy(o);

  REQUIRE_OK(ftq_model_load(ctx, REF "tiny_llama_sharded", NULL, &m));
  check_model(m, REF "tiny_llama_sharded.stats.json", FTQ_DTYPE_F16);
  CHECK(m->lm_head.data == NULL && m->cfg.tie_word_embeddings);
  for (int p = 0; p < FTQ_PROJ_COUNT; p++) CHECK((m->layers[1].bias[p].data != NULL) == (p <= FTQ_PROJ_O));
  double f;
  const char *s;
  CHECK_OK(ftq_model_config_float(m, "rope_scaling.factor", &f));
  CHECK_OK(ftq_model_config_string(m, "rope_scaling.rope_type", &s));
  CHECK(f == 2.0 && !strcmp(s, "linear"));
  int64_t n;
  CHECK_OK(ftq_model_parameter_count(m, FTQ_PARAMS_LM_HEAD, &n));
  CHECK(n == 0);
  CHECK_OK(ftq_model_parameter_count(m, FTQ_PARAMS_BIAS, &n));
  CHECK(n == 2 * 4 * 64);
  ftq_model_destroy(m);

  REQUIRE_OK(ftq_model_load(ctx, REF "tiny_qwen2", NULL, &m));
  check_model(m, REF "tiny_qwen2.stats.json", FTQ_DTYPE_F32);
  for (int p = 0; p < FTQ_PROJ_COUNT; p++) CHECK((m->layers[0].bias[p].data != NULL) == (p <= FTQ_PROJ_V));
  int64_t ids[4];
  size_t cnt;
  CHECK_OK(ftq_model_eos_token_ids(m, ids, 4, &cnt));
  CHECK(cnt == 2 && ids[0] == 5 && ids[1] == 6);
  CHECK_OK(ftq_model_config_int(m, "bos_token_id", &n));
  CHECK(n == -1);
  CHECK_OK(ftq_model_config_string(m, "model_type", &s));
  CHECK(!strcmp(s, "qwen2"));
  ftq_model_destroy(m);
}

static void test_gguf(ftq_context *ctx) {
  ftq_model *m;
  logbuf[0] = '\0';
  CHECK_OK(ftq_context_set_log_level(ctx, FTQ_LOG_DEBUG));
  REQUIRE_OK(ftq_model_load(ctx, REF "gguf/tiny_llama.gguf", NULL, &m));
  CHECK_OK(ftq_context_set_log_level(ctx, FTQ_LOG_INFO));
  CHECK_MSG(strstr(logbuf, "rotary permutation undone") && strstr(logbuf, "GGUF v3"), "log: %s", logbuf);
  /* every tensor equals the gguf package's dequantization, un-permuted */
  check_model(m, REF "gguf/tiny_llama.stats.json", FTQ_DTYPE_COUNT);
  /* auto keeps F32/F16/BF16 tensors as stored and dequantizes the rest to f32 */
  CHECK(m->lm_head.dtype == FTQ_DTYPE_F16 && m->layers[0].proj[FTQ_PROJ_K].plain.dtype == FTQ_DTYPE_BF16);
  CHECK(m->tok_embeddings.dtype == FTQ_DTYPE_F32 && m->layers[1].proj[FTQ_PROJ_K].plain.dtype == FTQ_DTYPE_F32);
  /* layer 0's q (F32) and k (BF16) were stored exactly: they come back equal
   * to the Hugging Face tensors themselves */
  json_t *hf = test_load_json(REF "tiny_llama.stats.json");
  json_t *tensors = json_object_get(hf, "tensors");
  const char *names[] = {"model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight"};
  for (int i = 0; i < 2; i++) {
    const ftq_tensor *t = by_name(m, names[i]);
    float *x = to_f32(t);
    test_failures += test_check_stats(names[i], x, (size_t)ftq_tensor_numel(t), json_object_get(tensors, names[i]));
    test_checks++;
    free(x);
  }
  json_decref(hf);
  CHECK(m->cfg.tie_word_embeddings == 0 && m->lm_head.data);
  ftq_model_destroy(m);
  ftq_options *o;
  REQUIRE_OK(ftq_options_create(&o));
  REQUIRE_OK(ftq_options_set_string(o, "torch_dtype", "bfloat16"));
  REQUIRE_OK(ftq_model_load(ctx, REF "gguf/tiny_llama.gguf", o, &m));
  CHECK(m->tok_embeddings.dtype == FTQ_DTYPE_BF16 && m->layers[0].proj[0].plain.dtype == FTQ_DTYPE_BF16);
  ftq_model_destroy(m);
  ftq_options_destroy(o);
  CHECK_STATUS(ftq_model_load(ctx, REF "gguf/types.gguf", NULL, &m), FTQ_ERR_FORMAT);
  CHECK_ERROR_MENTIONS("types.gguf");
}

/* ---- errors ---- */

static char tmpdir[256];

static void copy_file(const char *from, const char *to) {
  size_t n;
  void *b = test_read_file(from, &n);
  FILE *f = fopen(to, "wb");
  fwrite(b, 1, n, f);
  fclose(f);
  free(b);
}

/* tiny_llama's tensors rewritten with `drop` left out and `swap` (if any)
 * replaced by an int32 tensor of the same shape; one extra tensor added. */
static void rewrite_tiny(const char *dir, const char *drop, const char *as_int) {
  ftq_safetensors *f;
  REQUIRE_OK(ftq_safetensors_open(REF "tiny_llama/model.safetensors", &f));
  ftq_st_writer *w;
  REQUIRE_OK(ftq_st_writer_create(&w));
  static int32_t ints[64 * 256];
  for (size_t i = 0; i < ftq_safetensors_count(f); i++) {
    const ftq_st_tensor *t = ftq_safetensors_tensor(f, i);
    if (drop && !strcmp(t->name, drop)) continue;
    if (as_int && !strcmp(t->name, as_int)) REQUIRE_OK(ftq_st_writer_add(w, t->name, FTQ_DTYPE_I32, t->ndim, t->shape, ints));
    else REQUIRE_OK(ftq_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data));
  }
  int64_t one[1] = {1};
  REQUIRE_OK(ftq_st_writer_add(w, "model.extra.weight", FTQ_DTYPE_I32, 1, one, ints));
  char path[512];
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  REQUIRE_OK(ftq_st_writer_write(w, path));
  ftq_st_writer_destroy(w);
  ftq_safetensors_close(f);
}

static void test_errors(ftq_context *ctx) {
  ftq_model *m = NULL;
  char dir[512], cfg[600];
  snprintf(dir, sizeof dir, "%s/m", tmpdir);
  mkdir(dir, 0755);
  snprintf(cfg, sizeof cfg, "%s/config.json", dir);
  CHECK_STATUS(ftq_model_load(ctx, "tests/ref/io/none", NULL, &m), FTQ_ERR_NOT_FOUND);
  CHECK_ERROR_MENTIONS("tests/ref/io/none");
  CHECK(m == NULL);
  CHECK_STATUS(ftq_model_load(ctx, dir, NULL, &m), FTQ_ERR_IO);
  CHECK_ERROR_MENTIONS("config.json");
  CHECK_STATUS(ftq_model_load(NULL, dir, NULL, &m), FTQ_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(ftq_model_load(ctx, dir, NULL, NULL), FTQ_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(ftq_model_load(ctx, REF "tiny_llama/config.json", NULL, &m), FTQ_ERR_FORMAT); /* not an index */

  copy_file(REF "tiny_llama/config.json", cfg);
  rewrite_tiny(dir, NULL, NULL);
  logbuf[0] = '\0';
  CHECK_OK(ftq_model_load(ctx, dir, NULL, &m)); /* the extra tensor is only a warning */
  CHECK_MSG(strstr(logbuf, "1 tensor(s)") && strstr(logbuf, "model.extra.weight"), "log: %s", logbuf);
  ftq_model_destroy(m);
  rewrite_tiny(dir, "model.layers.1.mlp.up_proj.weight", NULL);
  CHECK_STATUS(ftq_model_load(ctx, dir, NULL, &m), FTQ_ERR_NOT_FOUND);
  CHECK_ERROR_MENTIONS("model.layers.1.mlp.up_proj.weight is missing");
  rewrite_tiny(dir, NULL, "model.layers.0.input_layernorm.weight");
  CHECK_STATUS(ftq_model_load(ctx, dir, NULL, &m), FTQ_ERR_UNSUPPORTED);
  CHECK_ERROR_MENTIONS("model.layers.0.input_layernorm.weight has dtype I32");
  rewrite_tiny(dir, NULL, NULL);
  /* a config that disagrees with the tensors */
  size_t len;
  char *text = test_read_file(REF "tiny_llama/config.json", &len);
  char *p = strstr(text, "\"intermediate_size\": 128");
  CHECK(p != NULL);
  if (p) memcpy(p, "\"intermediate_size\": 256", 24);
  test_write_text(cfg, text);
  free(text);
  CHECK_STATUS(ftq_model_load(ctx, dir, NULL, &m), FTQ_ERR_SHAPE);
  CHECK_ERROR_MENTIONS("model.layers.0.mlp.gate_proj.weight has shape [128, 64]; the config needs [256, 64]");
  test_write_text(cfg, "{\"architectures\": [\"GemmaForCausalLM\"]}");
  CHECK_STATUS(ftq_model_load(ctx, dir, NULL, &m), FTQ_ERR_UNSUPPORTED);
  CHECK_ERROR_MENTIONS("GemmaForCausalLM");
  CHECK_OK(ftq_context_memory(ctx, FTQ_MEM_ALL, &len, NULL));
  CHECK(len == 0); /* failed loads free what they allocated */
  /* the wrong kind of file */
  snprintf(cfg, sizeof cfg, "%s/x.bin", tmpdir);
  test_write_text(cfg, "hello");
  CHECK_STATUS(ftq_model_load(ctx, cfg, NULL, &m), FTQ_ERR_UNSUPPORTED);
  snprintf(cfg, sizeof cfg, "%s/x.gguf", tmpdir);
  test_write_text(cfg, "GGUF");
  CHECK_STATUS(ftq_model_load(ctx, cfg, NULL, &m), FTQ_ERR_FORMAT);
  CHECK_ERROR_MENTIONS("x.gguf");
}

/* ---- random initialisation ---- */

#define SMALL "{\"hidden_size\": 128, \"intermediate_size\": 256, \"num_hidden_layers\": 2, " \
              "\"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"vocab_size\": 1000, \"pad_token_id\": 3, " \
              "\"initializer_range\": 0.05, \"torch_dtype\": \"bfloat16\"}"

static int same_weights(const ftq_model *a, const ftq_model *b) {
  if (memcmp(a->tok_embeddings.data, b->tok_embeddings.data, ftq_tensor_bytes(&a->tok_embeddings))) return 0;
  for (int64_t l = 0; l < a->cfg.num_hidden_layers; l++)
    for (int p = 0; p < FTQ_PROJ_COUNT; p++)
      if (memcmp(a->layers[l].proj[p].plain.data, b->layers[l].proj[p].plain.data,
                 ftq_tensor_bytes(&a->layers[l].proj[p].plain)))
        return 0;
  return memcmp(a->lm_head.data, b->lm_head.data, ftq_tensor_bytes(&a->lm_head)) == 0;
}

static void test_random(ftq_context *ctx) {
  ftq_model *a, *b, *c;
  REQUIRE_OK(ftq_model_init_random(ctx, SMALL, 7, NULL, &a));
  REQUIRE_OK(ftq_model_init_random(ctx, SMALL, 7, NULL, &b));
  REQUIRE_OK(ftq_model_init_random(ctx, SMALL, 8, NULL, &c));
  CHECK(same_weights(a, b));
  CHECK(!same_weights(a, c));
  CHECK(a->tok_embeddings.dtype == FTQ_DTYPE_BF16 && a->layers[0].proj[0].plain.dtype == FTQ_DTYPE_BF16);
  /* the numbers do not depend on the thread count */
  ftq_options *o;
  REQUIRE_OK(ftq_options_create(&o));
  REQUIRE_OK(ftq_options_set_int(o, "num_threads", 1));
  ftq_context *ctx1;
  REQUIRE_OK(ftq_context_create("cpu", o, &ctx1));
  ftq_model *d;
  REQUIRE_OK(ftq_model_init_random(ctx1, SMALL, 7, NULL, &d));
  CHECK(same_weights(a, d));
  ftq_model_destroy(d);
  ftq_context_destroy(ctx1);
  /* N(0, 0.05^2): moments and the one-sigma fraction over all linear weights */
  double s = 0, s2 = 0, within = 0, n = 0;
  for (int64_t l = 0; l < 2; l++)
    for (int p = 0; p < FTQ_PROJ_COUNT; p++) {
      float *x = to_f32(&a->layers[l].proj[p].plain);
      size_t k = (size_t)ftq_tensor_numel(&a->layers[l].proj[p].plain);
      for (size_t i = 0; i < k; i++) {
        s += x[i];
        s2 += (double)x[i] * x[i];
        within += fabs(x[i]) < 0.05;
      }
      n += (double)k;
      free(x);
    }
  double mean = s / n, sd = sqrt(s2 / n - mean * mean);
  CHECK_MSG(fabs(mean) < 0.05 * 4 / sqrt(n) && fabs(sd / 0.05 - 1) < 0.01 && fabs(within / n - 0.6827) < 0.005,
            "mean %g sd %g one-sigma fraction %g over %g values", mean, sd, within / n, n);
  float *e = to_f32(&a->tok_embeddings);
  int pad_zero = 1, other_nonzero = 0;
  for (int i = 0; i < 128; i++) {
    pad_zero &= e[3 * 128 + i] == 0.0f;
    other_nonzero |= e[4 * 128 + i] != 0.0f;
  }
  CHECK(pad_zero && other_nonzero);
  free(e);
  float *g = to_f32(&a->layers[1].ffn_norm);
  CHECK(g[0] == 1.0f && g[127] == 1.0f);
  free(g);
  /* the configuration comes back as config.json text that builds the same model */
  char *json;
  CHECK_OK(ftq_model_config_json(a, &json));
  CHECK(strstr(json, "\"initializer_range\": 0.05") && strstr(json, "\"torch_dtype\": \"bfloat16\""));
  REQUIRE_OK(ftq_model_init_random(ctx, json, 7, NULL, &d));
  CHECK(same_weights(a, d));
  ftq_free(json);
  ftq_model_destroy(d);
  REQUIRE_OK(ftq_options_set_string(o, "torch_dtype", "float32"));
  REQUIRE_OK(ftq_model_init_random(ctx, SMALL, 7, o, &d));
  float *x = to_f32(&d->layers[0].proj[0].plain), *y = to_f32(&a->layers[0].proj[0].plain);
  CHECK(d->layers[0].proj[0].plain.dtype == FTQ_DTYPE_F32);
  CHECK(ftq_f32_to_bf16(x[5]) == ftq_f32_to_bf16(y[5]) && ftq_bf16_to_f32(ftq_f32_to_bf16(x[5])) == y[5]);
  free(x);
  free(y);
  ftq_model_destroy(d);
  ftq_options_destroy(o);
  ftq_model_destroy(a);
  ftq_model_destroy(b);
  ftq_model_destroy(c);
  CHECK_STATUS(ftq_model_init_random(ctx, "{\"hidden_size\": 0}", 1, NULL, &a), FTQ_ERR_FORMAT);
  CHECK_ERROR_MENTIONS("intermediate_size");
  CHECK_STATUS(ftq_model_init_random(ctx, "{", 1, NULL, &a), FTQ_ERR_FORMAT);
  CHECK_STATUS(ftq_model_init_random(ctx, NULL, 1, NULL, &a), FTQ_ERR_INVALID_ARGUMENT);
}

/* Quantization at load: every linear weight goes through the quantizer with
 * the load options, and equals quantizing the plainly loaded weight. */
static void test_quantized_load(ftq_context *ctx) {
  ftq_model *plain, *q;
  ftq_options *o;
  REQUIRE_OK(ftq_model_load(ctx, REF "tiny_llama", NULL, &plain));
  REQUIRE_OK(ftq_options_create(&o));
  REQUIRE_OK(ftq_options_load_json(o, "{\"load_in_4bit\": true, \"bnb_4bit_quant_type\": \"nf4\", "
                                      "\"bnb_4bit_use_double_quant\": true}"));
  REQUIRE_OK(ftq_model_load(ctx, REF "tiny_llama", o, &q));
  int all_nf4 = 1;
  for (int64_t l = 0; l < q->cfg.num_hidden_layers; l++)
    for (int p = 0; p < FTQ_PROJ_COUNT; p++)
      all_nf4 &= q->layers[l].proj[p].scheme == FTQ_QSCHEME_NF4 && q->layers[l].proj[p].nested &&
                 q->layers[l].proj[p].blocksize == 64;
  CHECK(all_nf4);
  /* embeddings and norms stay as stored */
  CHECK(q->tok_embeddings.dtype == plain->tok_embeddings.dtype);
  size_t wq, wp, mq, mp;
  CHECK_OK(ftq_context_memory(ctx, FTQ_MEM_WEIGHTS, &wq, NULL));
  CHECK_OK(ftq_model_memory(q, FTQ_MEM_ALL, &mq));
  CHECK_OK(ftq_model_memory(plain, FTQ_MEM_ALL, &mp));
  ftq_model_destroy(q);
  CHECK_OK(ftq_context_memory(ctx, FTQ_MEM_WEIGHTS, &wp, NULL));
  CHECK(wp < wq); /* destroying q released its buffers; plain alone is left */
  /* the model's own count includes its quantized weights (one allocation each, the tensors views) */
  CHECK_MSG(mq == wq - wp && mp == wp, "ftq_model_memory: quantized %zu (context says %zu), plain %zu (%zu)", mq,
            wq - wp, mp, wp);
  REQUIRE_OK(ftq_model_load(ctx, REF "tiny_llama", o, &q));
  for (int p = 0; p < FTQ_PROJ_COUNT; p += 3) {
    const ftq_qtensor *pw = &plain->layers[1].proj[p];
    size_t n = (size_t)ftq_qtensor_numel(pw);
    float *src = to_f32(&pw->plain);
    ftq_qtensor direct;
    REQUIRE_OK(ftq_qtensor_quantize_host(ctx, o, src, FTQ_DTYPE_F32, pw->shape[0], pw->shape[1], "direct", &direct));
    float *a = malloc(4 * n), *b = malloc(4 * n);
    REQUIRE_OK(ftq_qtensor_dequantize(&q->layers[1].proj[p], FTQ_DTYPE_F32, a));
    REQUIRE_OK(ftq_qtensor_dequantize(&direct, FTQ_DTYPE_F32, b));
    CHECK_MSG(memcmp(a, b, 4 * n) == 0, "%s: loaded NF4 weight differs from quantizing the loaded plain weight",
              ftq_proj_name((ftq_proj)p));
    ftq_qtensor_release(&direct);
    free(a), free(b), free(src);
  }
  ftq_model_destroy(q);
  /* 8-bit */
  REQUIRE_OK(ftq_options_load_json(o, "{\"load_in_4bit\": false, \"load_in_8bit\": true}"));
  REQUIRE_OK(ftq_model_load(ctx, REF "gguf/tiny_llama.gguf", o, &q));
  CHECK(q->layers[0].proj[FTQ_PROJ_DOWN].scheme == FTQ_QSCHEME_INT8_SYM ||
        q->layers[0].proj[FTQ_PROJ_DOWN].scheme == FTQ_QSCHEME_INT8_ASYM);
  ftq_model_destroy(q);
  ftq_model_destroy(plain);
  ftq_options_destroy(o);
}

int main(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/ftq_model_XXXXXX");
  if (!mkdtemp(tmpdir)) return 1;
  ftq_context *ctx;
  REQUIRE_OK(ftq_context_create("cpu", NULL, &ctx));
  REQUIRE_OK(ftq_context_set_log_callback(ctx, log_cb, NULL));
  test_hf_folders(ctx);
  test_gguf(ctx);
  test_errors(ctx);
  test_random(ctx);
  test_quantized_load(ctx);
  ftq_context_destroy(ctx);
  test_rm_rf(tmpdir);
  return test_finish("test_model_load");
}

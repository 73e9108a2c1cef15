/* The model API through the shared library's exports only: load, the
 * configuration by name, counts, sizes, random init, destroy. */
#include "test_util.h"

int main(void) {
  ftq_context *ctx;
  REQUIRE_OK(ftq_context_create("cpu", NULL, &ctx));
  ftq_model *m = NULL;
  REQUIRE_OK(ftq_model_load(ctx, "tests/ref/io/tiny_llama_sharded", NULL, &m));
  static const struct {
    const char *name;
    int64_t value;
  } ints[] = {{"hidden_size", 64},         {"intermediate_size", 128}, {"num_hidden_layers", 2},
              {"num_attention_heads", 4},  {"num_key_value_heads", 4}, {"head_dim", 16},
              {"vocab_size", 256},         {"max_position_embeddings", 512}, {"tie_word_embeddings", 1},
              {"attention_bias", 1},       {"bos_token_id", 1},        {"eos_token_id", 2},
              {"pad_token_id", -1},        {"sliding_window", 0},      {"rope_scaling.original_max_position_embeddings", 0}};
  for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
    int64_t v = -99;
    CHECK_OK(ftq_model_config_int(m, ints[i].name, &v));
    CHECK_MSG(v == ints[i].value, "%s = %lld", ints[i].name, (long long)v);
  }
  double f;
  CHECK_OK(ftq_model_config_float(m, "rms_norm_eps", &f));
  CHECK(f == 1e-5);
  CHECK_OK(ftq_model_config_float(m, "rope_theta", &f));
  CHECK(f == 10000.0);
  CHECK_OK(ftq_model_config_float(m, "rope_scaling.factor", &f));
  CHECK(f == 2.0);
  const char *s;
  CHECK_OK(ftq_model_config_string(m, "architectures", &s));
  CHECK(!strcmp(s, "LlamaForCausalLM"));
  CHECK_OK(ftq_model_config_string(m, "torch_dtype", &s));
  CHECK(!strcmp(s, "float16"));
  CHECK_STATUS(ftq_model_config_int(m, "rms_norm_eps", &(int64_t){0}), FTQ_ERR_INVALID_ARGUMENT);
  CHECK_ERROR_MENTIONS("ftq_model_config_float");
  CHECK_STATUS(ftq_model_config_float(m, "no_such_field", &f), FTQ_ERR_NOT_FOUND);
  CHECK_ERROR_MENTIONS("no_such_field");
  CHECK_STATUS(ftq_model_config_string(NULL, "architectures", &s), FTQ_ERR_INVALID_ARGUMENT);
  int64_t n;
  CHECK_OK(ftq_model_parameter_count(m, FTQ_PARAMS_ALL, &n));
  CHECK(n == 99136); /* transformers' num_parameters() for this model (tiny_llama_sharded.stats.json) */
  size_t bytes, w;
  CHECK_OK(ftq_model_parameter_bytes(m, FTQ_PARAMS_ALL, &bytes));
  CHECK(bytes == (size_t)n * 2);
  CHECK_OK(ftq_model_memory(m, FTQ_MEM_ALL, &w));
  CHECK(w == bytes);
  size_t count;
  CHECK_OK(ftq_model_eos_token_ids(m, NULL, 0, &count));
  CHECK(count == 1);
  char *json;
  CHECK_OK(ftq_model_config_json(m, &json));
  ftq_model *r;
  REQUIRE_OK(ftq_model_init_random(ctx, json, 1, NULL, &r));
  int64_t n2;
  CHECK_OK(ftq_model_parameter_count(r, FTQ_PARAMS_ALL, &n2));
  CHECK(n2 == n);
  ftq_free(json);
  ftq_model_destroy(r);
  ftq_model_destroy(m);
  ftq_model_destroy(NULL);
  ftq_context_destroy(ctx);
  return test_finish("test_model_public");
}

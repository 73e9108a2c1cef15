/* config.json parsing against what transformers makes of the same files
 * (tests/ref/io/configs/expected.json, written by make_refs.py from
 * AutoConfig), the round trip through ftq_model_config_to_json, and every
 * refusal naming its field and value. */
#include "model_test_util.h"
#include "model/model_load.h"

#define REF "tests/ref/io/configs/"

static void check_against(const char *name, const ftq_model_config *c, json_t *e) {
#define EQI(field, key) \
  CHECK_MSG(c->field == json_integer_value(json_object_get(e, key)), "%s: %s = %lld", name, key, (long long)c->field)
#define EQF(field, key) \
  CHECK_MSG(c->field == json_number_value(json_object_get(e, key)), "%s: %s = %.17g", name, key, c->field)
  CHECK_MSG(!strcmp(c->architecture, json_string_value(json_object_get(e, "architectures"))), "%s: %s", name,
            c->architecture);
  EQI(hidden_size, "hidden_size");
  EQI(intermediate_size, "intermediate_size");
  EQI(num_hidden_layers, "num_hidden_layers");
  EQI(num_attention_heads, "num_attention_heads");
  EQI(num_key_value_heads, "num_key_value_heads");
  EQI(head_dim, "head_dim");
  EQI(vocab_size, "vocab_size");
  EQI(max_position_embeddings, "max_position_embeddings");
  EQI(bos_token_id, "bos_token_id");
  EQI(pad_token_id, "pad_token_id");
  EQF(rms_norm_eps, "rms_norm_eps");
  EQF(rope_theta, "rope_theta");
  EQF(initializer_range, "initializer_range");
  CHECK(c->tie_word_embeddings == json_is_true(json_object_get(e, "tie_word_embeddings")));
  json_t *eos = json_object_get(e, "eos_token_id");
  CHECK_MSG((size_t)c->n_eos_token_ids == json_array_size(eos), "%s: %d eos ids", name, c->n_eos_token_ids);
  for (size_t i = 0; i < json_array_size(eos) && i < FTQ_MAX_EOS_IDS; i++)
    CHECK(c->eos_token_ids[i] == json_integer_value(json_array_get(eos, i)));
  CHECK_MSG(!strcmp(ftq_torch_dtype_name(c->torch_dtype), json_string_value(json_object_get(e, "torch_dtype"))), "%s: dtype",
            name);
  const char *rt = json_string_value(json_object_get(e, "rope_type"));
  ftq_rope_scaling_type want = !strcmp(rt, "linear") ? FTQ_ROPE_LINEAR : !strcmp(rt, "llama3") ? FTQ_ROPE_LLAMA3 : FTQ_ROPE_DEFAULT;
  CHECK_MSG(c->rope_scaling == want, "%s: rope type %d", name, (int)c->rope_scaling);
  if (want != FTQ_ROPE_DEFAULT) EQF(rope_factor, "rope_factor");
  if (want == FTQ_ROPE_LLAMA3) {
    EQF(rope_low_freq_factor, "rope_low_freq_factor");
    EQF(rope_high_freq_factor, "rope_high_freq_factor");
    EQI(rope_original_max_position, "rope_original_max_position");
  }
  if (json_object_get(e, "sliding_window")) EQI(sliding_window, "sliding_window");
#undef EQI
#undef EQF
}

static void test_real_configs(void) {
  json_t *expected = test_load_json(REF "expected.json");
  const char *name;
  json_t *e;
  int n = 0;
  json_object_foreach(expected, name, e) {
    char path[256];
    snprintf(path, sizeof path, REF "%s.json", name);
    size_t len;
    char *text = test_read_file(path, &len);
    ftq_model_config c, c2;
    CHECK_OK(ftq_hf_config_parse(text, len, path, 0, &c));
    check_against(name, &c, e);
    /* back to config.json and in again: the same configuration */
    char *again = ftq_model_config_to_json(&c);
    CHECK(again != NULL);
    CHECK_OK(ftq_hf_config_parse(again, strlen(again), "round trip", 0, &c2));
    check_against(name, &c2, e);
    CHECK(c2.sliding_window == c.sliding_window && c2.attention_bias == c.attention_bias);
    free(again);
    free(text);
    n++;
  }
  CHECK(n == 7);
  json_decref(expected);
}

static void expect(ftq_status want, const char *mention, const char *json) {
  ftq_model_config c;
  ftq_status st = ftq_hf_config_parse(json, strlen(json), "config.json", 0, &c);
  CHECK_MSG(st == want, "%s: status %d (%s), want %d", json, (int)st, ftq_last_error(), (int)want);
  CHECK_MSG(strstr(ftq_last_error(), mention) && strstr(ftq_last_error(), "config.json"), "%s: message \"%s\" lacks \"%s\"",
            json, ftq_last_error(), mention);
}

#define BASE "\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":64,\"intermediate_size\":128," \
             "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":100"

static void test_refusals(void) {
  ftq_model_config c;
  const char *ok = "{" BASE "}";
  CHECK_OK(ftq_hf_config_parse(ok, strlen(ok), "config.json", 0, &c));
  CHECK(c.num_key_value_heads == 4 && c.head_dim == 16 && c.rms_norm_eps == 1e-6 && c.rope_theta == 10000.0);
  CHECK(c.bos_token_id == 1 && c.n_eos_token_ids == 1 && c.eos_token_ids[0] == 2 && c.pad_token_id == -1);
  CHECK(c.torch_dtype == FTQ_DTYPE_F32 && c.max_position_embeddings == 2048 && !c.tie_word_embeddings);
  const char *mistral = "{\"model_type\":\"mistral\",\"hidden_size\":64,\"intermediate_size\":128,"
                        "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":100}";
  CHECK_OK(ftq_hf_config_parse(mistral, strlen(mistral), "config.json", 0, &c));
  CHECK(!strcmp(c.architecture, "MistralForCausalLM") && c.sliding_window == 4096);
  const char *mistral_null = "{\"model_type\":\"mistral\",\"sliding_window\":null,\"hidden_size\":64,"
                             "\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":100}";
  CHECK_OK(ftq_hf_config_parse(mistral_null, strlen(mistral_null), "config.json", 0, &c));
  CHECK(c.sliding_window == 0);
  const char *bare = "{\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
                     "\"vocab_size\":100}";
  CHECK_OK(ftq_hf_config_parse(bare, strlen(bare), "config.json", 1, &c)); /* init_random's default */
  CHECK(!strcmp(c.architecture, "LlamaForCausalLM"));
  expect(FTQ_ERR_FORMAT, "neither architectures nor model_type", bare);
  /* the largest shape benchmarks use (Llama-2-70B) is within every limit */
  const char *l70 = "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":8192,\"intermediate_size\":28672,"
                    "\"num_hidden_layers\":80,\"num_attention_heads\":64,\"num_key_value_heads\":8,\"vocab_size\":32000}";
  CHECK_OK(ftq_hf_config_parse(l70, strlen(l70), "config.json", 0, &c));
  CHECK(c.head_dim == 128 && c.num_key_value_heads == 8);

  expect(FTQ_ERR_FORMAT, "config.json:1:", "{" BASE);
  expect(FTQ_ERR_FORMAT, "must be a JSON object", "[1]");
  expect(FTQ_ERR_FORMAT, "duplicate", "{" BASE ",\"vocab_size\":5}");
  expect(FTQ_ERR_FORMAT, "required field hidden_size is missing",
         "{\"architectures\":[\"LlamaForCausalLM\"],\"intermediate_size\":128,\"num_hidden_layers\":2,"
         "\"num_attention_heads\":4,\"vocab_size\":100}");
  expect(FTQ_ERR_FORMAT, "hidden_size = \"64\" must be an integer",
         "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":\"64\",\"intermediate_size\":128,"
         "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":100}");
  expect(FTQ_ERR_FORMAT, "must be an integer",
         "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":64.5,\"intermediate_size\":128,"
         "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":100}");
  expect(FTQ_ERR_UNSUPPORTED, "architectures = [\"GemmaForCausalLM\"] is not supported",
         "{\"architectures\":[\"GemmaForCausalLM\"]}");
  expect(FTQ_ERR_FORMAT, "architectures must be a list", "{\"architectures\":\"LlamaForCausalLM\"}");
  expect(FTQ_ERR_UNSUPPORTED, "model_type = \"gpt2\"", "{\"model_type\":\"gpt2\"}");
  expect(FTQ_ERR_UNSUPPORTED, "rope_scaling.rope_type = \"yarn\" is not supported",
         "{" BASE ",\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4.0}}");
  expect(FTQ_ERR_UNSUPPORTED, "rope_parameters.rope_type = \"dynamic\"",
         "{" BASE ",\"rope_parameters\":{\"rope_type\":\"dynamic\",\"factor\":4.0,\"rope_theta\":10000.0}}");
  expect(FTQ_ERR_FORMAT, "rope_scaling.factor is required", "{" BASE ",\"rope_scaling\":{\"type\":\"linear\"}}");
  expect(FTQ_ERR_FORMAT, "rope_scaling.low_freq_factor is required",
         "{" BASE ",\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8.0,\"high_freq_factor\":4.0,"
         "\"original_max_position_embeddings\":8192}}");
  expect(FTQ_ERR_FORMAT, "rope_scaling = \"linear\" must be an object", "{" BASE ",\"rope_scaling\":\"linear\"}");
  expect(FTQ_ERR_FORMAT, "factor", "{" BASE ",\"rope_scaling\":{\"type\":\"linear\",\"factor\":-1}}");
  expect(FTQ_ERR_UNSUPPORTED, "hidden_act = \"gelu\"", "{" BASE ",\"hidden_act\":\"gelu\"}");
  expect(FTQ_ERR_UNSUPPORTED, "mlp_bias = true", "{" BASE ",\"mlp_bias\":true}");
  expect(FTQ_ERR_UNSUPPORTED, "attention_dropout = 0.1", "{" BASE ",\"attention_dropout\":0.1}");
  expect(FTQ_ERR_UNSUPPORTED, "quant_method \"bitsandbytes\"",
         "{" BASE ",\"quantization_config\":{\"quant_method\":\"bitsandbytes\",\"load_in_4bit\":true}}");
  expect(FTQ_ERR_UNSUPPORTED, "torch_dtype = \"float8_e4m3fn\"", "{" BASE ",\"torch_dtype\":\"float8_e4m3fn\"}");
  expect(FTQ_ERR_UNSUPPORTED, "dtype = \"int8\"", "{" BASE ",\"dtype\":\"int8\"}");
  expect(FTQ_ERR_FORMAT, "eos_token_id = \"2\"", "{" BASE ",\"eos_token_id\":\"2\"}");
  expect(FTQ_ERR_FORMAT, "eos_token_id[1] = null", "{" BASE ",\"eos_token_id\":[2,null]}");
  expect(FTQ_ERR_UNSUPPORTED, "eos_token_id lists 9 ids", "{" BASE ",\"eos_token_id\":[1,2,3,4,5,6,7,8,9]}");
  expect(FTQ_ERR_FORMAT, "eos_token_id 100 is outside the vocabulary", "{" BASE ",\"eos_token_id\":100}");
  expect(FTQ_ERR_FORMAT, "pad_token_id 100", "{" BASE ",\"pad_token_id\":100}");
  expect(FTQ_ERR_FORMAT, "tie_word_embeddings = \"yes\" must be true or false", "{" BASE ",\"tie_word_embeddings\":\"yes\"}");
  expect(FTQ_ERR_FORMAT, "num_attention_heads = 4 is not a multiple of num_key_value_heads = 3",
         "{" BASE ",\"num_key_value_heads\":3}");
  expect(FTQ_ERR_UNSUPPORTED, "head_dim = 7 must be even", "{" BASE ",\"head_dim\":7}");
  expect(FTQ_ERR_FORMAT, "rms_norm_eps = 0", "{" BASE ",\"rms_norm_eps\":0}");
  expect(FTQ_ERR_FORMAT, "rope_theta = -1", "{" BASE ",\"rope_theta\":-1}");
  expect(FTQ_ERR_FORMAT, "initializer_range", "{" BASE ",\"initializer_range\":-0.5}");
  expect(FTQ_ERR_FORMAT, "max_position_embeddings = 0", "{" BASE ",\"max_position_embeddings\":0}");
  expect(FTQ_ERR_FORMAT, "hidden_size = -64 must be positive",
         "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":-64,\"intermediate_size\":128,"
         "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":100}");
  expect(FTQ_ERR_UNSUPPORTED, "sizes beyond",
         "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":1073741824,\"intermediate_size\":128,"
         "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":100}");
  expect(FTQ_ERR_UNSUPPORTED, "use_sliding_window = true",
         "{\"architectures\":[\"Qwen2ForCausalLM\"],\"use_sliding_window\":true,\"hidden_size\":64,"
         "\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":100}");
  expect(FTQ_ERR_UNSUPPORTED, "layer_types[1] = \"sliding_attention\"",
         "{" BASE ",\"layer_types\":[\"full_attention\",\"sliding_attention\"]}");
  expect(FTQ_ERR_FORMAT, "sliding_window = -1",
         "{\"model_type\":\"mistral\",\"sliding_window\":-1,\"hidden_size\":64,\"intermediate_size\":128,"
         "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":100}");
}

static void test_gguf_config(void) {
  /* tiny_llama.gguf's metadata describes the same model as tiny_llama/config.json */
  size_t len;
  char *text = test_read_file("tests/ref/io/tiny_llama/config.json", &len);
  ftq_model_config hf, gg;
  REQUIRE_OK(ftq_hf_config_parse(text, len, "tiny_llama/config.json", 0, &hf));
  free(text);
  ftq_gguf *g;
  REQUIRE_OK(ftq_gguf_open("tests/ref/io/gguf/tiny_llama.gguf", &g));
  int permuted = 0;
  CHECK_OK(ftq_gguf_read_config(g, &gg, &permuted));
  ftq_gguf_close(g);
  CHECK(permuted == 1);
  CHECK(!strcmp(gg.architecture, hf.architecture));
  CHECK(gg.hidden_size == hf.hidden_size && gg.intermediate_size == hf.intermediate_size);
  CHECK(gg.num_hidden_layers == hf.num_hidden_layers && gg.num_attention_heads == hf.num_attention_heads);
  CHECK(gg.num_key_value_heads == hf.num_key_value_heads && gg.head_dim == hf.head_dim);
  CHECK(gg.vocab_size == hf.vocab_size && gg.max_position_embeddings == hf.max_position_embeddings);
  CHECK_MSG(gg.rms_norm_eps == hf.rms_norm_eps, "eps %.17g vs %.17g (float32 in GGUF, shortest decimal back)",
            gg.rms_norm_eps, hf.rms_norm_eps);
  CHECK(gg.rope_theta == hf.rope_theta && gg.rope_scaling == FTQ_ROPE_DEFAULT);
  CHECK(gg.tie_word_embeddings == hf.tie_word_embeddings && gg.bos_token_id == hf.bos_token_id);
  CHECK(gg.n_eos_token_ids == 1 && gg.eos_token_ids[0] == hf.eos_token_ids[0]);
  CHECK(gg.torch_dtype == FTQ_DTYPE_F32); /* Q8_0 file: weights come out as float32 */
  CHECK_STATUS(ftq_gguf_open("tests/ref/io/gguf/types.gguf", &g), FTQ_OK);
  CHECK_STATUS(ftq_gguf_read_config(g, &gg, &permuted), FTQ_ERR_FORMAT); /* no llama.* keys */
  CHECK_ERROR_MENTIONS("llama.embedding_length");
  ftq_gguf_close(g);
}

int main(void) {
  test_real_configs();
  test_refusals();
  test_gguf_config();
  return test_finish("test_config");
}

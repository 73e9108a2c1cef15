/* Model configurations from Hugging Face config.json (transformers 4.x
 * "rope_scaling" + "rope_theta" and 5.x "rope_parameters" forms) and from
 * GGUF metadata, and back to config.json text. Everything outside the one
 * graph libftq runs is refused with the field and value named. */
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/json.h"
#include "model/model_load.h"

/* Per-architecture defaults: those of transformers' config classes. */
typedef struct arch_info {
  const char *arch, *model_type;
  int64_t max_pos, bos, eos, sliding_window;
  int qkv_bias; /* Qwen2: q/k/v always carry biases */
} arch_info;

static const arch_info archs[] = {
    {"LlamaForCausalLM", "llama", 2048, 1, 2, 0, 0},
    {"MistralForCausalLM", "mistral", 131072, 1, 2, 4096, 0},
    {"Qwen2ForCausalLM", "qwen2", 32768, -1, -1, 0, 1},
};
#define N_ARCHS (sizeof archs / sizeof archs[0])
#define SUPPORTED_ARCHS "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM"

const char *ftq_model_type_of(const char *architecture) {
  for (size_t i = 0; i < N_ARCHS; i++)
    if (strcmp(archs[i].arch, architecture) == 0) return archs[i].model_type;
  return NULL;
}

const char *ftq_torch_dtype_name(ftq_dtype d) {
  switch (d) {
    case FTQ_DTYPE_F32: return "float32";
    case FTQ_DTYPE_F16: return "float16";
    case FTQ_DTYPE_BF16: return "bfloat16";
    default: return "?";
  }
}

static int torch_dtype_parse(const char *s, ftq_dtype *out) {
  static const struct {
    const char *name;
    ftq_dtype d;
  } names[] = {{"float32", FTQ_DTYPE_F32}, {"float", FTQ_DTYPE_F32},     {"float16", FTQ_DTYPE_F16},
               {"half", FTQ_DTYPE_F16},    {"bfloat16", FTQ_DTYPE_BF16}};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (strcmp(names[i].name, s) == 0) return *out = names[i].d, 1;
  return 0;
}

/* ---------------------------------------------------------------------- */
/* config.json                                                              */

/* Required integer field. */
static ftq_status req_int(const json_t *o, const char *key, const char *what, int64_t *out) {
  ftq_status st = ftq_json_get_int(o, key, what, out);
  if (st == FTQ_ERR_NOT_FOUND) return ftq_error(FTQ_ERR_FORMAT, "%s: required field %s is missing", what, key);
  return st;
}

/* Optional fields: keep *out (the default) when absent or null. */
static ftq_status opt_int(const json_t *o, const char *key, const char *what, int64_t *out) {
  ftq_status st = ftq_json_get_int(o, key, what, out);
  return st == FTQ_ERR_NOT_FOUND ? FTQ_OK : st;
}
static ftq_status opt_float(const json_t *o, const char *key, const char *what, double *out) {
  ftq_status st = ftq_json_get_float(o, key, what, out);
  return st == FTQ_ERR_NOT_FOUND ? FTQ_OK : st;
}
static ftq_status opt_bool(const json_t *o, const char *key, const char *what, int *out) {
  ftq_status st = ftq_json_get_bool(o, key, what, out);
  return st == FTQ_ERR_NOT_FOUND ? FTQ_OK : st;
}
static ftq_status opt_string(const json_t *o, const char *key, const char *what, const char **out) {
  ftq_status st = ftq_json_get_string(o, key, what, out);
  return st == FTQ_ERR_NOT_FOUND ? FTQ_OK : st;
}

static ftq_status parse_arch(const json_t *root, const char *what, int default_llama, const arch_info **out) {
  const json_t *a = json_object_get(root, "architectures");
  char d[96];
  const char *arch = NULL;
  if (a && !json_is_null(a)) {
    if (!json_is_array(a) || json_array_size(a) != 1 || !json_is_string(json_array_get(a, 0)))
      return ftq_error(FTQ_ERR_FORMAT, "%s: architectures must be a list of one name (got %s)", what,
                       ftq_json_describe(a, d, sizeof d));
    arch = json_string_value(json_array_get(a, 0));
  }
  const char *mt = NULL;
  FTQ_TRY(opt_string(root, "model_type", what, &mt));
  for (size_t i = 0; i < N_ARCHS; i++) {
    if ((arch && strcmp(arch, archs[i].arch) == 0) || (!arch && mt && strcmp(mt, archs[i].model_type) == 0)) {
      *out = &archs[i];
      return FTQ_OK;
    }
  }
  if (arch)
    return ftq_error(FTQ_ERR_UNSUPPORTED, "%s: architectures = [\"%.64s\"] is not supported (supported: " SUPPORTED_ARCHS ")",
                     what, arch);
  if (mt)
    return ftq_error(FTQ_ERR_UNSUPPORTED, "%s: model_type = \"%.64s\" is not supported (supported: llama, mistral, qwen2)",
                     what, mt);
  if (default_llama) {
    *out = &archs[0];
    return FTQ_OK;
  }
  return ftq_error(FTQ_ERR_FORMAT, "%s: neither architectures nor model_type is given", what);
}

/* rope_scaling (4.x) or rope_parameters (5.x). */
static ftq_status parse_rope(const json_t *root, const char *what, ftq_model_config *c) {
  char d[96];
  c->rope_theta = 10000.0;
  FTQ_TRY(opt_float(root, "rope_theta", what, &c->rope_theta));
  const char *field = "rope_parameters";
  const json_t *rs = json_object_get(root, field);
  if (!rs || json_is_null(rs)) {
    field = "rope_scaling";
    rs = json_object_get(root, field);
  }
  c->rope_scaling = FTQ_ROPE_DEFAULT;
  if (!rs || json_is_null(rs)) return FTQ_OK;
  if (!json_is_object(rs))
    return ftq_error(FTQ_ERR_FORMAT, "%s: %s = %s must be an object", what, field, ftq_json_describe(rs, d, sizeof d));
  char sub[64];
  snprintf(sub, sizeof sub, "%s: %s", what, field);
  FTQ_TRY(opt_float(rs, "rope_theta", sub, &c->rope_theta));
  const char *type = NULL;
  ftq_status st = ftq_json_get_string(rs, "rope_type", sub, &type);
  if (st == FTQ_ERR_NOT_FOUND) st = ftq_json_get_string(rs, "type", sub, &type);
  if (st == FTQ_ERR_NOT_FOUND) type = "default";
  else if (st != FTQ_OK) return st;
  if (strcmp(type, "default") == 0) return FTQ_OK;
  if (strcmp(type, "linear") == 0) {
    c->rope_scaling = FTQ_ROPE_LINEAR;
    st = ftq_json_get_float(rs, "factor", sub, &c->rope_factor);
    if (st == FTQ_ERR_NOT_FOUND) return ftq_error(FTQ_ERR_FORMAT, "%s: %s.factor is required for linear scaling", what, field);
    return st;
  }
  if (strcmp(type, "llama3") == 0) {
    c->rope_scaling = FTQ_ROPE_LLAMA3;
    static const char *keys[] = {"factor", "low_freq_factor", "high_freq_factor"};
    double *dst[] = {&c->rope_factor, &c->rope_low_freq_factor, &c->rope_high_freq_factor};
    for (int k = 0; k < 3; k++) {
      st = ftq_json_get_float(rs, keys[k], sub, dst[k]);
      if (st == FTQ_ERR_NOT_FOUND)
        return ftq_error(FTQ_ERR_FORMAT, "%s: %s.%s is required for llama3 scaling", what, field, keys[k]);
      FTQ_TRY(st);
    }
    st = ftq_json_get_int(rs, "original_max_position_embeddings", sub, &c->rope_original_max_position);
    if (st == FTQ_ERR_NOT_FOUND)
      return ftq_error(FTQ_ERR_FORMAT, "%s: %s.original_max_position_embeddings is required for llama3 scaling", what, field);
    return st;
  }
  return ftq_error(FTQ_ERR_UNSUPPORTED, "%s: %s.rope_type = \"%.32s\" is not supported (supported: default, linear, llama3)",
                   what, field, type);
}

/* A token id: absent keeps the default, null means none (-1), as in transformers. */
static ftq_status token_id(const json_t *o, const char *key, const char *what, int64_t *out) {
  const json_t *v = json_object_get(o, key);
  if (v && json_is_null(v)) {
    *out = -1;
    return FTQ_OK;
  }
  return opt_int(o, key, what, out);
}

static ftq_status parse_eos(const json_t *root, const char *what, ftq_model_config *c) {
  const json_t *e = json_object_get(root, "eos_token_id");
  char d[96];
  if (!e) return FTQ_OK; /* keep the architecture default */
  if (json_is_null(e)) {
    c->n_eos_token_ids = 0;
    return FTQ_OK;
  }
  if (json_is_integer(e)) {
    c->eos_token_ids[0] = (int64_t)json_integer_value(e);
    c->n_eos_token_ids = 1;
    return FTQ_OK;
  }
  if (!json_is_array(e))
    return ftq_error(FTQ_ERR_FORMAT, "%s: eos_token_id = %s must be an integer or a list of integers", what,
                     ftq_json_describe(e, d, sizeof d));
  if (json_array_size(e) > FTQ_MAX_EOS_IDS)
    return ftq_error(FTQ_ERR_UNSUPPORTED, "%s: eos_token_id lists %zu ids (at most %d supported)", what, json_array_size(e),
                     FTQ_MAX_EOS_IDS);
  c->n_eos_token_ids = 0;
  for (size_t i = 0; i < json_array_size(e); i++) {
    const json_t *v = json_array_get(e, i);
    if (!json_is_integer(v))
      return ftq_error(FTQ_ERR_FORMAT, "%s: eos_token_id[%zu] = %s must be an integer", what, i,
                       ftq_json_describe(v, d, sizeof d));
    c->eos_token_ids[c->n_eos_token_ids++] = (int64_t)json_integer_value(v);
  }
  return FTQ_OK;
}

/* Fields whose non-default values would change the graph. */
static ftq_status check_unsupported(const json_t *root, const char *what, const arch_info *ai) {
  char d[96];
  const char *act = NULL;
  FTQ_TRY(opt_string(root, "hidden_act", what, &act));
  if (act && strcmp(act, "silu") != 0)
    return ftq_error(FTQ_ERR_UNSUPPORTED, "%s: hidden_act = \"%.32s\" is not supported (only silu)", what, act);
  int b = 0;
  FTQ_TRY(opt_bool(root, "mlp_bias", what, &b));
  if (b) return ftq_error(FTQ_ERR_UNSUPPORTED, "%s: mlp_bias = true is not supported", what);
  double dropout = 0;
  FTQ_TRY(opt_float(root, "attention_dropout", what, &dropout));
  if (dropout != 0)
    return ftq_error(FTQ_ERR_UNSUPPORTED, "%s: attention_dropout = %g is not supported (libftq applies no attention dropout)",
                     what, dropout);
  const json_t *q = json_object_get(root, "quantization_config");
  if (q && !json_is_null(q)) {
    const char *m = "?";
    if (json_is_object(q) && json_is_string(json_object_get(q, "quant_method")))
      m = json_string_value(json_object_get(q, "quant_method"));
    return ftq_error(FTQ_ERR_UNSUPPORTED,
                     "%s: quantization_config (quant_method \"%.32s\"): loading pre-quantized checkpoints is not supported; "
                     "load the unquantized model and quantize at load",
                     what, m);
  }
  if (strcmp(ai->model_type, "qwen2") == 0) {
    int sw = 0;
    FTQ_TRY(opt_bool(root, "use_sliding_window", what, &sw));
    if (sw) return ftq_error(FTQ_ERR_UNSUPPORTED, "%s: use_sliding_window = true is not supported", what);
  }
  const json_t *lt = json_object_get(root, "layer_types");
  if (lt && json_is_array(lt)) {
    for (size_t i = 0; i < json_array_size(lt); i++) {
      const json_t *v = json_array_get(lt, i);
      if (!json_is_string(v) || strcmp(json_string_value(v), "full_attention") != 0)
        return ftq_error(FTQ_ERR_UNSUPPORTED, "%s: layer_types[%zu] = %s is not supported (only \"full_attention\")", what, i,
                         ftq_json_describe(v, d, sizeof d));
    }
  }
  return FTQ_OK;
}

static ftq_status parse_root(const json_t *root, const char *what, int default_llama, ftq_model_config *c) {
  if (!json_is_object(root)) return ftq_error(FTQ_ERR_FORMAT, "%s: must be a JSON object", what);
  const arch_info *ai = NULL;
  FTQ_TRY(parse_arch(root, what, default_llama, &ai));
  memset(c, 0, sizeof *c);
  snprintf(c->architecture, sizeof c->architecture, "%s", ai->arch);
  FTQ_TRY(check_unsupported(root, what, ai));
  FTQ_TRY(req_int(root, "hidden_size", what, &c->hidden_size));
  FTQ_TRY(req_int(root, "intermediate_size", what, &c->intermediate_size));
  FTQ_TRY(req_int(root, "num_hidden_layers", what, &c->num_hidden_layers));
  FTQ_TRY(req_int(root, "num_attention_heads", what, &c->num_attention_heads));
  FTQ_TRY(req_int(root, "vocab_size", what, &c->vocab_size));
  FTQ_TRY(opt_int(root, "num_key_value_heads", what, &c->num_key_value_heads));
  FTQ_TRY(opt_int(root, "head_dim", what, &c->head_dim));
  c->max_position_embeddings = ai->max_pos;
  FTQ_TRY(opt_int(root, "max_position_embeddings", what, &c->max_position_embeddings));
  c->rms_norm_eps = 1e-6;
  FTQ_TRY(opt_float(root, "rms_norm_eps", what, &c->rms_norm_eps));
  FTQ_TRY(parse_rope(root, what, c));
  FTQ_TRY(opt_bool(root, "tie_word_embeddings", what, &c->tie_word_embeddings));
  c->attention_bias = ai->qkv_bias;
  if (!ai->qkv_bias) FTQ_TRY(opt_bool(root, "attention_bias", what, &c->attention_bias));
  c->bos_token_id = ai->bos;
  FTQ_TRY(token_id(root, "bos_token_id", what, &c->bos_token_id));
  if (ai->eos >= 0) {
    c->eos_token_ids[0] = ai->eos;
    c->n_eos_token_ids = 1;
  }
  FTQ_TRY(parse_eos(root, what, c));
  c->pad_token_id = -1;
  FTQ_TRY(token_id(root, "pad_token_id", what, &c->pad_token_id));
  c->initializer_range = 0.02;
  FTQ_TRY(opt_float(root, "initializer_range", what, &c->initializer_range));
  if (!(c->initializer_range >= 0))
    return ftq_error(FTQ_ERR_FORMAT, "%s: initializer_range = %g must not be negative", what, c->initializer_range);
  c->sliding_window = ai->sliding_window;
  if (strcmp(ai->model_type, "mistral") == 0) {
    const json_t *sw = json_object_get(root, "sliding_window");
    if (sw && json_is_null(sw)) c->sliding_window = 0;
    else FTQ_TRY(opt_int(root, "sliding_window", what, &c->sliding_window));
    if (c->sliding_window < 0)
      return ftq_error(FTQ_ERR_FORMAT, "%s: sliding_window = %lld must not be negative", what, (long long)c->sliding_window);
  }
  /* transformers 5 writes "dtype", 4.x "torch_dtype" */
  c->torch_dtype = FTQ_DTYPE_F32;
  const char *dt = NULL, *dt_field = "dtype";
  ftq_status st = ftq_json_get_string(root, "dtype", what, &dt);
  if (st == FTQ_ERR_NOT_FOUND) {
    dt_field = "torch_dtype";
    st = ftq_json_get_string(root, "torch_dtype", what, &dt);
  }
  if (st == FTQ_OK && !torch_dtype_parse(dt, &c->torch_dtype))
    return ftq_error(FTQ_ERR_UNSUPPORTED, "%s: %s = \"%.32s\" is not supported (float32, float16, bfloat16)", what, dt_field, dt);
  if (st != FTQ_OK && st != FTQ_ERR_NOT_FOUND) return st;

  ftq_model_config_finish(c);
  ftq_status cs = ftq_model_config_check(c);
  if (cs != FTQ_OK) return ftq_error_context(cs, "%s", what);
  for (int i = 0; i < c->n_eos_token_ids; i++)
    if (c->eos_token_ids[i] < 0 || c->eos_token_ids[i] >= c->vocab_size)
      return ftq_error(FTQ_ERR_FORMAT, "%s: eos_token_id %lld is outside the vocabulary (%lld tokens)", what,
                       (long long)c->eos_token_ids[i], (long long)c->vocab_size);
  if (c->bos_token_id >= c->vocab_size || c->bos_token_id < -1)
    return ftq_error(FTQ_ERR_FORMAT, "%s: bos_token_id %lld is outside the vocabulary (%lld tokens)", what,
                     (long long)c->bos_token_id, (long long)c->vocab_size);
  if (c->pad_token_id >= c->vocab_size || c->pad_token_id < -1)
    return ftq_error(FTQ_ERR_FORMAT, "%s: pad_token_id %lld is outside the vocabulary (%lld tokens)", what,
                     (long long)c->pad_token_id, (long long)c->vocab_size);
  if (c->max_position_embeddings <= 0)
    return ftq_error(FTQ_ERR_FORMAT, "%s: max_position_embeddings = %lld must be positive", what,
                     (long long)c->max_position_embeddings);
  return FTQ_OK;
}

ftq_status ftq_hf_config_parse(const char *text, size_t len, const char *what, int default_llama, ftq_model_config *cfg) {
  json_t *root;
  FTQ_TRY(ftq_json_parse(text, len, what, &root));
  ftq_status st = parse_root(root, what, default_llama, cfg);
  json_decref(root);
  return st;
}

/* ---------------------------------------------------------------------- */
/* GGUF metadata                                                            */

/* The shortest decimal that rounds to the same float: GGUF stores eps and
 * theta as float32, config.json as the decimal people wrote (1e-05). */
static double nice_float(double v) {
  float f = (float)v;
  if ((double)f != v) return v;
  char buf[48];
  for (int p = 1; p <= 9; p++) {
    snprintf(buf, sizeof buf, "%.*g", p, v);
    if (strtof(buf, NULL) == f) return strtod(buf, NULL);
  }
  return v;
}

static ftq_status gguf_int(const ftq_gguf *g, const char *arch, const char *suffix, int required, int64_t *out) {
  char key[128];
  snprintf(key, sizeof key, "%s.%s", arch, suffix);
  ftq_gguf_type t;
  if (ftq_gguf_key_type(g, key, &t, NULL, NULL) != FTQ_OK) {
    if (required) return ftq_error(FTQ_ERR_FORMAT, "%s: required key %s is missing", ftq_gguf_path(g), key);
    return FTQ_OK;
  }
  ftq_status st = ftq_gguf_get_int(g, key, out);
  if (st == FTQ_OK && *out < 0) return ftq_error(FTQ_ERR_FORMAT, "%s: %s = %lld must not be negative", ftq_gguf_path(g), key, (long long)*out);
  return st;
}

static ftq_status gguf_float(const ftq_gguf *g, const char *key, double *out) {
  if (ftq_gguf_key_type(g, key, NULL, NULL, NULL) != FTQ_OK) return FTQ_OK;
  FTQ_TRY(ftq_gguf_get_float(g, key, out));
  if (!isfinite(*out)) return ftq_error(FTQ_ERR_FORMAT, "%s: %s is not finite", ftq_gguf_path(g), key);
  *out = nice_float(*out);
  return FTQ_OK;
}

ftq_status ftq_gguf_read_config(const ftq_gguf *g, ftq_model_config *c, int *permuted_qk) {
  const char *path = ftq_gguf_path(g);
  const char *s;
  size_t len;
  memset(c, 0, sizeof *c);
  if (ftq_gguf_key_type(g, "general.architecture", NULL, NULL, NULL) != FTQ_OK)
    return ftq_error(FTQ_ERR_FORMAT, "%s: general.architecture is missing", path);
  FTQ_TRY(ftq_gguf_get_string(g, "general.architecture", &s, &len));
  char arch[32];
  if (len >= sizeof arch) len = sizeof arch - 1;
  memcpy(arch, s, len);
  arch[len] = '\0';
  for (char *p = arch; *p; p++)
    if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-') *p = '?';
  int qwen2 = strcmp(arch, "qwen2") == 0;
  if (strcmp(arch, "llama") != 0 && !qwen2)
    return ftq_error(FTQ_ERR_UNSUPPORTED, "%s: general.architecture = \"%s\" is not supported (llama, qwen2)", path, arch);
  snprintf(c->architecture, sizeof c->architecture, "%s", qwen2 ? "Qwen2ForCausalLM" : "LlamaForCausalLM");
  /* llama.cpp's converter permutes q/k rows of "llama" models only */
  *permuted_qk = !qwen2;
  c->attention_bias = qwen2;

  FTQ_TRY(gguf_int(g, arch, "embedding_length", 1, &c->hidden_size));
  FTQ_TRY(gguf_int(g, arch, "feed_forward_length", 1, &c->intermediate_size));
  FTQ_TRY(gguf_int(g, arch, "block_count", 1, &c->num_hidden_layers));
  FTQ_TRY(gguf_int(g, arch, "attention.head_count", 1, &c->num_attention_heads));
  FTQ_TRY(gguf_int(g, arch, "attention.head_count_kv", 0, &c->num_key_value_heads));
  FTQ_TRY(gguf_int(g, arch, "attention.key_length", 0, &c->head_dim));
  c->max_position_embeddings = qwen2 ? 32768 : 2048;
  FTQ_TRY(gguf_int(g, arch, "context_length", 0, &c->max_position_embeddings));
  int64_t vlen = 0, rot = 0;
  FTQ_TRY(gguf_int(g, arch, "attention.value_length", 0, &vlen));
  FTQ_TRY(gguf_int(g, arch, "rope.dimension_count", 0, &rot));
  FTQ_TRY(gguf_int(g, arch, "vocab_size", 0, &c->vocab_size));
  if (c->vocab_size == 0) {
    uint64_t n = 0;
    if (ftq_gguf_key_type(g, "tokenizer.ggml.tokens", NULL, NULL, &n) == FTQ_OK) c->vocab_size = (int64_t)n;
    uint64_t ti;
    uint64_t ne[4];
    if (!c->vocab_size && ftq_gguf_find_tensor(g, "token_embd.weight", &ti) == FTQ_OK &&
        ftq_gguf_tensor_info(g, ti, NULL, NULL, NULL, ne, NULL, NULL) == FTQ_OK)
      c->vocab_size = (int64_t)ne[1];
  }
  char key[128];
  c->rms_norm_eps = 1e-6;
  snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", arch);
  FTQ_TRY(gguf_float(g, key, &c->rms_norm_eps));
  c->rope_theta = 10000.0;
  snprintf(key, sizeof key, "%s.rope.freq_base", arch);
  FTQ_TRY(gguf_float(g, key, &c->rope_theta));
  snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
  if (ftq_gguf_key_type(g, key, NULL, NULL, NULL) == FTQ_OK) {
    FTQ_TRY(ftq_gguf_get_string(g, key, &s, &len));
    if (len == 6 && memcmp(s, "linear", 6) == 0) {
      c->rope_scaling = FTQ_ROPE_LINEAR;
      snprintf(key, sizeof key, "%s.rope.scaling.factor", arch);
      FTQ_TRY(gguf_float(g, key, &c->rope_factor));
    } else if (!(len == 4 && memcmp(s, "none", 4) == 0)) {
      return ftq_error(FTQ_ERR_UNSUPPORTED, "%s: %s = \"%.*s\" is not supported (none, linear)", path, key,
                       (int)(len > 32 ? 32 : len), s);
    }
  }
  uint64_t idx;
  if (ftq_gguf_find_tensor(g, "rope_freqs.weight", &idx) == FTQ_OK)
    return ftq_error(FTQ_ERR_UNSUPPORTED,
                     "%s: tensor rope_freqs.weight (per-frequency rope factors, e.g. Llama 3.1 scaling) is not supported", path);
  c->tie_word_embeddings = ftq_gguf_find_tensor(g, "output.weight", &idx) != FTQ_OK;
  c->bos_token_id = c->pad_token_id = -1;
  static const char *tok_keys[] = {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                                   "tokenizer.ggml.padding_token_id"};
  int64_t ids[3] = {-1, -1, -1};
  for (int k = 0; k < 3; k++)
    if (ftq_gguf_key_type(g, tok_keys[k], NULL, NULL, NULL) == FTQ_OK) FTQ_TRY(ftq_gguf_get_int(g, tok_keys[k], &ids[k]));
  c->bos_token_id = ids[0];
  if (ids[1] >= 0) {
    c->eos_token_ids[0] = ids[1];
    c->n_eos_token_ids = 1;
  }
  c->pad_token_id = ids[2];
  c->initializer_range = 0.02;
  /* the precision of the dequantized weights: float32 unless every matrix is f16/bf16 */
  c->torch_dtype = FTQ_DTYPE_F32;
  int64_t ftype = -1;
  if (ftq_gguf_key_type(g, "general.file_type", NULL, NULL, NULL) == FTQ_OK) FTQ_TRY(ftq_gguf_get_int(g, "general.file_type", &ftype));
  if (ftype == 1) c->torch_dtype = FTQ_DTYPE_F16;
  if (ftype == 32) c->torch_dtype = FTQ_DTYPE_BF16;

  ftq_model_config_finish(c);
  if (vlen && vlen != c->head_dim)
    return ftq_error(FTQ_ERR_UNSUPPORTED, "%s: %s.attention.value_length = %lld differs from the key length %lld", path, arch,
                     (long long)vlen, (long long)c->head_dim);
  if (rot && rot != c->head_dim)
    return ftq_error(FTQ_ERR_UNSUPPORTED, "%s: %s.rope.dimension_count = %lld: partial rotary embeddings are not supported "
                     "(head_dim %lld)", path, arch, (long long)rot, (long long)c->head_dim);
  ftq_status cs = ftq_model_config_check(c);
  if (cs != FTQ_OK) return ftq_error_context(cs, "%s", path);
  for (int k = 0; k < 3; k++)
    if (ids[k] >= c->vocab_size)
      return ftq_error(FTQ_ERR_FORMAT, "%s: %s = %lld is outside the vocabulary (%lld tokens)", path, tok_keys[k],
                       (long long)ids[k], (long long)c->vocab_size);
  return FTQ_OK;
}

/* ---------------------------------------------------------------------- */
/* Back to config.json                                                      */

/* A growing text buffer. */
typedef struct tbuf {
  char *p;
  size_t len, cap;
  int oom;
} tbuf;

static void tb_printf(tbuf *b, const char *fmt, ...) FTQ_PRINTF(2, 3);
static void tb_printf(tbuf *b, const char *fmt, ...) {
  if (b->oom) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
      b->oom = 1;
      return;
    }
    if (b->p && b->len + (size_t)n < b->cap) {
      b->len += (size_t)n;
      return;
    }
    size_t cap = (b->cap ? b->cap : 512) * 2 + (size_t)n;
    char *q = realloc(b->p, cap);
    if (!q) {
      b->oom = 1;
      return;
    }
    b->p = q;
    b->cap = cap;
  }
}

/* The shortest decimal that reads back as exactly `v` (what Python's
 * repr() writes), always with a '.' or exponent so JSON readers see a float. */
static void tb_real(tbuf *b, double v) {
  char s[40];
  for (int p = 1; p <= 17; p++) {
    snprintf(s, sizeof s, "%.*g", p, v);
    if (strtod(s, NULL) == v) break;
  }
  if (!strpbrk(s, ".eEn")) strcat(s, ".0");
  tb_printf(b, "%s", s);
}

static void tb_id(tbuf *b, int64_t v) {
  if (v >= 0) tb_printf(b, "%lld", (long long)v);
  else tb_printf(b, "null");
}

char *ftq_model_config_to_json(const ftq_model_config *c) {
  const char *mt = ftq_model_type_of(c->architecture);
  int qwen2 = mt && !strcmp(mt, "qwen2"), mistral = mt && !strcmp(mt, "mistral");
  tbuf b = {0};
  /* keys in sorted order, as json.dumps(sort_keys=True) writes them */
  tb_printf(&b, "{\n  \"architectures\": [\n    \"%s\"\n  ],\n", c->architecture);
  if (!qwen2) tb_printf(&b, "  \"attention_bias\": %s,\n", c->attention_bias ? "true" : "false");
  tb_printf(&b, "  \"bos_token_id\": ");
  tb_id(&b, c->bos_token_id);
  tb_printf(&b, ",\n  \"eos_token_id\": ");
  if (c->n_eos_token_ids == 0) tb_printf(&b, "null");
  else if (c->n_eos_token_ids == 1) tb_printf(&b, "%lld", (long long)c->eos_token_ids[0]);
  for (int i = 0; c->n_eos_token_ids > 1 && i < c->n_eos_token_ids; i++)
    tb_printf(&b, "%s%lld", i ? ", " : "[", (long long)c->eos_token_ids[i]);
  if (c->n_eos_token_ids > 1) tb_printf(&b, "]");
  tb_printf(&b, ",\n  \"head_dim\": %lld,\n  \"hidden_act\": \"silu\",\n  \"hidden_size\": %lld,\n", (long long)c->head_dim,
            (long long)c->hidden_size);
  tb_printf(&b, "  \"initializer_range\": ");
  tb_real(&b, c->initializer_range);
  tb_printf(&b, ",\n  \"intermediate_size\": %lld,\n  \"max_position_embeddings\": %lld,\n  \"model_type\": \"%s\",\n",
            (long long)c->intermediate_size, (long long)c->max_position_embeddings, mt ? mt : "llama");
  tb_printf(&b, "  \"num_attention_heads\": %lld,\n  \"num_hidden_layers\": %lld,\n  \"num_key_value_heads\": %lld,\n",
            (long long)c->num_attention_heads, (long long)c->num_hidden_layers, (long long)c->num_key_value_heads);
  tb_printf(&b, "  \"pad_token_id\": ");
  tb_id(&b, c->pad_token_id);
  tb_printf(&b, ",\n  \"rms_norm_eps\": ");
  tb_real(&b, c->rms_norm_eps);
  tb_printf(&b, ",\n  \"rope_scaling\": ");
  if (c->rope_scaling == FTQ_ROPE_DEFAULT) {
    tb_printf(&b, "null");
  } else {
    tb_printf(&b, "{\n    \"factor\": ");
    tb_real(&b, c->rope_factor);
    if (c->rope_scaling == FTQ_ROPE_LLAMA3) {
      tb_printf(&b, ",\n    \"high_freq_factor\": ");
      tb_real(&b, c->rope_high_freq_factor);
      tb_printf(&b, ",\n    \"low_freq_factor\": ");
      tb_real(&b, c->rope_low_freq_factor);
      tb_printf(&b, ",\n    \"original_max_position_embeddings\": %lld", (long long)c->rope_original_max_position);
    }
    tb_printf(&b, ",\n    \"rope_type\": \"%s\"\n  }", c->rope_scaling == FTQ_ROPE_LLAMA3 ? "llama3" : "linear");
  }
  tb_printf(&b, ",\n  \"rope_theta\": ");
  tb_real(&b, c->rope_theta);
  if (mistral) {
    tb_printf(&b, ",\n  \"sliding_window\": ");
    tb_id(&b, c->sliding_window > 0 ? c->sliding_window : -1);
  }
  tb_printf(&b, ",\n  \"tie_word_embeddings\": %s,\n  \"torch_dtype\": \"%s\",\n  \"vocab_size\": %lld\n}\n",
            c->tie_word_embeddings ? "true" : "false", ftq_torch_dtype_name(c->torch_dtype), (long long)c->vocab_size);
  if (b.oom) {
    free(b.p);
    ftq_error(FTQ_ERR_OUT_OF_MEMORY, "out of host memory writing a model configuration");
    return NULL;
  }
  return b.p;
}

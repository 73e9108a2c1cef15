/* The public model API (libftq/ftq_model.h): load, random init, destroy and
 * introspection (configuration by name, parameter counts, bytes). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/context.h"
#include "core/error.h"
#include "core/log.h"
#include "io/file.h"
#include "libftq/ftq_model.h"
#include "model/model_load.h"

static int ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && strcmp(s + a - b, suffix) == 0;
}

ftq_status ftq_model_load(ftq_context *ctx, const char *path, const ftq_options *opts, ftq_model **out) {
  FTQ_CHECK_ARG(out, "ftq_model_load: out must not be NULL");
  *out = NULL;
  FTQ_CHECK_ARG(ctx, "ftq_model_load: ctx must not be NULL");
  FTQ_CHECK_ARG(path && *path, "ftq_model_load: path must not be empty");
  if (!ftq_dir_exists(path) && !ftq_file_exists(path))
    return ftq_error(FTQ_ERR_NOT_FOUND, "ftq_model_load: '%s' is neither a model folder nor a file", path);
  ftq_status st;
  if (ftq_dir_exists(path)) {
    st = ftq_model_load_hf(ctx, path, opts, out);
  } else if (ends_with(path, ".gguf")) {
    st = ftq_model_load_gguf(ctx, path, opts, out);
  } else if (ends_with(path, ".safetensors") || ends_with(path, ".json")) {
    st = ftq_model_load_hf(ctx, path, opts, out);
  } else {
    /* no telling suffix: look at the magic */
    FILE *fp = fopen(path, "rb");
    char magic[4] = {0};
    size_t got = fp ? fread(magic, 1, 4, fp) : 0;
    if (fp) fclose(fp);
    if (got == 4 && memcmp(magic, "GGUF", 4) == 0) st = ftq_model_load_gguf(ctx, path, opts, out);
    else
      return ftq_error(FTQ_ERR_UNSUPPORTED, "ftq_model_load: '%s' is not a model folder, .safetensors or GGUF file", path);
  }
  if (st == FTQ_OK && !((*out)->source_path = ftq_strdup(path, "model path"))) {
    ftq_model_free(*out);
    *out = NULL;
    return FTQ_ERR_OUT_OF_MEMORY;
  }
  return st;
}

ftq_status ftq_model_init_random(ftq_context *ctx, const char *config_json, uint64_t seed, const ftq_options *opts,
                                 ftq_model **out) {
  FTQ_CHECK_ARG(out, "ftq_model_init_random: out must not be NULL");
  *out = NULL;
  FTQ_CHECK_ARG(ctx && config_json, "ftq_model_init_random: ctx and config_json must not be NULL");
  ftq_model_config cfg;
  FTQ_TRY(ftq_hf_config_parse(config_json, strlen(config_json), "model configuration", 1, &cfg));
  return ftq_model_build_random(ctx, &cfg, seed, opts, out);
}

void ftq_model_destroy(ftq_model *model) { ftq_model_free(model); }

/* ---------------------------------------------------------------------- */
/* Configuration by name                                                    */

typedef enum { F_INT, F_FLOAT, F_STRING } field_type;

static const struct {
  const char *name;
  field_type type;
} fields[] = {
    {"hidden_size", F_INT},
    {"intermediate_size", F_INT},
    {"num_hidden_layers", F_INT},
    {"num_attention_heads", F_INT},
    {"num_key_value_heads", F_INT},
    {"head_dim", F_INT},
    {"vocab_size", F_INT},
    {"max_position_embeddings", F_INT},
    {"tie_word_embeddings", F_INT},
    {"attention_bias", F_INT},
    {"bos_token_id", F_INT},
    {"eos_token_id", F_INT},
    {"pad_token_id", F_INT},
    {"sliding_window", F_INT},
    {"rope_scaling.original_max_position_embeddings", F_INT},
    {"rms_norm_eps", F_FLOAT},
    {"rope_theta", F_FLOAT},
    {"initializer_range", F_FLOAT},
    {"rope_scaling.factor", F_FLOAT},
    {"rope_scaling.low_freq_factor", F_FLOAT},
    {"rope_scaling.high_freq_factor", F_FLOAT},
    {"architectures", F_STRING},
    {"model_type", F_STRING},
    {"torch_dtype", F_STRING},
    {"rope_scaling.rope_type", F_STRING},
};

static ftq_status find_field(const ftq_model *m, const char *name, field_type want, const char *fn) {
  FTQ_CHECK_ARG(m && name, "%s: model and name must not be NULL", fn);
  static const char *type_fn[] = {"ftq_model_config_int", "ftq_model_config_float", "ftq_model_config_string"};
  for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
    if (strcmp(fields[i].name, name) != 0) continue;
    if (fields[i].type != want)
      return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "%s: '%s' is read with %s", fn, name, type_fn[fields[i].type]);
    return FTQ_OK;
  }
  return ftq_error(FTQ_ERR_NOT_FOUND, "%s: no configuration field '%s'", fn, name);
}

ftq_status ftq_model_config_int(const ftq_model *m, const char *name, int64_t *value) {
  FTQ_TRY(find_field(m, name, F_INT, "ftq_model_config_int"));
  FTQ_CHECK_ARG(value, "ftq_model_config_int: value must not be NULL");
  const ftq_model_config *c = &m->cfg;
  const struct {
    const char *n;
    int64_t v;
  } vals[] = {
      {"hidden_size", c->hidden_size},
      {"intermediate_size", c->intermediate_size},
      {"num_hidden_layers", c->num_hidden_layers},
      {"num_attention_heads", c->num_attention_heads},
      {"num_key_value_heads", c->num_key_value_heads},
      {"head_dim", c->head_dim},
      {"vocab_size", c->vocab_size},
      {"max_position_embeddings", c->max_position_embeddings},
      {"tie_word_embeddings", c->tie_word_embeddings},
      {"attention_bias", c->attention_bias},
      {"bos_token_id", c->bos_token_id},
      {"eos_token_id", c->n_eos_token_ids ? c->eos_token_ids[0] : -1},
      {"pad_token_id", c->pad_token_id},
      {"sliding_window", c->sliding_window},
      {"rope_scaling.original_max_position_embeddings", c->rope_original_max_position},
  };
  for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++)
    if (strcmp(vals[i].n, name) == 0) return *value = vals[i].v, FTQ_OK;
  return ftq_error(FTQ_ERR_INTERNAL, "ftq_model_config_int: field '%s' has no value", name);
}

ftq_status ftq_model_config_float(const ftq_model *m, const char *name, double *value) {
  FTQ_TRY(find_field(m, name, F_FLOAT, "ftq_model_config_float"));
  FTQ_CHECK_ARG(value, "ftq_model_config_float: value must not be NULL");
  const ftq_model_config *c = &m->cfg;
  if (strcmp(name, "rms_norm_eps") == 0) *value = c->rms_norm_eps;
  else if (strcmp(name, "rope_theta") == 0) *value = c->rope_theta;
  else if (strcmp(name, "initializer_range") == 0) *value = c->initializer_range;
  else if (strcmp(name, "rope_scaling.factor") == 0) *value = c->rope_factor;
  else if (strcmp(name, "rope_scaling.low_freq_factor") == 0) *value = c->rope_low_freq_factor;
  else *value = c->rope_high_freq_factor;
  return FTQ_OK;
}

ftq_status ftq_model_config_string(const ftq_model *m, const char *name, const char **value) {
  FTQ_TRY(find_field(m, name, F_STRING, "ftq_model_config_string"));
  FTQ_CHECK_ARG(value, "ftq_model_config_string: value must not be NULL");
  const ftq_model_config *c = &m->cfg;
  static const char *rope[] = {"default", "linear", "llama3"};
  if (strcmp(name, "architectures") == 0) *value = c->architecture;
  else if (strcmp(name, "model_type") == 0) *value = ftq_model_type_of(c->architecture);
  else if (strcmp(name, "torch_dtype") == 0) *value = ftq_torch_dtype_name(c->torch_dtype);
  else *value = (unsigned)c->rope_scaling < 3 ? rope[c->rope_scaling] : "?";
  return FTQ_OK;
}

ftq_status ftq_model_eos_token_ids(const ftq_model *m, int64_t *ids, size_t capacity, size_t *count) {
  FTQ_CHECK_ARG(m && count && (ids || !capacity), "ftq_model_eos_token_ids: NULL argument");
  size_t n = (size_t)m->cfg.n_eos_token_ids;
  for (size_t i = 0; i < n && i < capacity; i++) ids[i] = m->cfg.eos_token_ids[i];
  *count = n;
  return FTQ_OK;
}

ftq_status ftq_model_config_json(const ftq_model *m, char **out) {
  FTQ_CHECK_ARG(m && out, "ftq_model_config_json: NULL argument");
  *out = ftq_model_config_to_json(&m->cfg);
  return *out ? FTQ_OK : FTQ_ERR_OUT_OF_MEMORY;
}

/* ---------------------------------------------------------------------- */
/* Counts and sizes                                                         */

static int64_t numel_or_zero(const ftq_tensor *t) { return t->data ? ftq_tensor_numel(t) : 0; }

/* Parameter counts and device bytes of every ftq_param_kind in one pass. */
static void tally(const struct ftq_model *m, int64_t count[FTQ_PARAMS_BIAS + 1], size_t bytes[FTQ_PARAMS_BIAS + 1]) {
  memset(count, 0, sizeof(int64_t) * (FTQ_PARAMS_BIAS + 1));
  memset(bytes, 0, sizeof(size_t) * (FTQ_PARAMS_BIAS + 1));
#define ADD(kind, t)                  \
  do {                                \
    count[kind] += numel_or_zero(t);  \
    bytes[kind] += (t)->buf.bytes;    \
  } while (0)
  ADD(FTQ_PARAMS_EMBEDDING, &m->tok_embeddings);
  ADD(FTQ_PARAMS_LM_HEAD, &m->lm_head);
  ADD(FTQ_PARAMS_NORM, &m->final_norm);
  for (int64_t l = 0; l < m->cfg.num_hidden_layers; l++) {
    const ftq_layer *L = &m->layers[l];
    ADD(FTQ_PARAMS_NORM, &L->attn_norm);
    ADD(FTQ_PARAMS_NORM, &L->ffn_norm);
    for (int p = 0; p < FTQ_PROJ_COUNT; p++) {
      ADD(FTQ_PARAMS_BIAS, &L->bias[p]);
      count[FTQ_PARAMS_LINEAR] += L->proj[p].ctx ? ftq_qtensor_numel(&L->proj[p]) : 0;
      bytes[FTQ_PARAMS_LINEAR] += ftq_qtensor_bytes(&L->proj[p]);
    }
  }
#undef ADD
  for (int k = FTQ_PARAMS_LINEAR; k <= FTQ_PARAMS_BIAS; k++) {
    count[FTQ_PARAMS_ALL] += count[k];
    bytes[FTQ_PARAMS_ALL] += bytes[k];
  }
}

int64_t ftq_model_count_params(const struct ftq_model *m, int kind) {
  int64_t count[FTQ_PARAMS_BIAS + 1];
  size_t bytes[FTQ_PARAMS_BIAS + 1];
  tally(m, count, bytes);
  return count[kind];
}

size_t ftq_model_count_bytes(const struct ftq_model *m, int kind) {
  int64_t count[FTQ_PARAMS_BIAS + 1];
  size_t bytes[FTQ_PARAMS_BIAS + 1];
  tally(m, count, bytes);
  return bytes[kind];
}

static int valid_kind(ftq_param_kind k) { return (int)k >= FTQ_PARAMS_ALL && (int)k <= FTQ_PARAMS_BIAS; }

ftq_status ftq_model_parameter_count(const ftq_model *m, ftq_param_kind kind, int64_t *count) {
  FTQ_CHECK_ARG(m && count, "ftq_model_parameter_count: NULL argument");
  FTQ_CHECK_ARG(valid_kind(kind), "ftq_model_parameter_count: kind %d is not an ftq_param_kind", (int)kind);
  *count = ftq_model_count_params(m, (int)kind);
  return FTQ_OK;
}

ftq_status ftq_model_parameter_bytes(const ftq_model *m, ftq_param_kind kind, size_t *bytes) {
  FTQ_CHECK_ARG(m && bytes, "ftq_model_parameter_bytes: NULL argument");
  FTQ_CHECK_ARG(valid_kind(kind), "ftq_model_parameter_bytes: kind %d is not an ftq_param_kind", (int)kind);
  *bytes = ftq_model_count_bytes(m, (int)kind);
  return FTQ_OK;
}

/* Sums the model's buffers of one category. */
static void add_buf(const ftq_buffer *b, ftq_memory_category cat, size_t *sum) {
  if (b->ptr && (cat == FTQ_MEM_ALL || b->category == cat)) *sum += b->bytes;
}

static void add_qtensor(const ftq_qtensor *q, ftq_memory_category cat, size_t *sum) {
  const ftq_tensor *owned[] = {&q->plain, &q->packed, &q->absmax, &q->nested_absmax, &q->nested_code,
                               &q->q8, &q->scales, &q->zero_points};
  add_buf(&q->storage, cat, sum); /* quantized tensors: one allocation, the tensors views into it */
  for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++) add_buf(&owned[i]->buf, cat, sum);
}

ftq_status ftq_model_memory(const ftq_model *m, ftq_memory_category cat, size_t *bytes) {
  FTQ_CHECK_ARG(m && bytes, "ftq_model_memory: NULL argument");
  FTQ_CHECK_ARG((int)cat >= 0 && (int)cat < FTQ_MEM_CATEGORIES, "ftq_model_memory: category %d is not an ftq_memory_category",
                (int)cat);
  size_t sum = 0;
  add_buf(&m->tok_embeddings.buf, cat, &sum);
  add_buf(&m->final_norm.buf, cat, &sum);
  add_buf(&m->lm_head.buf, cat, &sum);
  for (int64_t l = 0; l < m->cfg.num_hidden_layers; l++) {
    const ftq_layer *L = &m->layers[l];
    add_buf(&L->attn_norm.buf, cat, &sum);
    add_buf(&L->ffn_norm.buf, cat, &sum);
    for (int p = 0; p < FTQ_PROJ_COUNT; p++) {
      add_qtensor(&L->proj[p], cat, &sum);
      add_buf(&L->bias[p].buf, cat, &sum);
    }
  }
  *bytes = sum;
  return FTQ_OK;
}

/* ---------------------------------------------------------------------- */

double ftq_load_clock(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void ftq_model_log_summary(const struct ftq_model *m, const char *source, const char *detail, double t0) {
  double seconds = ftq_load_clock() - t0;
  const ftq_model_config *c = &m->cfg;
  char bytes[32];
  ftq_format_bytes((double)ftq_model_count_bytes(m, FTQ_PARAMS_ALL), bytes, sizeof bytes);
  const ftq_qtensor *q = &m->layers[0].proj[0];
  FTQ_LOGI(m->ctx,
           "model from %s (%s): %s, %lld layers, hidden %lld, intermediate %lld, heads %lld/%lld x %lld, vocab %lld%s; "
           "%.2f M parameters (%.2f M in linear layers); embedding %s, linear %s; %s on %s; %.2f s",
           source, detail, c->architecture, (long long)c->num_hidden_layers, (long long)c->hidden_size,
           (long long)c->intermediate_size, (long long)c->num_attention_heads, (long long)c->num_key_value_heads,
           (long long)c->head_dim, (long long)c->vocab_size, c->tie_word_embeddings ? ", tied embeddings" : "",
           (double)ftq_model_count_params(m, FTQ_PARAMS_ALL) / 1e6, (double)ftq_model_count_params(m, FTQ_PARAMS_LINEAR) / 1e6,
           ftq_dtype_name(m->tok_embeddings.dtype), q->scheme == FTQ_QSCHEME_NONE ? ftq_dtype_name(q->plain.dtype) : "quantized",
           bytes, m->ctx->device_name, seconds);
}

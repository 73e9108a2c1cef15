/* PEFT adapter folders: ftq_lora_save writes adapter_config.json (the keys
 * of a recent peft, as json.dumps(indent=2, sort_keys=True) writes them)
 * and adapter_model.safetensors (fp32 A/B under PEFT's names, laid out as
 * the safetensors package lays them out); ftq_lora_load reads what any peft
 * since 0.4 writes, checking every setting and tensor against the model. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/log.h"
#include "core/options.h"
#include "io/file.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "lora/lora.h"
#include "lora/peft.h"
#include "model/model_build.h"
#include "model/model_load.h"

static const ftq_option_def peft_option_defs[] = {
    {"base_model_name_or_path", "lora", FTQ_OPTION_STRING, "", 0, 0, NULL, 0,
     "base model written into a saved adapter_config.json (empty: the path the model was loaded from)"},
};
FTQ_OPTION_TABLE(peft, peft_option_defs);

#define ADAPTER_CONFIG "adapter_config.json"
#define ADAPTER_WEIGHTS "adapter_model.safetensors"

/* ---------------------------------------------------------------------- */
/* saving                                                                   */

/* The shortest decimal that reads back as the f32 value: the number the
 * user gave (lora_dropout is held in f32), as Python would print it. */
static double short_decimal(float f) {
  char buf[32];
  for (int digits = 1; digits <= 9; digits++) {
    snprintf(buf, sizeof buf, "%.*g", digits, (double)f);
    if (strtof(buf, NULL) == f) break;
  }
  return strtod(buf, NULL);
}

static int set_new(json_t *o, const char *key, json_t *v) { return json_object_set_new(o, key, v); }

/* adapter_config.json as peft 0.21 writes it for a LoRA on a causal LM. */
static json_t *adapter_config(const struct ftq_lora *l, const char *base) {
  json_t *o = json_object(), *targets = json_array();
  if (!o || !targets) {
    json_decref(o);
    json_decref(targets);
    return NULL;
  }
  for (int p = 0; p < FTQ_PROJ_COUNT; p++)
    if (l->targets & (1u << p)) json_array_append_new(targets, json_string(ftq_proj_name((ftq_proj)p)));
  static const char *const nulls[] = {
      "alora_invocation_tokens", "arrow_config", "auto_mapping", "corda_config", "eva_config", "exclude_modules",
      "kasa_config", "layer_replication", "layers_pattern", "layers_to_transform", "lora_ga_config",
      "megatron_config", "modules_to_save", "monteclora_config", "revision", "target_parameters",
      "trainable_token_indices", "use_bdlora", "velora_config"};
  static const char *const falses[] = {"ensure_weight_tying", "fan_in_fan_out", "lora_bias", "use_dora", "use_qalora"};
  static const char *const empties[] = {"alpha_pattern", "loftq_config", "rank_pattern"};
  int bad = 0;
  for (size_t i = 0; i < sizeof nulls / sizeof *nulls; i++) bad |= set_new(o, nulls[i], json_null());
  for (size_t i = 0; i < sizeof falses / sizeof *falses; i++) bad |= set_new(o, falses[i], json_false());
  for (size_t i = 0; i < sizeof empties / sizeof *empties; i++) bad |= set_new(o, empties[i], json_object());
  bad |= set_new(o, "base_model_name_or_path", base ? json_string(base) : json_null());
  bad |= set_new(o, "bias", json_string("none"));
  bad |= set_new(o, "inference_mode", json_true());
  if (strcmp(l->init, "gaussian") == 0) bad |= set_new(o, "init_lora_weights", json_string("gaussian"));
  else bad |= set_new(o, "init_lora_weights", json_boolean(strcmp(l->init, "false") != 0));
  /* Python keeps an int lora_alpha an int */
  double a = l->lora_alpha;
  bad |= set_new(o, "lora_alpha", a == floor(a) && fabs(a) < 9.0e15 ? json_integer((json_int_t)a) : json_real(a));
  bad |= set_new(o, "lora_dropout", json_real(short_decimal(l->lora_dropout)));
  bad |= set_new(o, "megatron_core", json_string("megatron.core"));
  bad |= set_new(o, "peft_type", json_string("LORA"));
  bad |= set_new(o, "peft_version", json_string(FTQ_PEFT_FORMAT_VERSION));
  bad |= set_new(o, "qalora_group_size", json_integer(16));
  bad |= set_new(o, "r", json_integer((json_int_t)l->r));
  bad |= set_new(o, "target_modules", targets);
  bad |= set_new(o, "task_type", json_string("CAUSAL_LM"));
  bad |= set_new(o, "use_rslora", json_boolean(l->use_rslora));
  if (bad) {
    json_decref(o);
    return NULL;
  }
  return o;
}

typedef struct save_item {
  const struct ftq_lora *l;
  size_t index;
} save_item;

static ftq_status fill_tensor(void *user, const char *name, void *dst, size_t bytes) {
  (void)name;
  const save_item *it = user;
  return ftq_lora_get_tensor(it->l, it->index, dst, bytes / sizeof(float));
}

static ftq_status save(const struct ftq_lora *l, const char *dir, const char *base) {
  FTQ_TRY(ftq_make_dir(dir));
  const size_t n = l->n_tensors;
  save_item *items = ftq_calloc(n ? n : 1, sizeof *items, "adapter tensors");
  if (!items) return FTQ_ERR_OUT_OF_MEMORY;
  ftq_st_writer *w = NULL;
  char *path = NULL, *text = NULL;
  json_t *cfg = NULL;
  ftq_status st = ftq_st_writer_create(&w);
  for (size_t i = 0; i < n && st == FTQ_OK; i++) {
    char name[192];
    int64_t shape[2];
    items[i].l = l;
    items[i].index = i;
    st = ftq_lora_tensor_info(l, i, name, sizeof name, shape);
    if (st == FTQ_OK) st = ftq_st_writer_add_fn(w, name, FTQ_DTYPE_F32, 2, shape, fill_tensor, &items[i]);
  }
  if (st == FTQ_OK) st = (path = ftq_path_join(dir, ADAPTER_WEIGHTS)) ? FTQ_OK : FTQ_ERR_OUT_OF_MEMORY;
  if (st == FTQ_OK) st = ftq_st_writer_write(w, path);
  free(path);
  path = NULL;
  if (st == FTQ_OK && !(cfg = adapter_config(l, base)))
    st = ftq_error(FTQ_ERR_OUT_OF_MEMORY, "out of host memory building adapter_config.json");
  if (st == FTQ_OK && !(text = ftq_py_json_dumps(cfg))) st = FTQ_ERR_OUT_OF_MEMORY;
  if (st == FTQ_OK) st = (path = ftq_path_join(dir, ADAPTER_CONFIG)) ? FTQ_OK : FTQ_ERR_OUT_OF_MEMORY;
  if (st == FTQ_OK) st = ftq_write_file_atomic(path, text, strlen(text));
  free(path);
  free(text);
  json_decref(cfg);
  ftq_st_writer_destroy(w);
  free(items);
  return st;
}

ftq_status ftq_lora_save(const ftq_lora *lora, const char *dir, const ftq_options *opts) {
  FTQ_CHECK_ARG(lora && dir && *dir, "ftq_lora_save: lora and dir must be given");
  const char *base;
  FTQ_TRY(ftq_options_get_string(opts, "base_model_name_or_path", &base));
  if (!*base) base = lora->model->source_path;
  ftq_status st = save(lora, dir, base);
  if (st != FTQ_OK) return ftq_error_context(st, "saving LoRA adapter '%s' to '%s'", lora->name, dir);
  FTQ_LOGI(lora->model->ctx, "LoRA adapter '%s' saved to %s (%zu tensors, PEFT format)", lora->name, dir,
           lora->n_tensors);
  return FTQ_OK;
}

/* ---------------------------------------------------------------------- */
/* loading: adapter_config.json                                             */

/* Keys whose non-default values change the adapter in ways libftq does not
 * implement (the default is null, false, {} or []). */
static const char *const unsupported_keys[] = {
    "alora_invocation_tokens", "alpha_pattern", "arrow_config",  "fan_in_fan_out",     "kasa_config",
    "layer_replication",       "lora_bias",     "megatron_config", "modules_to_save",  "monteclora_config",
    "rank_pattern",            "target_parameters", "trainable_token_indices", "use_bdlora", "use_dora",
    "use_qalora",              "velora_config"};

/* Keys libftq reads, or that do not change the adapter's function. */
static const char *const known_keys[] = {
    "auto_mapping", "base_model_name_or_path", "bias", "corda_config", "ensure_weight_tying", "eva_config",
    "exclude_modules", "inference_mode", "init_lora_weights", "layers_pattern", "layers_to_transform", "loftq_config",
    "lora_alpha", "lora_dropout", "lora_ga_config", "megatron_core", "peft_type", "peft_version", "qalora_group_size",
    "r", "revision", "target_modules", "task_type", "use_rslora"};

static int in_list(const char *const *list, size_t n, const char *key) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(list[i], key) == 0) return 1;
  return 0;
}

static int is_default_value(const json_t *v) {
  return json_is_null(v) || json_is_false(v) || (json_is_object(v) && json_object_size(v) == 0) ||
         (json_is_array(v) && json_array_size(v) == 0) || (json_is_string(v) && json_string_length(v) == 0);
}

/* Checks the configuration and collects the settings ftq_lora_create takes
 * into `settings` (an options JSON object). */
static ftq_status read_config(ftq_context *ctx, const json_t *root, const char *what, json_t *settings) {
  char d[96];
  if (!json_is_object(root)) return ftq_error(FTQ_ERR_FORMAT, "%s: not a JSON object", what);
  const json_t *pt = json_object_get(root, "peft_type");
  if (!json_is_string(pt))
    return ftq_error(FTQ_ERR_FORMAT, "%s: peft_type is %s (\"LORA\" expected)", what,
                     pt ? ftq_json_describe(pt, d, sizeof d) : "missing");
  if (strcmp(json_string_value(pt), "LORA") != 0)
    return ftq_error(FTQ_ERR_UNSUPPORTED, "%s: peft_type \"%.40s\" is not supported (only LORA)", what,
                     json_string_value(pt));
  const char *key;
  json_t *v;
  json_object_foreach((json_t *)root, key, v) {
    if (in_list(unsupported_keys, sizeof unsupported_keys / sizeof *unsupported_keys, key)) {
      if (!is_default_value(v))
        return ftq_error(FTQ_ERR_UNSUPPORTED, "%s: %s = %s is not supported by libftq", what, key,
                         ftq_json_describe(v, d, sizeof d));
    } else if (!in_list(known_keys, sizeof known_keys / sizeof *known_keys, key) && !is_default_value(v)) {
      FTQ_LOGW(ctx, "%s: setting %s = %s is unknown to libftq and ignored", what, key, ftq_json_describe(v, d, sizeof d));
    }
  }
  const json_t *bias = json_object_get(root, "bias");
  if (json_is_string(bias) && strcmp(json_string_value(bias), "none") != 0)
    return ftq_error(FTQ_ERR_UNSUPPORTED, "%s: bias = \"%.40s\" is not supported (only \"none\": no trained biases)",
                     what, json_string_value(bias));
  /* the settings ftq_lora_create reads, type-checked by the option registry */
  static const char *const passed[] = {"r", "lora_alpha", "lora_dropout", "use_rslora", "bias"};
  for (size_t i = 0; i < sizeof passed / sizeof *passed; i++) {
    const json_t *x = json_object_get(root, passed[i]);
    if (x && json_object_set(settings, passed[i], (json_t *)x))
      return ftq_error(FTQ_ERR_OUT_OF_MEMORY, "out of host memory reading %s", what);
  }
  const json_t *init = json_object_get(root, "init_lora_weights");
  if (json_is_string(init)) {
    const char *s = json_string_value(init);
    /* EVA and orthogonal only choose A's first values: the file holds the result */
    if (strcmp(s, "eva") == 0 || strcmp(s, "orthogonal") == 0) init = json_true();
    else if (strcmp(s, "gaussian") != 0)
      return ftq_error(FTQ_ERR_UNSUPPORTED,
                       "%s: init_lora_weights = \"%.40s\" is not supported (such initialisations change the base "
                       "weights too)",
                       what, s);
  }
  if (init && json_object_set(settings, "init_lora_weights", (json_t *)init))
    return ftq_error(FTQ_ERR_OUT_OF_MEMORY, "out of host memory reading %s", what);
  return FTQ_OK;
}

/* ---------------------------------------------------------------------- */
/* loading: adapter_model.safetensors                                       */

/* "base_model.model.model.layers.<L>.<self_attn|mlp>.<proj>.lora_<A|B>[.<adapter>].weight" */
static int parse_name(const char *name, int64_t *layer, int *proj, int *is_b) {
  static const char pre[] = "base_model.model.model.layers.";
  if (strncmp(name, pre, sizeof pre - 1) != 0) return 0;
  const char *p = name + sizeof pre - 1;
  if (*p < '0' || *p > '9') return 0;
  char *end;
  long long L = strtoll(p, &end, 10);
  if (*end != '.' || L < 0 || L > 100000) return 0;
  p = end + 1;
  for (int k = 0; k < FTQ_PROJ_COUNT; k++) {
    const char *block = k <= FTQ_PROJ_O ? "self_attn." : "mlp.", *nm = ftq_proj_name((ftq_proj)k);
    size_t bl = strlen(block), nl = strlen(nm);
    if (strncmp(p, block, bl) != 0 || strncmp(p + bl, nm, nl) != 0 || strncmp(p + bl + nl, ".lora_", 6) != 0) continue;
    const char *q = p + bl + nl + 6;
    if (*q != 'A' && *q != 'B') return 0;
    const char *rest = q + 1;
    if (strcmp(rest, ".weight") != 0) { /* an adapter name may sit before ".weight" */
      const char *dot = strchr(rest + 1, '.');
      if (rest[0] != '.' || !dot || dot == rest + 1 || strcmp(dot, ".weight") != 0) return 0;
    }
    *layer = L;
    *proj = k;
    *is_b = *q == 'B';
    return 1;
  }
  return 0;
}

typedef struct layout {
  const ftq_st_tensor **t; /* [layers * FTQ_PROJ_COUNT * 2]: (layer, proj, is_b) -> tensor */
  unsigned mask;
  int64_t r;
} layout;

static ftq_status scan_tensors(const struct ftq_model *m, const ftq_safetensors *f, const char *what, layout *lay) {
  const ftq_model_config *c = &m->cfg;
  const int64_t L = c->num_hidden_layers;
  lay->t = ftq_calloc((size_t)L * FTQ_PROJ_COUNT * 2, sizeof *lay->t, "adapter tensors");
  if (!lay->t) return FTQ_ERR_OUT_OF_MEMORY;
  for (size_t i = 0; i < ftq_safetensors_count(f); i++) {
    const ftq_st_tensor *t = ftq_safetensors_tensor(f, i);
    int64_t layer;
    int proj, is_b;
    if (!parse_name(t->name, &layer, &proj, &is_b))
      return ftq_error(FTQ_ERR_UNSUPPORTED,
                       "%s: tensor '%s' is not the lora_A / lora_B of a decoder projection (libftq adapts q/k/v/o/"
                       "gate/up/down_proj only)",
                       what, t->name);
    if (layer >= L)
      return ftq_error(FTQ_ERR_SHAPE, "%s: tensor '%s' is for layer %lld; the model has %lld layers", what, t->name,
                       (long long)layer, (long long)L);
    const ftq_st_tensor **slot = &lay->t[(layer * FTQ_PROJ_COUNT + proj) * 2 + is_b];
    if (*slot) return ftq_error(FTQ_ERR_FORMAT, "%s: tensors '%s' and '%s' are the same parameter", what, (*slot)->name, t->name);
    if (t->dtype != FTQ_DTYPE_F32 && t->dtype != FTQ_DTYPE_F16 && t->dtype != FTQ_DTYPE_BF16)
      return ftq_error(FTQ_ERR_UNSUPPORTED, "%s: tensor '%s' has dtype %s (F32, F16 or BF16 expected)", what, t->name,
                       t->dtype_name);
    *slot = t;
  }
  /* the projections of layer 0 must be those of every layer, each with A and B */
  lay->mask = 0;
  for (int p = 0; p < FTQ_PROJ_COUNT; p++)
    if (lay->t[p * 2] || lay->t[p * 2 + 1]) lay->mask |= 1u << p;
  if (!lay->mask) return ftq_error(FTQ_ERR_FORMAT, "%s: no LoRA tensors for layer 0", what);
  lay->r = -1;
  for (int64_t l = 0; l < L; l++)
    for (int p = 0; p < FTQ_PROJ_COUNT; p++)
      for (int b = 0; b < 2; b++) {
        const ftq_st_tensor *t = lay->t[(l * FTQ_PROJ_COUNT + p) * 2 + b];
        int want = (lay->mask >> p) & 1;
        if (!want && t)
          return ftq_error(FTQ_ERR_UNSUPPORTED,
                           "%s: tensor '%s' adapts %s in layer %lld but not in layer 0; libftq adapters cover the same "
                           "projections in every layer",
                           what, t->name, ftq_proj_name((ftq_proj)p), (long long)l);
        if (want && !t)
          return ftq_error(FTQ_ERR_UNSUPPORTED,
                           "%s: layer %lld has no lora_%c for %s (adapted in layer 0); libftq adapters cover the same "
                           "projections in every layer",
                           what, (long long)l, b ? 'B' : 'A', ftq_proj_name((ftq_proj)p));
        if (!t) continue;
        int64_t out, in;
        ftq_model_proj_shape(c, (ftq_proj)p, &out, &in);
        if (lay->r < 0) lay->r = t->ndim == 2 ? t->shape[b ? 1 : 0] : -1;
        const int64_t want0 = b ? out : lay->r, want1 = b ? lay->r : in;
        if (t->ndim != 2 || t->shape[0] != want0 || t->shape[1] != want1 || lay->r <= 0)
          return ftq_error(FTQ_ERR_SHAPE, "%s: tensor '%s' has shape [%lld%s%lld]; the model needs [%lld, %lld]", what,
                           t->name, (long long)(t->ndim > 0 ? t->shape[0] : 0), t->ndim > 1 ? ", " : "",
                           (long long)(t->ndim > 1 ? t->shape[1] : 0), (long long)want0, (long long)want1);
      }
  return FTQ_OK;
}

static ftq_status settings_to_options(json_t *settings, const layout *lay, ftq_options *o, const char *what) {
  /* without r in the file (never seen in practice), the tensors' rank */
  if (!json_object_get(settings, "r") && json_object_set_new(settings, "r", json_integer((json_int_t)lay->r)))
    return ftq_error(FTQ_ERR_OUT_OF_MEMORY, "out of host memory reading %s", what);
  char *text = json_dumps(settings, JSON_COMPACT);
  if (!text) return ftq_error(FTQ_ERR_OUT_OF_MEMORY, "out of host memory reading %s", what);
  ftq_status st = ftq_options_load_json(o, text);
  free(text);
  if (st != FTQ_OK) return ftq_error_context(st, "%s", what);
  int64_t r;
  FTQ_TRY(ftq_options_get_int(o, "r", &r));
  if (r != lay->r)
    return ftq_error(FTQ_ERR_FORMAT, "%s: r = %lld, but the tensors have rank %lld", what, (long long)r,
                     (long long)lay->r);
  /* the projections come from the tensors (target_modules may be a pattern) */
  char list[128] = "";
  for (int p = 0; p < FTQ_PROJ_COUNT; p++)
    if (lay->mask & (1u << p)) {
      if (*list) strcat(list, ",");
      strcat(list, ftq_proj_name((ftq_proj)p));
    }
  return ftq_options_set_string(o, "target_modules", list);
}

static ftq_status fill_adapter(struct ftq_lora *l, const layout *lay, const char *what) {
  const ftq_model_config *c = &l->model->cfg;
  size_t max = 0;
  for (int p = 0; p < FTQ_PROJ_COUNT; p++) {
    int64_t out, in;
    ftq_model_proj_shape(c, (ftq_proj)p, &out, &in);
    size_t e = (size_t)((out > in ? out : in) * lay->r);
    if (e > max) max = e;
  }
  float *buf = ftq_malloc(max * sizeof(float), "adapter tensor staging");
  if (!buf) return FTQ_ERR_OUT_OF_MEMORY;
  ftq_status st = FTQ_OK;
  for (int64_t layer = 0; layer < c->num_hidden_layers && st == FTQ_OK; layer++)
    for (int p = 0; p < FTQ_PROJ_COUNT && st == FTQ_OK; p++)
      for (int b = 0; b < 2 && st == FTQ_OK && (lay->mask >> p & 1); b++) {
        const ftq_st_tensor *t = lay->t[(layer * FTQ_PROJ_COUNT + p) * 2 + b];
        const float *src = t->data;
        if (t->dtype != FTQ_DTYPE_F32) {
          st = ftq_host_convert(l->model->ctx, buf, FTQ_DTYPE_F32, t->data, t->dtype, (size_t)t->numel);
          src = buf;
        }
        char name[192];
        size_t index = 0;
        snprintf(name, sizeof name, "base_model.model.model.layers.%lld.%s.%s.lora_%c.weight", (long long)layer,
                 p <= FTQ_PROJ_O ? "self_attn" : "mlp", ftq_proj_name((ftq_proj)p), b ? 'B' : 'A');
        if (st == FTQ_OK) st = ftq_lora_find_tensor(l, name, &index);
        if (st == FTQ_OK) st = ftq_lora_set_tensor(l, index, src, (size_t)t->numel);
        if (st != FTQ_OK) st = ftq_error_context(st, "%s: tensor '%s'", what, t->name);
      }
  free(buf);
  return st;
}

static ftq_status load(ftq_model *model, const char *dir, const char *adapter_name, const ftq_options *opts,
                       ftq_lora **out) {
  char *cfg_path = ftq_path_join(dir, ADAPTER_CONFIG), *st_path = ftq_path_join(dir, ADAPTER_WEIGHTS);
  json_t *root = NULL, *settings = json_object();
  ftq_safetensors *f = NULL;
  ftq_options *o = NULL;
  layout lay = {0};
  ftq_status st = cfg_path && st_path && settings ? FTQ_OK : FTQ_ERR_OUT_OF_MEMORY;
  if (st == FTQ_OK && !ftq_file_exists(st_path)) {
    char *bin = ftq_path_join(dir, "adapter_model.bin");
    if (bin && ftq_file_exists(bin))
      st = ftq_error(FTQ_ERR_UNSUPPORTED,
                     "%s holds adapter_model.bin (a pickle), which libftq does not read; save it again with "
                     "safe_serialization=True (peft >= 0.7 does so by default)",
                     dir);
    else st = ftq_error(FTQ_ERR_NOT_FOUND, "%s: no %s", dir, ADAPTER_WEIGHTS);
    free(bin);
  }
  if (st == FTQ_OK) st = ftq_json_load_file(cfg_path, (size_t)16 << 20, &root);
  if (st == FTQ_OK) st = read_config(model->ctx, root, cfg_path, settings);
  if (st == FTQ_OK) st = ftq_safetensors_open(st_path, &f);
  if (st == FTQ_OK) st = scan_tensors(model, f, st_path, &lay);
  if (st == FTQ_OK) st = ftq_options_copy(opts, &o);
  if (st == FTQ_OK) st = settings_to_options(settings, &lay, o, cfg_path);
  if (st == FTQ_OK) st = ftq_lora_create(model, adapter_name, o, 0, out);
  if (st == FTQ_OK) st = fill_adapter(*out, &lay, st_path);
  if (st != FTQ_OK) {
    ftq_lora_destroy(*out);
    *out = NULL;
  }
  free(lay.t);
  ftq_options_destroy(o);
  ftq_safetensors_close(f);
  json_decref(root);
  json_decref(settings);
  free(cfg_path);
  free(st_path);
  return st;
}

ftq_status ftq_lora_load(ftq_model *model, const char *dir, const char *adapter_name, const ftq_options *opts,
                         ftq_lora **out) {
  FTQ_CHECK_ARG(out, "ftq_lora_load: out must not be NULL");
  *out = NULL;
  FTQ_CHECK_ARG(model && dir && *dir, "ftq_lora_load: model and dir must be given");
  if (!ftq_dir_exists(dir)) return ftq_error(FTQ_ERR_NOT_FOUND, "ftq_lora_load: '%s' is not a folder", dir);
  ftq_status st = load(model, dir, adapter_name, opts, out);
  if (st != FTQ_OK) return ftq_error_context(st, "loading PEFT adapter '%s'", dir);
  FTQ_LOGI(model->ctx, "PEFT adapter %s loaded as '%s'", dir, ftq_lora_name(*out));
  return FTQ_OK;
}

/* Loading a Hugging Face model folder: config.json plus safetensors (one
 * file or shards). Every expected tensor is checked (present, float dtype,
 * shape from the config) before any weight is allocated, then the tensors
 * stream from the mapping to the device one at a time. */
#include <libgen.h>
#include <stdlib.h>
#include <string.h>

#include "core/context.h"
#include "core/error.h"
#include "core/log.h"
#include "io/file.h"
#include "io/safetensors.h"
#include "model/model_load.h"

static int is_float_src(ftq_dtype t) {
  return t == FTQ_DTYPE_F32 || t == FTQ_DTYPE_F16 || t == FTQ_DTYPE_BF16 || t == FTQ_DTYPE_F64;
}

/* Tensors a checkpoint may carry that libftq does not need. */
static int ignorable(const char *name, const ftq_model_config *c) {
  size_t n = strlen(name);
  if (n >= 9 && strcmp(name + n - 9, ".inv_freq") == 0) return 1; /* old rotary buffers */
  return c->tie_word_embeddings && strcmp(name, "lm_head.weight") == 0;
}

static ftq_status check_tensors(const ftq_st_set *set, const ftq_weight_slot *slots, size_t n, const char *where) {
  for (size_t i = 0; i < n; i++) {
    const ftq_weight_slot *s = &slots[i];
    const ftq_st_tensor *t = ftq_st_set_find(set, s->name);
    if (!t) return ftq_error(FTQ_ERR_NOT_FOUND, "%s: tensor %s is missing", where, s->name);
    if (!is_float_src(t->dtype))
      return ftq_error(FTQ_ERR_UNSUPPORTED, "%s: tensor %s has dtype %s (F32, F16, BF16 or F64 expected)", where, s->name,
                       t->dtype_name);
    int ok = t->ndim == s->ndim;
    for (int d = 0; d < s->ndim && ok; d++) ok = t->shape[d] == s->shape[d];
    if (!ok) {
      char got[128] = "[";
      for (int d = 0; d < t->ndim; d++)
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? ", " : "", (long long)t->shape[d]);
      strncat(got, "]", sizeof got - strlen(got) - 1);
      if (s->ndim == 2)
        return ftq_error(FTQ_ERR_SHAPE, "%s: tensor %s has shape %s; the config needs [%lld, %lld]", where, s->name, got,
                         (long long)s->shape[0], (long long)s->shape[1]);
      return ftq_error(FTQ_ERR_SHAPE, "%s: tensor %s has shape %s; the config needs [%lld]", where, s->name, got,
                       (long long)s->shape[0]);
    }
  }
  return FTQ_OK;
}

static ftq_status load(ftq_context *ctx, const char *path, const char *dir, const ftq_options *opts,
                       struct ftq_model **out) {
  double t0 = ftq_load_clock();
  ftq_dtype want;
  FTQ_TRY(ftq_model_option_dtype(opts, &want));
  char *cfg_path = ftq_path_join(dir, "config.json");
  if (!cfg_path) return FTQ_ERR_OUT_OF_MEMORY;
  char *text = NULL;
  size_t len;
  ftq_model_config cfg;
  ftq_status st = ftq_file_read_all(cfg_path, (size_t)16 << 20, &text, &len);
  if (st == FTQ_OK) st = ftq_hf_config_parse(text, len, cfg_path, 0, &cfg);
  free(text);
  free(cfg_path);
  FTQ_TRY(st);

  ftq_st_set *set = NULL;
  ftq_weight_slot *slots = NULL;
  size_t n_slots = 0;
  struct ftq_model *m = NULL;
  ftq_scratch scratch = {0};
  FTQ_TRY(ftq_st_set_open(path, &set));
  st = ftq_model_weight_slots(&cfg, &slots, &n_slots);
  if (st == FTQ_OK) st = check_tensors(set, slots, n_slots, path);
  if (st == FTQ_OK) {
    size_t unknown = 0;
    const char *first = NULL;
    for (size_t i = 0; i < ftq_st_set_count(set); i++) {
      const char *name = ftq_st_set_tensor(set, i)->name;
      if (!ignorable(name, &cfg) && ftq_model_find_slot(slots, n_slots, name) < 0 && !unknown++) first = name;
    }
    if (unknown)
      FTQ_LOGW(ctx, "%s: %zu tensor(s) the %s graph does not use were ignored (first: %s)", path, unknown, cfg.architecture,
               first);
  }
  if (st == FTQ_OK) st = ftq_model_new(ctx, &cfg, &m);
  for (size_t i = 0; i < n_slots && st == FTQ_OK; i++) {
    const ftq_st_tensor *t = ftq_st_set_find(set, slots[i].name);
    ftq_dtype src = t->dtype;
    ftq_dtype dst = want != FTQ_DTYPE_COUNT ? want : src == FTQ_DTYPE_F64 ? FTQ_DTYPE_F32 : src;
    st = ftq_model_store_slot(m, &slots[i], t->data, src, dst, &scratch, opts);
    if (st != FTQ_OK) st = ftq_error_context(st, "loading %s", path);
    else
      FTQ_LOGD(ctx, "%s: %s -> %s, %zu bytes in the file", slots[i].name, t->dtype_name, ftq_dtype_name(dst), t->bytes);
    ftq_st_tensor_release(t);
  }
  ftq_scratch_free(&scratch);
  free(slots);
  char detail[64];
  snprintf(detail, sizeof detail, "%zu safetensors file(s)", ftq_st_set_file_count(set));
  if (st == FTQ_OK) ftq_model_log_summary(m, path, detail, t0);
  if (st == FTQ_OK) *out = m;
  else ftq_model_free(m);
  ftq_st_set_close(set);
  return st;
}

ftq_status ftq_model_load_hf(ftq_context *ctx, const char *path, const ftq_options *opts, struct ftq_model **out) {
  *out = NULL;
  if (ftq_dir_exists(path)) return load(ctx, path, path, opts, out);
  /* a .safetensors or index file: config.json sits beside it */
  char *copy = strdup(path);
  if (!copy) return ftq_error(FTQ_ERR_OUT_OF_MEMORY, "out of host memory");
  ftq_status st = load(ctx, path, dirname(copy), opts, out);
  free(copy);
  return st;
}

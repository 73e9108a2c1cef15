/* Merging a LoRA adapter into the base model: W' = dequant(W) + scaling B A
 * as PEFT's merge_and_unload computes it, one weight at a time on the public
 * API, and whole models written as Hugging Face folders that transformers
 * loads (config.json, safetensors shards, tokenizer files), optionally with
 * the merged weights quantized again in bitsandbytes' 4-bit layout. */
#include "model/merge.h"

#include <ctype.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/log.h"
#include "core/options.h"
#include "io/file.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "lora/peft.h"
#include "model/model_load.h"
#include "quant/bnb_format.h"

static const ftq_option_def merge_option_defs[] = {
    {"max_shard_size", "merge", FTQ_OPTION_STRING, "50GB", 0, 0, NULL, 0,
     "largest safetensors file of a merged model (transformers' save_pretrained max_shard_size: 5GB, 500MB, 2GiB or "
     "bytes)"},
};
FTQ_OPTION_TABLE(merge, merge_option_defs);

ftq_status ftq_merge_weight(ftq_context *ctx, const ftq_qtensor *w, const ftq_lora_module *lm, int64_t r, float scaling,
                            float *dst) {
  FTQ_TRY(ftq_qtensor_dequantize(w, FTQ_DTYPE_F32, dst));
  if (!lm) return FTQ_OK;
  /* dst += scaling * B [out, r] @ A [r, in] */
  ftq_gemm_args g;
  memset(&g, 0, sizeof g);
  g.m = w->shape[0];
  g.n = w->shape[1];
  g.k = r;
  g.alpha = scaling;
  g.beta = 1.0f;
  g.a = lm->b.data;
  g.a_type = FTQ_DTYPE_F32;
  g.lda = r;
  g.b = lm->a.data;
  g.b_type = FTQ_DTYPE_F32;
  g.ldb = w->shape[1];
  g.c = dst;
  g.c_type = FTQ_DTYPE_F32;
  g.ldc = w->shape[1];
  g.batch = 1;
  return ctx->be->gemm(ctx->be_ctx, &g);
}

static ftq_status check_pair(const struct ftq_model *m, const struct ftq_lora *l, const char *fn) {
  FTQ_CHECK_ARG(m, "%s: model must not be NULL", fn);
  FTQ_CHECK_ARG(!l || l->model == m, "%s: adapter '%s' belongs to another model", fn, l ? l->name : "");
  return FTQ_OK;
}

/* (layer, proj) of a linear projection weight's Hugging Face name. */
static ftq_status find_linear(const struct ftq_model *m, const char *name, int64_t *layer, int *proj) {
  ftq_weight_slot *slots;
  size_t n;
  FTQ_TRY(ftq_model_weight_slots(&m->cfg, &slots, &n));
  long i = ftq_model_find_slot(slots, n, name);
  ftq_status st = FTQ_OK;
  if (i < 0 || slots[i].kind != FTQ_W_PROJ)
    st = ftq_error(FTQ_ERR_NOT_FOUND, "'%s' is not a linear projection weight of the model (e.g. "
                   "model.layers.0.self_attn.q_proj.weight)", name);
  else {
    *layer = slots[i].layer;
    *proj = (int)slots[i].proj;
  }
  free(slots);
  return st;
}

ftq_status ftq_model_merged_weight(const ftq_model *model, const ftq_lora *lora, const char *name, float *dst,
                                   size_t count, int64_t *shape) {
  FTQ_TRY(check_pair(model, lora, "ftq_model_merged_weight"));
  FTQ_CHECK_ARG(name, "ftq_model_merged_weight: name must not be NULL");
  int64_t layer = 0;
  int proj = 0;
  FTQ_TRY(find_linear(model, name, &layer, &proj));
  const ftq_qtensor *w = &model->layers[layer].proj[proj];
  if (shape) {
    shape[0] = w->shape[0];
    shape[1] = w->shape[1];
  }
  if (!dst) return FTQ_OK;
  const size_t n = (size_t)w->shape[0] * (size_t)w->shape[1];
  if (count != n)
    return ftq_error(FTQ_ERR_SHAPE, "ftq_model_merged_weight: %s has %zu elements, room for %zu given", name, n, count);
  ftq_context *ctx = model->ctx;
  ftq_buffer buf;
  FTQ_TRY(ftq_buffer_alloc(ctx, FTQ_MEM_WORKSPACE, n * sizeof(float), "merged weight", &buf));
  const ftq_lora_module *lm = ftq_lora_module_at(lora, layer, proj);
  ftq_status st = ftq_merge_weight(ctx, w, lm, lora ? lora->r : 0, lora ? lora->scaling : 0.0f, buf.ptr);
  if (st == FTQ_OK) st = ctx->be->copy(ctx->be_ctx, dst, buf.ptr, n * sizeof(float), FTQ_COPY_D2H);
  ftq_buffer_free(ctx, &buf);
  return st == FTQ_OK ? st : ftq_error_context(st, "merging %s", name);
}

/* ---------------------------------------------------------------------- */
/* merged model folders                                                     */

/* transformers' convert_file_size_to_int: "5GB", "500MB", "2GiB", "1000"
 * (a lowercase b after a decimal prefix means bits, as there). */
static ftq_status parse_size(const char *text, uint64_t *out) {
  static const struct {
    const char *unit;
    uint64_t mult;
  } units[] = {{"GIB", 1ull << 30}, {"MIB", 1ull << 20}, {"KIB", 1ull << 10},
               {"GB", 1000000000ull}, {"MB", 1000000ull}, {"KB", 1000ull}, {"", 1}};
  char *end;
  unsigned long long v = isdigit((unsigned char)text[0]) ? strtoull(text, &end, 10) : 0;
  for (size_t i = 0; v && i < sizeof units / sizeof *units; i++) {
    if (strcasecmp(end, units[i].unit) != 0) continue;
    if (v > UINT64_MAX / units[i].mult) break;
    *out = v * units[i].mult;
    if (strlen(units[i].unit) == 2 && end[1] == 'b') *out /= 8;
    if (*out) return FTQ_OK;
  }
  return ftq_error(FTQ_ERR_OPTION_RANGE, "option 'max_shard_size' = \"%s\": use a positive size such as 5GB, 500MB, "
                   "2GiB or a byte count", text);
}

typedef struct merge_job merge_job;

/* One tensor of the output written through a fill function. */
typedef struct out_item {
  merge_job *job;
  const ftq_weight_slot *slot;
} out_item;

struct merge_job {
  struct ftq_model *m;
  const struct ftq_lora *l;
  ftq_context *ctx;
  ftq_dtype out_dtype;
  ftq_qconfig qcfg;      /* NONE: linear weights unquantized */
  ftq_buffer wdev;       /* device f32 [largest out * in]: one merged weight */
  void *host;            /* host staging of the largest weight */
  ftq_weight_slot *slots;
  size_t n_slots;
  out_item *items;
  void **owned;          /* host copies of re-quantized tensors */
  size_t n_owned;
  ftq_st_writer *w;
  size_t bytes_written;
};

/* The device tensor behind a non-linear slot. */
static const ftq_tensor *slot_tensor(const struct ftq_model *m, const ftq_weight_slot *s) {
  switch (s->kind) {
    case FTQ_W_EMBED: return &m->tok_embeddings;
    case FTQ_W_ATTN_NORM: return &m->layers[s->layer].attn_norm;
    case FTQ_W_FFN_NORM: return &m->layers[s->layer].ffn_norm;
    case FTQ_W_BIAS: return &m->layers[s->layer].bias[s->proj];
    case FTQ_W_FINAL_NORM: return &m->final_norm;
    case FTQ_W_LM_HEAD: return &m->lm_head;
    case FTQ_W_PROJ: break;
  }
  return NULL;
}

/* Device values (f32 or of `src_dtype`) into dst in the output dtype. */
static ftq_status download_as(merge_job *j, void *dst, const void *dev, ftq_dtype src_dtype, size_t n) {
  ftq_context *ctx = j->ctx;
  if (src_dtype == j->out_dtype) return ctx->be->copy(ctx->be_ctx, dst, dev, n * ftq_dtype_size(src_dtype), FTQ_COPY_D2H);
  FTQ_TRY(ctx->be->copy(ctx->be_ctx, j->host, dev, n * ftq_dtype_size(src_dtype), FTQ_COPY_D2H));
  return ftq_host_convert(ctx, dst, j->out_dtype, j->host, src_dtype, n);
}

static ftq_status fill_item(void *user, const char *name, void *dst, size_t bytes) {
  (void)name;
  (void)bytes;
  const out_item *it = user;
  merge_job *j = it->job;
  const ftq_weight_slot *s = it->slot;
  if (s->kind == FTQ_W_PROJ) {
    const ftq_qtensor *w = &j->m->layers[s->layer].proj[s->proj];
    const ftq_lora_module *lm = ftq_lora_module_at(j->l, s->layer, s->proj);
    FTQ_TRY(ftq_merge_weight(j->ctx, w, lm, j->l ? j->l->r : 0, j->l ? j->l->scaling : 0.0f, j->wdev.ptr));
    return download_as(j, dst, j->wdev.ptr, FTQ_DTYPE_F32, (size_t)(w->shape[0] * w->shape[1]));
  }
  const ftq_tensor *t = slot_tensor(j->m, s);
  return download_as(j, dst, t->data, t->dtype, (size_t)ftq_tensor_numel(t));
}

/* bitsandbytes tensors of one re-quantized weight: copied to the host and
 * handed to the writer. */
static ftq_status keep_bnb(void *user, const ftq_named_tensor *t) {
  merge_job *j = user;
  void **owned = ftq_realloc(j->owned, (j->n_owned + 1) * sizeof *owned, "re-quantized tensors");
  if (!owned) return FTQ_ERR_OUT_OF_MEMORY;
  j->owned = owned;
  void *copy = ftq_malloc(t->bytes ? t->bytes : 1, "re-quantized tensor");
  if (!copy) return FTQ_ERR_OUT_OF_MEMORY;
  memcpy(copy, t->data, t->bytes);
  j->owned[j->n_owned++] = copy;
  return ftq_st_writer_add(j->w, t->name, t->dtype, t->ndim, t->shape, copy);
}

static int same_qconfig(const ftq_qtensor *w, const ftq_qconfig *c) {
  return w->scheme == c->scheme && w->blocksize == c->blocksize && !w->nested == !c->nested;
}

/* A projection in bitsandbytes' 4-bit layout: the base's own codes when the
 * adapter leaves it alone and the quantization matches, else W' quantized. */
static ftq_status add_quantized(merge_job *j, const ftq_weight_slot *s) {
  const ftq_qtensor *w = &j->m->layers[s->layer].proj[s->proj];
  const ftq_lora_module *lm = ftq_lora_module_at(j->l, s->layer, s->proj);
  char prefix[128];
  snprintf(prefix, sizeof prefix, "%.*s", (int)(strlen(s->name) - strlen("weight")), s->name);
  if (!lm && same_qconfig(w, &j->qcfg) && w->orig_dtype == j->out_dtype)
    return ftq_qtensor_to_bnb4(w, prefix, keep_bnb, j);
  ftq_qtensor q;
  FTQ_TRY(ftq_merge_weight(j->ctx, w, lm, j->l ? j->l->r : 0, j->l ? j->l->scaling : 0.0f, j->wdev.ptr));
  FTQ_TRY(ftq_qtensor_quantize(j->ctx, &j->qcfg, j->wdev.ptr, FTQ_DTYPE_F32, 2, w->shape, FTQ_MEM_WORKSPACE, s->name,
                               &q));
  q.orig_dtype = j->out_dtype; /* the dtype transformers dequantizes into */
  ftq_status st = ftq_qtensor_to_bnb4(&q, prefix, keep_bnb, j);
  ftq_qtensor_release(&q);
  return st;
}

static ftq_status add_tensors(merge_job *j) {
  j->items = ftq_calloc(j->n_slots, sizeof *j->items, "merged model tensors");
  if (!j->items) return FTQ_ERR_OUT_OF_MEMORY;
  for (size_t i = 0; i < j->n_slots; i++) {
    const ftq_weight_slot *s = &j->slots[i];
    j->items[i].job = j;
    j->items[i].slot = s;
    ftq_status st;
    if (s->kind == FTQ_W_PROJ && j->qcfg.scheme != FTQ_QSCHEME_NONE) st = add_quantized(j, s);
    else st = ftq_st_writer_add_fn(j->w, s->name, j->out_dtype, s->ndim, s->shape, fill_item, &j->items[i]);
    if (st != FTQ_OK) return ftq_error_context(st, "tensor %s", s->name);
  }
  return FTQ_OK;
}

/* ---- config.json and the files copied beside it ---- */

/* The folder of the model's Hugging Face checkpoint, or NULL (GGUF, memory). */
static char *source_folder(const struct ftq_model *m) {
  const char *p = m->source_path;
  if (!p) return NULL;
  if (ftq_dir_exists(p)) return ftq_strdup(p, "model folder");
  size_t n = strlen(p);
  if (!(n > 12 && strcmp(p + n - 12, ".safetensors") == 0) && !(n > 5 && strcmp(p + n - 5, ".json") == 0)) return NULL;
  char *copy = ftq_strdup(p, "model folder");
  if (!copy) return NULL;
  char *d = ftq_strdup(dirname(copy), "model folder");
  free(copy);
  return d;
}

/* transformers' BitsAndBytesConfig.to_dict() for a 4-bit model. */
static json_t *quantization_config(const ftq_qconfig *q, ftq_dtype compute) {
  json_t *o = json_object();
  if (!o) return NULL;
  json_object_set_new(o, "_load_in_4bit", json_true());
  json_object_set_new(o, "_load_in_8bit", json_false());
  json_object_set_new(o, "bnb_4bit_compute_dtype", json_string(ftq_torch_dtype_name(compute)));
  json_object_set_new(o, "bnb_4bit_quant_storage", json_string("uint8"));
  json_object_set_new(o, "bnb_4bit_quant_type", json_string(q->scheme == FTQ_QSCHEME_NF4 ? "nf4" : "fp4"));
  json_object_set_new(o, "bnb_4bit_use_double_quant", json_boolean(q->nested));
  json_object_set_new(o, "llm_int8_enable_fp32_cpu_offload", json_false());
  json_object_set_new(o, "llm_int8_has_fp16_weight", json_false());
  json_object_set_new(o, "llm_int8_skip_modules", json_null());
  json_object_set_new(o, "llm_int8_threshold", json_real(6.0));
  json_object_set_new(o, "load_in_4bit", json_true());
  json_object_set_new(o, "load_in_8bit", json_false());
  json_object_set_new(o, "quant_method", json_string("bitsandbytes"));
  return o;
}

static ftq_status write_config(merge_job *j, const char *src_dir, const char *dir, const ftq_options *opts) {
  json_t *root = NULL;
  ftq_status st = FTQ_OK;
  char *src = src_dir ? ftq_path_join(src_dir, "config.json") : NULL;
  if (src && ftq_file_exists(src)) {
    st = ftq_json_load_file(src, (size_t)16 << 20, &root);
  } else {
    char *text = ftq_model_config_to_json(&j->m->cfg);
    st = text ? ftq_json_parse(text, strlen(text), "model configuration", &root) : FTQ_ERR_OUT_OF_MEMORY;
    free(text);
  }
  free(src);
  FTQ_TRY(st);
  /* transformers 5 writes "dtype", older ones "torch_dtype" */
  const char *dkey = json_object_get(root, "dtype") ? "dtype" : "torch_dtype";
  json_object_set_new(root, dkey, json_string(ftq_torch_dtype_name(j->out_dtype)));
  json_object_del(root, "quantization_config");
  if (j->qcfg.scheme != FTQ_QSCHEME_NONE) {
    const char *cd;
    st = ftq_options_get_string(opts, "bnb_4bit_compute_dtype", &cd);
    ftq_dtype compute = strcmp(cd, "float16") == 0 ? FTQ_DTYPE_F16 : strcmp(cd, "bfloat16") == 0 ? FTQ_DTYPE_BF16
                                                                                                : FTQ_DTYPE_F32;
    json_t *q = st == FTQ_OK ? quantization_config(&j->qcfg, compute) : NULL;
    if (st == FTQ_OK && (!q || json_object_set_new(root, "quantization_config", q)))
      st = ftq_error(FTQ_ERR_OUT_OF_MEMORY, "out of host memory writing config.json");
  }
  char *text = st == FTQ_OK ? ftq_py_json_dumps(root) : NULL;
  json_decref(root);
  if (st == FTQ_OK && !text) st = FTQ_ERR_OUT_OF_MEMORY;
  char *path = st == FTQ_OK ? ftq_path_join(dir, "config.json") : NULL;
  if (st == FTQ_OK && !path) st = FTQ_ERR_OUT_OF_MEMORY;
  if (st == FTQ_OK) {
    size_t n = strlen(text);
    char *withnl = ftq_realloc(text, n + 2, "config.json");
    if (!withnl) st = FTQ_ERR_OUT_OF_MEMORY;
    else {
      text = withnl;
      memcpy(text + n, "\n", 2); /* transformers ends the file with a newline */
      st = ftq_write_file_atomic(path, text, n + 1);
    }
  }
  free(path);
  free(text);
  return st;
}

/* Files a Hugging Face model folder carries beside the weights. */
static const char *const copied_files[] = {
    "tokenizer.json",      "tokenizer.json.gz",  "tokenizer_config.json", "special_tokens_map.json",
    "tokenizer.model",     "vocab.json",         "merges.txt",            "added_tokens.json",
    "chat_template.jinja", "chat_template.json", "generation_config.json"};

static ftq_status copy_files(const char *src_dir, const char *dir, int *copied) {
  *copied = 0;
  for (size_t i = 0; i < sizeof copied_files / sizeof *copied_files; i++) {
    char *from = ftq_path_join(src_dir, copied_files[i]), *to = ftq_path_join(dir, copied_files[i]);
    ftq_status st = from && to ? FTQ_OK : FTQ_ERR_OUT_OF_MEMORY;
    if (st == FTQ_OK && ftq_file_exists(from) && strcmp(from, to) != 0) {
      char *data = NULL;
      size_t len = 0;
      st = ftq_file_read_all(from, (size_t)1 << 30, &data, &len);
      if (st == FTQ_OK) st = ftq_write_file_atomic(to, data, len);
      free(data);
      if (st == FTQ_OK) ++*copied;
    }
    free(from);
    free(to);
    FTQ_TRY(st);
  }
  return FTQ_OK;
}

static void job_free(merge_job *j) {
  ftq_buffer_free(j->ctx, &j->wdev);
  free(j->host);
  free(j->slots);
  free(j->items);
  for (size_t i = 0; i < j->n_owned; i++) free(j->owned[i]);
  free(j->owned);
  ftq_st_writer_destroy(j->w);
}

static ftq_status job_init(merge_job *j, struct ftq_model *m, const struct ftq_lora *l, const ftq_options *opts,
                           uint64_t *shard_bytes) {
  memset(j, 0, sizeof *j);
  j->m = m;
  j->l = l;
  j->ctx = m->ctx;
  ftq_dtype want;
  const char *shard;
  FTQ_TRY(ftq_model_option_dtype(opts, &want));
  FTQ_TRY(ftq_qconfig_for_load(opts, &j->qcfg));
  FTQ_TRY(ftq_options_get_string(opts, "max_shard_size", &shard));
  FTQ_TRY(parse_size(shard, shard_bytes));
  if (j->qcfg.scheme != FTQ_QSCHEME_NONE && j->qcfg.scheme != FTQ_QSCHEME_NF4 && j->qcfg.scheme != FTQ_QSCHEME_FP4)
    return ftq_error(FTQ_ERR_UNSUPPORTED,
                     "option 'load_in_8bit': writing 8-bit checkpoints is not supported (use load_in_4bit, or no "
                     "quantization)");
  ftq_dtype stored = m->cfg.torch_dtype;
  if (stored != FTQ_DTYPE_F16 && stored != FTQ_DTYPE_BF16) stored = FTQ_DTYPE_F32;
  j->out_dtype = want != FTQ_DTYPE_COUNT ? want : stored;
  FTQ_TRY(ftq_model_weight_slots(&m->cfg, &j->slots, &j->n_slots));
  size_t max_lin = 0, max_bytes = 0;
  for (size_t i = 0; i < j->n_slots; i++) {
    size_t n = (size_t)j->slots[i].shape[0] * (size_t)(j->slots[i].ndim == 2 ? j->slots[i].shape[1] : 1);
    if (j->slots[i].kind == FTQ_W_PROJ && n > max_lin) max_lin = n;
    if (n * 4 > max_bytes) max_bytes = n * 4;
  }
  FTQ_TRY(ftq_buffer_alloc(j->ctx, FTQ_MEM_WORKSPACE, max_lin * sizeof(float), "merged weight", &j->wdev));
  j->host = ftq_malloc(max_bytes, "merged weight staging");
  if (!j->host) return FTQ_ERR_OUT_OF_MEMORY;
  return ftq_st_writer_create(&j->w);
}

static ftq_status save_merged(struct ftq_model *m, const struct ftq_lora *l, const char *dir, const ftq_options *opts) {
  merge_job j;
  uint64_t shard_bytes = 0;
  int shards = 0, copied = 0;
  char *src_dir = NULL;
  ftq_status st = job_init(&j, m, l, opts, &shard_bytes);
  if (st == FTQ_OK) st = ftq_make_dir(dir);
  if (st == FTQ_OK) st = add_tensors(&j);
  if (st == FTQ_OK) st = ftq_st_writer_write_sharded(j.w, dir, "model", shard_bytes, &shards);
  if (st == FTQ_OK) {
    src_dir = source_folder(m);
    if (m->source_path && !src_dir && ftq_last_error_status() == FTQ_ERR_OUT_OF_MEMORY) st = FTQ_ERR_OUT_OF_MEMORY;
  }
  if (st == FTQ_OK) st = write_config(&j, src_dir, dir, opts);
  if (st == FTQ_OK && src_dir) st = copy_files(src_dir, dir, &copied);
  if (st == FTQ_OK)
    FTQ_LOGI(m->ctx, "merged model%s%s written to %s: %d safetensors file(s), %s weights%s, %d tokenizer/generation "
             "file(s) copied%s",
             l ? " with adapter " : "", l ? l->name : "", dir, shards, ftq_torch_dtype_name(j.out_dtype),
             j.qcfg.scheme == FTQ_QSCHEME_NONE ? "" : (j.qcfg.scheme == FTQ_QSCHEME_NF4 ? ", linear weights NF4" : ", linear weights FP4"),
             copied, src_dir ? "" : " (the base is not a Hugging Face folder: no tokenizer files)");
  free(src_dir);
  job_free(&j);
  return st;
}

ftq_status ftq_model_save_merged(ftq_model *model, const ftq_lora *lora, const char *dir, const ftq_options *opts) {
  FTQ_TRY(check_pair(model, lora, "ftq_model_save_merged"));
  FTQ_CHECK_ARG(dir && *dir, "ftq_model_save_merged: dir must not be empty");
  ftq_status st = save_merged(model, lora, dir, opts);
  return st == FTQ_OK ? st : ftq_error_context(st, "writing the merged model to '%s'", dir);
}

/* The trainer's memory plan and its checkpoints: a folder written under a
 * temporary name and renamed into place, holding trainer_state.ftqckpt
 * (io/ckpt_file.h: CRC-checked sections "meta" (JSON), "adapter" (every
 * LoRA tensor, fp32, in PEFT order) and "optimizer" (step + AdamW states)).
 * Data parallel, rank 0 writes that file; with zero_stage 1 the optimizer
 * section moves to one file per rank, optimizer-rank-<r>.ftqckpt, each
 * holding the states that rank keeps. The ranks write into one temporary
 * folder and agree on success before rank 0 renames it into place. */
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/log.h"
#include "io/ckpt_file.h"
#include "io/file.h"
#include "train/dataset.h"
#include "train/trainer.h"

#define STATE_FILE "trainer_state.ftqckpt"
#define SHARD_FORMAT "libftq-optimizer-shard"
#define CKPT_FORMAT "libftq-trainer"
#define CKPT_VERSION 1

/* ---------------------------------------------------------------------- */
/* Memory plan                                                              */

static int64_t longest_example(const ftq_dataset *ds) {
  const ftq_split_state *sp = &ds->split[FTQ_SPLIT_TRAIN];
  int64_t longest = 0;
  for (int64_t i = 0; i < sp->ex.n; i++)
    if (sp->lengths[i] > longest) longest = sp->lengths[i];
  if (ds->pad_to_multiple_of > 1) longest = (longest + ds->pad_to_multiple_of - 1) / ds->pad_to_multiple_of * ds->pad_to_multiple_of;
  return longest;
}

ftq_status ftq_trainer_plan(ftq_trainer *t, char **json_out) {
  FTQ_CHECK_ARG(t, "ftq_trainer_plan: trainer must not be NULL");
  if (json_out) *json_out = NULL;
  ftq_context *ctx = t->ctx;
  int64_t seq = longest_example(t->data);
  ftq_graph_settings s;
  FTQ_TRY(ftq_graph_settings_init(t->opts, &s));
  size_t act = 0, ws = 0;
  FTQ_TRY(ftq_graph_plan(t->model, t->batch_size, seq > 0 ? seq : 1, &s, 1, &act, &ws));
  size_t held[FTQ_MEM_CATEGORIES] = {0};
  for (int c = 0; c < FTQ_MEM_CATEGORIES; c++) ftq_context_memory(ctx, (ftq_memory_category)c, &held[c], NULL);
  /* the graph's arenas may exist already from an earlier call */
  size_t have_act = held[FTQ_MEM_ACTIVATIONS] + held[FTQ_MEM_WORKSPACE];
  size_t need = act + ws > have_act ? act + ws - have_act : 0;
  size_t free_b = 0, total_b = 0;
  FTQ_TRY(ftq_context_device_memory(ctx, &free_b, &total_b));
  int64_t n_params = 0;
  FTQ_TRY(ftq_lora_num_parameters(t->lora, &n_params));
  size_t host_states = t->optimizer->opt && held[FTQ_MEM_OPTIMIZER] == 0 ? (size_t)n_params * 8u : 0;
  int fits = need <= free_b;
  json_t *o = json_object();
  if (o) {
    json_object_set_new(o, "device", json_string(ftq_context_device_name(ctx)));
    json_object_set_new(o, "batch_rows", json_integer(t->batch_size));
    json_object_set_new(o, "world_size", json_integer(t->world));
    json_object_set_new(o, "zero_stage", json_integer(t->zero_stage));
    json_object_set_new(o, "longest_sequence", json_integer(seq));
    json_object_set_new(o, "gradient_checkpointing", json_boolean(s.gradient_checkpointing));
    json_object_set_new(o, "weights", json_integer((json_int_t)held[FTQ_MEM_WEIGHTS]));
    json_object_set_new(o, "adapter", json_integer((json_int_t)held[FTQ_MEM_ADAPTER]));
    json_object_set_new(o, "gradients", json_integer((json_int_t)held[FTQ_MEM_GRADIENTS]));
    json_object_set_new(o, "optimizer", json_integer((json_int_t)held[FTQ_MEM_OPTIMIZER]));
    json_object_set_new(o, "optimizer_pinned_host", json_integer((json_int_t)host_states));
    json_object_set_new(o, "activations", json_integer((json_int_t)act));
    json_object_set_new(o, "workspace", json_integer((json_int_t)ws));
    json_object_set_new(o, "other", json_integer((json_int_t)held[FTQ_MEM_OTHER]));
    json_object_set_new(o, "total", json_integer((json_int_t)(held[FTQ_MEM_ALL] + need)));
    json_object_set_new(o, "still_to_allocate", json_integer((json_int_t)need));
    json_object_set_new(o, "device_free", json_integer((json_int_t)free_b));
    json_object_set_new(o, "device_total", json_integer((json_int_t)total_b));
    json_object_set_new(o, "fits", json_boolean(fits));
    if (json_out) *json_out = json_dumps(o, JSON_PRESERVE_ORDER | JSON_INDENT(2));
    json_decref(o);
  }
  char a[32], b[32], c[32], d[32];
  if (!fits)
    return ftq_error(ctx->type == FTQ_DEVICE_CUDA ? FTQ_ERR_DEVICE_OUT_OF_MEMORY : FTQ_ERR_OUT_OF_MEMORY,
                     "the run does not fit on %s: activations %s + workspace %s for batches of %lld x %lld tokens "
                     "(gradient_checkpointing %s) on top of %s already held, with %s free; lower "
                     "per_device_train_batch_size or max_seq_length, or turn on gradient_checkpointing",
                     ftq_context_device_name(ctx), ftq_format_bytes((double)act, a, sizeof a),
                     ftq_format_bytes((double)ws, b, sizeof b), (long long)t->batch_size, (long long)seq,
                     s.gradient_checkpointing ? "on" : "off",
                     ftq_format_bytes((double)held[FTQ_MEM_ALL], c, sizeof c), ftq_format_bytes((double)free_b, d, sizeof d));
  FTQ_LOGI(ctx, "memory plan: weights %s, activations %s, workspace %s, %s free",
           ftq_format_bytes((double)held[FTQ_MEM_WEIGHTS], a, sizeof a), ftq_format_bytes((double)act, b, sizeof b),
           ftq_format_bytes((double)ws, c, sizeof c), ftq_format_bytes((double)free_b, d, sizeof d));
  t->planned = 1;
  return FTQ_OK;
}

/* ---------------------------------------------------------------------- */
/* Checkpoints                                                              */

static ftq_status rm_tree(const char *path) {
  DIR *d = opendir(path);
  if (!d) return unlink(path) == 0 || errno == ENOENT ? FTQ_OK : ftq_error(FTQ_ERR_IO, "cannot remove '%s': %s", path, strerror(errno));
  struct dirent *e;
  ftq_status st = FTQ_OK;
  while (st == FTQ_OK && (e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    char *child = ftq_path_join(path, e->d_name);
    if (!child) st = FTQ_ERR_OUT_OF_MEMORY;
    else st = rm_tree(child);
    free(child);
  }
  closedir(d);
  if (st == FTQ_OK && rmdir(path) != 0) st = ftq_error(FTQ_ERR_IO, "cannot remove '%s': %s", path, strerror(errno));
  return st;
}

static ftq_status write_state(ftq_trainer *t, const char *path) {
  ftq_lora *l = t->lora;
  int64_t n_params = 0;
  FTQ_TRY(ftq_lora_num_parameters(l, &n_params));
  json_t *meta = json_object();
  if (!meta) return ftq_error(FTQ_ERR_OUT_OF_MEMORY, "out of memory writing a checkpoint");
  json_object_set_new(meta, "format", json_string(CKPT_FORMAT));
  json_object_set_new(meta, "version", json_integer(CKPT_VERSION));
  json_object_set_new(meta, "global_step", json_integer(t->global_step));
  json_object_set_new(meta, "total_steps", json_integer(t->total_steps));
  json_object_set_new(meta, "micro_step", json_integer((json_int_t)t->micro_step));
  json_object_set_new(meta, "seed", json_integer((json_int_t)t->seed));
  char fp[24];
  snprintf(fp, sizeof fp, "%016llx", (unsigned long long)ftq_dataset_fingerprint(t->data));
  json_object_set_new(meta, "data_fingerprint", json_string(fp));
  json_object_set_new(meta, "consecutive_nonfinite", json_integer(t->consecutive_nonfinite));
  json_object_set_new(meta, "total_nonfinite", json_integer(t->total_nonfinite));
  json_object_set_new(meta, "loss_since_log", json_real(t->loss_since_log));
  json_object_set_new(meta, "steps_since_log", json_integer(t->steps_since_log));
  json_object_set_new(meta, "train_loss_sum", json_real(t->train_loss_sum));
  json_object_set_new(meta, "train_loss_steps", json_integer(t->train_loss_steps));
  json_object_set_new(meta, "adapter_tensors", json_integer((json_int_t)l->n_tensors));
  json_object_set_new(meta, "adapter_parameters", json_integer(n_params));
  json_object_set_new(meta, "r", json_integer(l->r));
  json_object_set_new(meta, "targets", json_integer(l->targets));
  json_object_set_new(meta, "world_size", json_integer(t->world));
  json_object_set_new(meta, "zero_stage", json_integer(t->zero_stage));
  char *meta_text = json_dumps(meta, JSON_PRESERVE_ORDER | JSON_INDENT(2) | JSON_REAL_PRECISION(17));
  json_decref(meta);
  const int with_opt = t->zero_stage < 1; /* else in the per-rank files */
  size_t opt_bytes = with_opt ? ftq_optim_state_bytes(t->optimizer->opt) : 1;
  float *adapter = ftq_malloc((size_t)n_params * sizeof(float), "checkpoint adapter copy");
  void *opt_state = ftq_malloc(opt_bytes, "checkpoint optimizer copy");
  ftq_status st = meta_text && adapter && opt_state ? FTQ_OK : FTQ_ERR_OUT_OF_MEMORY;
  size_t off = 0;
  for (size_t i = 0; st == FTQ_OK && i < l->n_tensors; i++) {
    int64_t shape[2];
    st = ftq_lora_tensor_info(l, i, NULL, 0, shape);
    if (st == FTQ_OK) st = ftq_lora_get_tensor(l, i, adapter + off, (size_t)(shape[0] * shape[1]));
    off += (size_t)(shape[0] * shape[1]);
  }
  if (st == FTQ_OK && with_opt) st = ftq_optim_state_save(t->optimizer->opt, opt_state, opt_bytes);
  ftq_ckpt_writer *w = NULL;
  if (st == FTQ_OK) st = ftq_ckpt_write_begin(path, &w);
  if (st == FTQ_OK) st = ftq_ckpt_write_section(w, "meta", meta_text, strlen(meta_text));
  if (st == FTQ_OK) st = ftq_ckpt_write_section(w, "adapter", adapter, (size_t)n_params * sizeof(float));
  if (st == FTQ_OK && with_opt) st = ftq_ckpt_write_section(w, "optimizer", opt_state, opt_bytes);
  if (st == FTQ_OK) {
    st = ftq_ckpt_write_commit(w);
    w = NULL;
  }
  ftq_ckpt_write_abort(w);
  free(meta_text);
  free(adapter);
  free(opt_state);
  return st;
}

static void shard_name(const ftq_trainer *t, char *buf, size_t n) {
  snprintf(buf, n, "optimizer-rank-%05d.ftqckpt", t->rank);
}

/* ZeRO-1: this rank's optimizer states. */
static ftq_status write_shard(ftq_trainer *t, const char *path) {
  char meta[256];
  snprintf(meta, sizeof meta, "{\"format\": \"%s\", \"version\": %d, \"rank\": %d, \"world_size\": %d, \"global_step\": %lld}",
           SHARD_FORMAT, CKPT_VERSION, t->rank, t->world, (long long)t->global_step);
  size_t bytes = ftq_optim_state_bytes(t->optimizer->opt);
  void *state = ftq_malloc(bytes, "checkpoint optimizer copy");
  ftq_status st = state ? FTQ_OK : FTQ_ERR_OUT_OF_MEMORY;
  if (st == FTQ_OK) st = ftq_optim_state_save(t->optimizer->opt, state, bytes);
  ftq_ckpt_writer *w = NULL;
  if (st == FTQ_OK) st = ftq_ckpt_write_begin(path, &w);
  if (st == FTQ_OK) st = ftq_ckpt_write_section(w, "meta", meta, strlen(meta));
  if (st == FTQ_OK) st = ftq_ckpt_write_section(w, "optimizer", state, bytes);
  if (st == FTQ_OK) {
    st = ftq_ckpt_write_commit(w);
    w = NULL;
  }
  ftq_ckpt_write_abort(w);
  free(state);
  return st;
}

static ftq_status write_into(ftq_trainer *t, const char *folder) {
  ftq_status st = FTQ_OK;
  char *path;
  if (t->rank == 0) {
    if (!(path = ftq_path_join(folder, STATE_FILE))) return FTQ_ERR_OUT_OF_MEMORY;
    st = write_state(t, path);
    free(path);
  }
  if (st == FTQ_OK && t->zero_stage >= 1) {
    char name[64];
    shard_name(t, name, sizeof name);
    if (!(path = ftq_path_join(folder, name))) return FTQ_ERR_OUT_OF_MEMORY;
    st = write_shard(t, path);
    free(path);
  }
  return st;
}

/* Rank 0 moves the finished folder into place: an existing checkpoint of
 * that name is moved aside first and removed only once the new one is in
 * place. */
static ftq_status move_into_place(const char *tmp, const char *old, const char *dir) {
  ftq_status st = FTQ_OK;
  int had_old = ftq_dir_exists(dir);
  if (had_old && rename(dir, old) != 0)
    st = ftq_error(FTQ_ERR_IO, "cannot move the old checkpoint '%s' aside: %s", dir, strerror(errno));
  if (st == FTQ_OK && rename(tmp, dir) != 0) {
    st = ftq_error(FTQ_ERR_IO, "cannot rename checkpoint '%s' to '%s': %s", tmp, dir, strerror(errno));
    if (had_old) rename(old, dir);
  }
  if (st == FTQ_OK && had_old) st = rm_tree(old);
  return st;
}

ftq_status ftq_trainer_save_checkpoint(ftq_trainer *t, const char *dir) {
  FTQ_CHECK_ARG(t && dir && *dir, "ftq_trainer_save_checkpoint: trainer and dir must be given");
  size_t n = strlen(dir) + 64;
  char *tmp = ftq_malloc(n, "checkpoint path"), *old = ftq_malloc(n, "checkpoint path");
  ftq_status st = tmp && old ? FTQ_OK : FTQ_ERR_OUT_OF_MEMORY;
  /* every rank writes into the same temporary folder, so its name cannot
   * depend on the process */
  if (st == FTQ_OK) {
    if (t->comm) {
      snprintf(tmp, n, "%s.tmp-dist", dir);
      snprintf(old, n, "%s.old-dist", dir);
    } else {
      snprintf(tmp, n, "%s.tmp-%ld", dir, (long)getpid());
      snprintf(old, n, "%s.old-%ld", dir, (long)getpid());
    }
  }
  if (st == FTQ_OK && t->rank == 0) {
    if (ftq_dir_exists(tmp)) st = rm_tree(tmp);
    if (st == FTQ_OK && mkdir(tmp, 0755) != 0)
      st = ftq_error(FTQ_ERR_IO, "cannot create checkpoint folder '%s': %s", tmp, strerror(errno));
  }
  /* every rank passes every agreement, failed or not, so none waits alone */
  st = ftq_dist_agree(t, st, "creating the checkpoint folder");
  if (st == FTQ_OK && t->comm && t->rank != 0 && !ftq_dir_exists(tmp))
    st = ftq_error(FTQ_ERR_IO, "checkpoint folder '%s' made by rank 0 is not visible here: output_dir must be on a "
                   "file system every rank shares", tmp);
  if (st == FTQ_OK) st = write_into(t, tmp);
  st = ftq_dist_agree(t, st, "writing the checkpoint");
  if (st == FTQ_OK && t->rank == 0) st = move_into_place(tmp, old, dir);
  st = ftq_dist_agree(t, st, "moving the checkpoint into place");
  if (st != FTQ_OK && t->rank == 0 && tmp && ftq_dir_exists(tmp)) rm_tree(tmp);
  if (st == FTQ_OK) FTQ_LOGI(t->ctx, "checkpoint written: %s (step %lld)", dir, (long long)t->global_step);
  free(tmp);
  free(old);
  return st == FTQ_OK ? FTQ_OK : ftq_error_context(st, "saving checkpoint '%s'", dir);
}

/* Checkpoint step of a folder name "checkpoint-<step>", or -1. */
static int64_t ckpt_step(const char *name) {
  if (strncmp(name, "checkpoint-", 11) != 0) return -1;
  char *end;
  long long v = strtoll(name + 11, &end, 10);
  return *end == '\0' && end != name + 11 && v >= 0 ? v : -1;
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

ftq_status ftq_trainer_save_rotating(ftq_trainer *t) {
  ftq_status made = FTQ_OK;
  if (t->rank == 0 && !ftq_dir_exists(t->output_dir) && mkdir(t->output_dir, 0755) != 0 && errno != EEXIST)
    made = ftq_error(FTQ_ERR_IO, "cannot create output_dir '%s': %s", t->output_dir, strerror(errno));
  FTQ_TRY(ftq_dist_agree(t, made, "creating output_dir"));
  char name[64];
  snprintf(name, sizeof name, "checkpoint-%lld", (long long)t->global_step);
  char *path = ftq_path_join(t->output_dir, name);
  if (!path) return FTQ_ERR_OUT_OF_MEMORY;
  ftq_status st = ftq_trainer_save_checkpoint(t, path);
  free(path);
  if (st != FTQ_OK || t->save_total_limit <= 0 || t->rank != 0) return st;
  /* keep the newest save_total_limit checkpoints */
  DIR *d = opendir(t->output_dir);
  if (!d) return FTQ_OK;
  int64_t steps[4096];
  size_t n = 0;
  struct dirent *e;
  while ((e = readdir(d)) && n < sizeof steps / sizeof steps[0]) {
    int64_t s = ckpt_step(e->d_name);
    if (s >= 0) steps[n++] = s;
  }
  closedir(d);
  qsort(steps, n, sizeof steps[0], cmp_i64);
  for (size_t i = 0; st == FTQ_OK && i + (size_t)t->save_total_limit < n; i++) {
    snprintf(name, sizeof name, "checkpoint-%lld", (long long)steps[i]);
    char *old = ftq_path_join(t->output_dir, name);
    if (!old) return FTQ_ERR_OUT_OF_MEMORY;
    st = rm_tree(old);
    free(old);
  }
  return st;
}

static ftq_status meta_int(json_t *meta, const char *key, const char *path, int64_t *out) {
  json_t *v = json_object_get(meta, key);
  if (!json_is_integer(v)) return ftq_error(FTQ_ERR_FORMAT, "checkpoint '%s': meta field '%s' missing or not an integer", path, key);
  *out = json_integer_value(v);
  return FTQ_OK;
}

/* The "optimizer" section of an open checkpoint into the optimizer. */
static ftq_status load_optimizer_section(ftq_trainer *t, ftq_ckpt_reader *r) {
  const void *data;
  size_t bytes;
  FTQ_TRY(ftq_ckpt_section(r, "optimizer", &data, &bytes));
  void *copy = ftq_malloc(bytes ? bytes : 1, "checkpoint optimizer state");
  if (!copy) return FTQ_ERR_OUT_OF_MEMORY;
  memcpy(copy, data, bytes); /* aligned for the state's floats */
  ftq_status st = ftq_optim_state_load(t->optimizer->opt, copy, bytes);
  free(copy);
  return st;
}

/* ZeRO-1: this rank's optimizer states from its file. */
static ftq_status load_shard(ftq_trainer *t, const char *dir, int64_t gstep) {
  char name[64];
  shard_name(t, name, sizeof name);
  char *path = ftq_path_join(dir, name);
  if (!path) return FTQ_ERR_OUT_OF_MEMORY;
  ftq_ckpt_reader *r = NULL;
  ftq_status st = ftq_ckpt_open(path, &r);
  const void *data;
  size_t bytes;
  json_t *meta = NULL;
  if (st == FTQ_OK) st = ftq_ckpt_section(r, "meta", &data, &bytes);
  if (st == FTQ_OK) {
    json_error_t err;
    meta = json_loadb(data, bytes, 0, &err);
    json_t *f = json_object_get(meta, "format");
    if (!json_is_string(f) || strcmp(json_string_value(f), SHARD_FORMAT) != 0)
      st = ftq_error(FTQ_ERR_FORMAT, "'%s' is not a libftq optimizer shard", path);
  }
  int64_t rank = -1, world = -1, step = -1;
  if (st == FTQ_OK) st = meta_int(meta, "rank", path, &rank);
  if (st == FTQ_OK) st = meta_int(meta, "world_size", path, &world);
  if (st == FTQ_OK) st = meta_int(meta, "global_step", path, &step);
  if (st == FTQ_OK && (rank != t->rank || world != t->world || step != gstep))
    st = ftq_error(FTQ_ERR_FORMAT, "'%s' holds rank %lld of %lld at step %lld; expected rank %d of %d at step %lld",
                   path, (long long)rank, (long long)world, (long long)step, t->rank, t->world, (long long)gstep);
  if (st == FTQ_OK) st = load_optimizer_section(t, r);
  json_decref(meta);
  ftq_ckpt_close(r);
  free(path);
  return st;
}

static ftq_status load_checkpoint(ftq_trainer *t, const char *dir) {
  char *path = ftq_path_join(dir, STATE_FILE);
  if (!path) return FTQ_ERR_OUT_OF_MEMORY;
  ftq_ckpt_reader *r = NULL;
  ftq_status st = ftq_ckpt_open(path, &r);
  json_t *meta = NULL;
  const void *data;
  size_t bytes;
  if (st == FTQ_OK) st = ftq_ckpt_section(r, "meta", &data, &bytes);
  if (st == FTQ_OK) {
    json_error_t err;
    meta = json_loadb(data, bytes, 0, &err);
    if (!json_is_object(meta) || !json_is_string(json_object_get(meta, "format")) ||
        strcmp(json_string_value(json_object_get(meta, "format")), CKPT_FORMAT) != 0)
      st = ftq_error(FTQ_ERR_FORMAT, "checkpoint '%s': not a libftq trainer checkpoint", path);
  }
  int64_t version = 0, gstep = 0, total = 0, micro = 0, seed = 0, n_tensors = 0, n_params = 0, r_ = 0, targets = 0;
  int64_t consec = 0, nonfinite = 0, since = 0, loss_steps = 0;
  if (st == FTQ_OK) st = meta_int(meta, "version", path, &version);
  if (st == FTQ_OK && version != CKPT_VERSION)
    st = ftq_error(FTQ_ERR_UNSUPPORTED, "checkpoint '%s' has version %lld; this libftq reads %d", path, (long long)version,
                   CKPT_VERSION);
  const char *keys[] = {"global_step", "total_steps", "micro_step", "seed", "adapter_tensors", "adapter_parameters",
                        "r", "targets", "consecutive_nonfinite", "total_nonfinite", "steps_since_log", "train_loss_steps"};
  int64_t *vals[] = {&gstep, &total, &micro, &seed, &n_tensors, &n_params, &r_, &targets, &consec, &nonfinite, &since,
                     &loss_steps};
  for (size_t k = 0; st == FTQ_OK && k < sizeof keys / sizeof keys[0]; k++) st = meta_int(meta, keys[k], path, vals[k]);
  /* a checkpoint without these fields comes from a one-device run */
  int64_t world = 1, zero = 0;
  if (st == FTQ_OK && json_object_get(meta, "world_size")) st = meta_int(meta, "world_size", path, &world);
  if (st == FTQ_OK && json_object_get(meta, "zero_stage")) st = meta_int(meta, "zero_stage", path, &zero);
  if (st == FTQ_OK && (world != t->world || zero != t->zero_stage))
    st = ftq_error(FTQ_ERR_STATE, "checkpoint '%s' was written by %lld rank%s with zero_stage %lld; this run has %d "
                   "with zero_stage %d: resume with the same world size and zero_stage", path, (long long)world,
                   world == 1 ? "" : "s", (long long)zero, t->world, t->zero_stage);
  int64_t have_params = 0;
  if (st == FTQ_OK) st = ftq_lora_num_parameters(t->lora, &have_params);
  if (st == FTQ_OK && (n_tensors != (int64_t)t->lora->n_tensors || n_params != have_params || r_ != t->lora->r ||
                       targets != (int64_t)t->lora->targets))
    st = ftq_error(FTQ_ERR_SHAPE, "checkpoint '%s' belongs to another adapter configuration (r %lld, %lld tensors, "
                   "%lld parameters; this adapter: r %lld, %zu tensors, %lld parameters)", path, (long long)r_,
                   (long long)n_tensors, (long long)n_params, (long long)t->lora->r, t->lora->n_tensors,
                   (long long)have_params);
  if (st == FTQ_OK) {
    char fp[24];
    snprintf(fp, sizeof fp, "%016llx", (unsigned long long)ftq_dataset_fingerprint(t->data));
    json_t *v = json_object_get(meta, "data_fingerprint");
    if (!json_is_string(v) || strcmp(json_string_value(v), fp) != 0)
      st = ftq_error(FTQ_ERR_SHAPE, "checkpoint '%s' was made on another data set or batching (fingerprint %s, now %s)",
                     path, json_is_string(v) ? json_string_value(v) : "?", fp);
  }
  if (st == FTQ_OK && total != t->total_steps)
    FTQ_LOGW(t->ctx, "checkpoint '%s' was made for a run of %lld steps; this run has %lld (the schedule differs)", path,
             (long long)total, (long long)t->total_steps);
  /* everything checked: restore */
  if (st == FTQ_OK) st = ftq_ckpt_section(r, "adapter", &data, &bytes);
  if (st == FTQ_OK && bytes != (size_t)n_params * sizeof(float))
    st = ftq_error(FTQ_ERR_FORMAT, "checkpoint '%s': adapter section has %zu bytes, expected %lld", path, bytes,
                   (long long)n_params * 4);
  float *adapter = NULL;
  if (st == FTQ_OK && !(adapter = ftq_malloc(bytes, "checkpoint adapter"))) st = FTQ_ERR_OUT_OF_MEMORY;
  if (st == FTQ_OK) memcpy(adapter, data, bytes); /* aligned copy */
  size_t off = 0;
  for (size_t i = 0; st == FTQ_OK && i < t->lora->n_tensors; i++) {
    int64_t shape[2];
    st = ftq_lora_tensor_info(t->lora, i, NULL, 0, shape);
    if (st == FTQ_OK) st = ftq_lora_set_tensor(t->lora, i, adapter + off, (size_t)(shape[0] * shape[1]));
    off += (size_t)(shape[0] * shape[1]);
  }
  free(adapter);
  if (st == FTQ_OK) st = t->zero_stage >= 1 ? load_shard(t, dir, gstep) : load_optimizer_section(t, r);
  if (st == FTQ_OK) {
    t->global_step = gstep;
    t->micro_step = (uint64_t)micro;
    t->seed = (uint64_t)seed;
    t->consecutive_nonfinite = consec;
    t->total_nonfinite = nonfinite;
    t->steps_since_log = since;
    t->loss_since_log = json_real_value(json_object_get(meta, "loss_since_log"));
    t->train_loss_sum = json_real_value(json_object_get(meta, "train_loss_sum"));
    t->train_loss_steps = loss_steps;
    FTQ_LOGI(t->ctx, "resumed from %s at step %lld", dir, (long long)gstep);
  }
  json_decref(meta);
  ftq_ckpt_close(r);
  free(path);
  return st == FTQ_OK ? FTQ_OK : ftq_error_context(st, "loading checkpoint '%s'", dir);
}

ftq_status ftq_trainer_load_checkpoint(ftq_trainer *t, const char *dir) {
  FTQ_CHECK_ARG(t && dir, "ftq_trainer_load_checkpoint: trainer and dir must be given");
  /* all ranks resume together or none does */
  return ftq_dist_agree(t, load_checkpoint(t, dir), "loading the checkpoint");
}

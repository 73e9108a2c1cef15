/* The training loop (transformers' Trainer semantics, qlora-spec.md §6):
 * micro-batches drawn by position from the data set, loss normalised over
 * the accumulated batch, clipping + AdamW + schedule, a NaN/Inf guard,
 * logging, evaluation and checkpoints, callbacks that may stop the run. */
#include "train/trainer.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/context.h"
#include "core/error.h"
#include "core/log.h"
#include "core/options.h"
#include "train/dataset.h"

static const ftq_option_def train_option_defs[] = {
    {"num_train_epochs", "train", FTQ_OPTION_FLOAT, "3", 0, 1e6, NULL, 0,
     "epochs to train when max_steps is not set (fractions allowed)"},
    {"max_steps", "train", FTQ_OPTION_INT, "-1", -1, 1e12, NULL, 0,
     "optimizer steps to train; overrides num_train_epochs when > 0"},
    {"logging_steps", "train", FTQ_OPTION_INT, "500", 1, 1e12, NULL, 0,
     "log the mean loss, learning rate, grad norm and throughput every this many steps"},
    {"eval_steps", "train", FTQ_OPTION_INT, "0", 0, 1e12, NULL, 0,
     "evaluate on the eval split every this many steps; 0 = never"},
    {"save_steps", "train", FTQ_OPTION_INT, "0", 0, 1e12, NULL, 0,
     "write a checkpoint to output_dir/checkpoint-<step> every this many steps; 0 = never"},
    {"save_total_limit", "train", FTQ_OPTION_INT, "0", 0, 1e9, NULL, 0,
     "keep at most this many checkpoints in output_dir (oldest deleted); 0 = all"},
    {"output_dir", "train", FTQ_OPTION_STRING, "", 0, 0, NULL, 0, "folder for checkpoints and outputs"},
    {"max_consecutive_nonfinite", "train", FTQ_OPTION_INT, "10", 1, 1e9, NULL, 0,
     "stop with an error after this many steps in a row with a non-finite loss or gradient"},
};
FTQ_OPTION_TABLE(train, train_option_defs);

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void ftq_trainer_destroy(ftq_trainer *t) {
  if (!t) return;
  if (t->batches)
    for (int64_t j = 0; j < t->grad_accum; j++) ftq_batch_destroy(t->batches[j]);
  free(t->batches);
  ftq_optimizer_destroy(t->optimizer);
  ftq_dist_release(t);
  ftq_options_destroy(t->opts);
  free(t);
}

ftq_status ftq_trainer_create(ftq_model *model, ftq_lora *lora, ftq_dataset *data, const ftq_options *opts,
                              ftq_trainer **out) {
  FTQ_CHECK_ARG(out, "ftq_trainer_create: out must not be NULL");
  *out = NULL;
  FTQ_CHECK_ARG(model && lora && data, "ftq_trainer_create: model, lora and data must not be NULL");
  FTQ_CHECK_ARG(lora->model == model, "ftq_trainer_create: adapter '%s' belongs to another model", lora->name);
  int64_t bpe = ftq_dataset_num_batches(data, FTQ_SPLIT_TRAIN);
  if (bpe <= 0) return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "ftq_trainer_create: the data set has no training batches");

  ftq_trainer *t = ftq_calloc(1, sizeof *t, "trainer");
  if (!t) return FTQ_ERR_OUT_OF_MEMORY;
  t->model = model;
  t->lora = lora;
  t->data = data;
  t->ctx = model->ctx;
  t->world = 1;
  t->data_grouping0 = data->grouping_batch_size;
  ftq_status st = ftq_options_copy(opts, &t->opts);
  int64_t seed = 0;
  const char *dir = "";
  if (st == FTQ_OK) st = ftq_options_get_int(opts, "gradient_accumulation_steps", &t->grad_accum);
  if (st == FTQ_OK) st = ftq_options_get_int(opts, "logging_steps", &t->logging_steps);
  if (st == FTQ_OK) st = ftq_options_get_int(opts, "eval_steps", &t->eval_steps);
  if (st == FTQ_OK) st = ftq_options_get_int(opts, "save_steps", &t->save_steps);
  if (st == FTQ_OK) st = ftq_options_get_int(opts, "save_total_limit", &t->save_total_limit);
  if (st == FTQ_OK) st = ftq_options_get_int(opts, "max_consecutive_nonfinite", &t->max_nonfinite);
  if (st == FTQ_OK) st = ftq_options_get_int(opts, "seed", &seed);
  if (st == FTQ_OK) st = ftq_options_get_string(opts, "output_dir", &dir);
  if (st == FTQ_OK && t->save_steps > 0 && !*dir)
    st = ftq_error(FTQ_ERR_INVALID_ARGUMENT, "option save_steps = %lld needs output_dir", (long long)t->save_steps);
  if (st == FTQ_OK && t->eval_steps > 0 && ftq_dataset_num_examples(data, FTQ_SPLIT_EVAL) <= 0)
    st = ftq_error(FTQ_ERR_INVALID_ARGUMENT, "option eval_steps = %lld needs an eval split (test_size > 0)",
                   (long long)t->eval_steps);
  if (st != FTQ_OK) {
    ftq_trainer_destroy(t);
    return st;
  }
  snprintf(t->output_dir, sizeof t->output_dir, "%s", dir);
  t->seed = (uint64_t)seed;
  t->batch_size = data->split[FTQ_SPLIT_TRAIN].batch_size;
  t->batches_per_epoch = bpe;
  st = ftq_trainer_plan_steps(t, 1);
  if (st != FTQ_OK) {
    ftq_trainer_destroy(t);
    return st;
  }
  if (data->grouping_batch_size != t->batch_size * t->grad_accum && data->group_by_length)
    FTQ_LOGW(t->ctx, "group_by_length grouped the data set for batches of %lld, the trainer takes %lld x %lld",
             (long long)data->grouping_batch_size, (long long)t->batch_size, (long long)t->grad_accum);
  t->batches = ftq_calloc((size_t)t->grad_accum, sizeof *t->batches, "trainer batches");
  st = t->batches ? FTQ_OK : FTQ_ERR_OUT_OF_MEMORY;
  for (int64_t j = 0; st == FTQ_OK && j < t->grad_accum; j++) st = ftq_batch_create(&t->batches[j]);
  if (st == FTQ_OK) st = ftq_optimizer_create(lora, opts, t->total_steps, &t->optimizer);
  if (st == FTQ_OK) st = ftq_lora_set_active(lora, 1);
  if (st != FTQ_OK) {
    ftq_trainer_destroy(t);
    return st;
  }
  FTQ_LOGI(t->ctx, "trainer: %lld steps (%lld per epoch: %lld batches of %lld, accumulation %lld), adapter '%s'",
           (long long)t->total_steps, (long long)t->steps_per_epoch, (long long)bpe, (long long)t->batch_size,
           (long long)t->grad_accum, lora->name);
  *out = t;
  return FTQ_OK;
}

ftq_status ftq_trainer_set_log_callback(ftq_trainer *t, ftq_trainer_log_callback cb, void *user) {
  FTQ_CHECK_ARG(t, "ftq_trainer_set_log_callback: trainer must not be NULL");
  t->log_cb = cb;
  t->log_user = user;
  return FTQ_OK;
}

ftq_status ftq_trainer_set_progress_callback(ftq_trainer *t, ftq_trainer_progress_callback cb, void *user) {
  FTQ_CHECK_ARG(t, "ftq_trainer_set_progress_callback: trainer must not be NULL");
  t->progress_cb = cb;
  t->progress_user = user;
  return FTQ_OK;
}

ftq_status ftq_trainer_set_eval_callback(ftq_trainer *t, ftq_trainer_eval_callback cb, void *user) {
  FTQ_CHECK_ARG(t, "ftq_trainer_set_eval_callback: trainer must not be NULL");
  t->eval_cb = cb;
  t->eval_user = user;
  return FTQ_OK;
}

int64_t ftq_trainer_global_step(const ftq_trainer *t) { return t ? t->global_step : -1; }
int64_t ftq_trainer_total_steps(const ftq_trainer *t) { return t ? t->total_steps : -1; }
int64_t ftq_trainer_nonfinite_steps(const ftq_trainer *t) { return t ? t->total_nonfinite : -1; }
ftq_optimizer *ftq_trainer_optimizer(ftq_trainer *t) { return t ? t->optimizer : NULL; }

/* ---------------------------------------------------------------------- */
/* Logging                                                                  */

/* Sends a record to the log callback (and the context log); returns
 * non-zero when the callback asks to stop. Takes ownership of `rec`. */
static int emit(ftq_trainer *t, json_t *rec) {
  int stop = 0;
  char *text = json_dumps(rec, JSON_PRESERVE_ORDER | JSON_COMPACT | JSON_REAL_PRECISION(10));
  if (text) {
    FTQ_LOGI(t->ctx, "%s", text);
    if (t->log_cb) stop = t->log_cb(t->log_user, text);
    free(text);
  }
  json_decref(rec);
  return stop;
}

static void put_real(json_t *o, const char *key, double v) {
  json_object_set_new(o, key, isfinite(v) ? json_real(v) : json_null());
}

static double epoch_of(const ftq_trainer *t) {
  return (double)t->micro_step / (double)t->batches_per_epoch;
}

static size_t device_peak(const ftq_trainer *t) {
  size_t peak = 0;
  ftq_context_memory(t->ctx, FTQ_MEM_ALL, NULL, &peak);
  return peak;
}

static int log_training(ftq_trainer *t) {
  json_t *rec = json_object();
  if (!rec) return 0;
  json_object_set_new(rec, "step", json_integer(t->global_step));
  put_real(rec, "epoch", epoch_of(t));
  put_real(rec, "loss", t->steps_since_log ? t->loss_since_log / (double)t->steps_since_log : NAN);
  put_real(rec, "learning_rate", ftq_optimizer_learning_rate(t->optimizer)); /* as transformers: the next step's */
  put_real(rec, "grad_norm", t->last_grad_norm);
  put_real(rec, "tokens_per_second", t->seconds_total > 0 ? t->tokens_total / t->seconds_total : 0.0);
  json_object_set_new(rec, "memory_peak_bytes", json_integer((json_int_t)device_peak(t)));
  json_object_set_new(rec, "nonfinite_steps", json_integer(t->total_nonfinite));
  t->loss_since_log = 0;
  t->steps_since_log = 0;
  return emit(t, rec);
}

/* ---------------------------------------------------------------------- */
/* Evaluation                                                               */

ftq_status ftq_trainer_evaluate(ftq_trainer *t, double *eval_loss) {
  FTQ_CHECK_ARG(t && eval_loss, "ftq_trainer_evaluate: arguments must not be NULL");
  int64_t nb = ftq_dataset_num_batches(t->data, FTQ_SPLIT_EVAL);
  if (nb <= 0) return ftq_error(FTQ_ERR_STATE, "ftq_trainer_evaluate: the data set has no eval split (test_size)");
  /* data parallel: rank r takes batches r, r + R, ... and the sums are reduced */
  double acc[2] = {0, 0}; /* loss sum, counted tokens */
  for (int64_t i = t->rank; i < nb; i += t->world) {
    FTQ_TRY(ftq_dataset_get_batch(t->data, FTQ_SPLIT_EVAL, 0, i, t->batches[0]));
    double s;
    int64_t n;
    FTQ_TRY(ftq_model_eval_batch(t->model, t->batches[0], &s, &n));
    acc[0] += s;
    acc[1] += (double)n;
  }
  FTQ_TRY(ftq_dist_sum(t, acc, 2, "evaluation"));
  *eval_loss = acc[1] > 0 ? acc[0] / acc[1] : NAN;
  return FTQ_OK;
}

static ftq_status run_eval(ftq_trainer *t, int *stop) {
  double loss, metric = NAN;
  FTQ_TRY(ftq_trainer_evaluate(t, &loss));
  if (t->eval_cb && t->eval_cb(t->eval_user, t, t->global_step, &metric)) *stop = 1;
  json_t *rec = json_object();
  if (!rec) return FTQ_OK;
  json_object_set_new(rec, "step", json_integer(t->global_step));
  put_real(rec, "epoch", epoch_of(t));
  put_real(rec, "eval_loss", loss);
  if (t->eval_cb) put_real(rec, "eval_metric", metric);
  if (emit(t, rec)) *stop = 1;
  return FTQ_OK;
}

/* ---------------------------------------------------------------------- */
/* Steps                                                                    */

ftq_status ftq_trainer_save_rotating(ftq_trainer *t); /* trainer_ckpt.c */

ftq_status ftq_trainer_step(ftq_trainer *t, double *loss_out) {
  FTQ_CHECK_ARG(t, "ftq_trainer_step: trainer must not be NULL");
  if (t->global_step >= t->total_steps)
    return ftq_error(FTQ_ERR_STATE, "the run is complete (%lld of %lld steps)", (long long)t->global_step,
                     (long long)t->total_steps);
  double t0 = now_s();
  /* the micro-batches of this step, by position: micro-batch k is batch
   * k mod B of epoch k div B, so the order is a function of the counter;
   * data parallel, this rank takes its run of them (trainer_dist.c) */
  const uint64_t first = ftq_dist_first_micro(t);
  double num_items = 0, tokens = 0;
  for (int64_t j = 0; j < t->grad_accum; j++) {
    uint64_t k = first + (uint64_t)j;
    FTQ_TRY(ftq_dataset_get_batch(t->data, FTQ_SPLIT_TRAIN, (int64_t)(k / (uint64_t)t->batches_per_epoch),
                                  (int64_t)(k % (uint64_t)t->batches_per_epoch), t->batches[j]));
    num_items += (double)ftq_batch_num_loss_tokens(t->batches[j]);
    tokens += (double)ftq_batch_num_tokens(t->batches[j]);
  }
  double counts[2] = {num_items, tokens};
  FTQ_TRY(ftq_dist_sum(t, counts, 2, "token counts"));
  num_items = counts[0];
  tokens = counts[1];
  FTQ_TRY(ftq_lora_zero_grad(t->lora));
  double loss = 0;
  for (int64_t j = 0; j < t->grad_accum; j++) {
    double l = 0;
    FTQ_TRY(ftq_dist_forward_backward(t, t->batches[j], first + (uint64_t)j, num_items, j == t->grad_accum - 1, &l));
    if (num_items > 0) loss += l;
  }
  FTQ_TRY(ftq_dist_sum(t, &loss, 1, "loss"));
  t->micro_step += (uint64_t)t->grad_accum * (uint64_t)t->world;
  int skipped = 1;
  double lr = 0, norm = NAN;
  if (isfinite(loss)) FTQ_TRY(ftq_optimizer_step(t->optimizer, &norm, &lr, &skipped));
  if (!skipped) FTQ_TRY(ftq_dist_after_update(t));
  t->global_step++;
  t->last_grad_norm = norm;
  t->last_lr = lr;
  double dt = now_s() - t0;
  t->seconds_total += dt;
  t->tokens_total += tokens;
  int stop = 0;
  if (skipped) {
    t->consecutive_nonfinite++;
    t->total_nonfinite++;
    json_t *rec = json_object();
    if (rec) {
      json_object_set_new(rec, "event", json_string("skipped_step"));
      json_object_set_new(rec, "step", json_integer(t->global_step));
      put_real(rec, "loss", loss);
      put_real(rec, "grad_norm", norm);
      json_object_set_new(rec, "consecutive", json_integer(t->consecutive_nonfinite));
      if (emit(t, rec)) stop = 1;
    }
    FTQ_LOGW(t->ctx, "step %lld: non-finite loss (%g) or gradient norm (%g); update skipped", (long long)t->global_step,
             loss, norm);
    if (t->consecutive_nonfinite >= t->max_nonfinite)
      return ftq_error(FTQ_ERR_NUMERIC, "training stopped: %lld steps in a row had a non-finite loss or gradient "
                       "(max_consecutive_nonfinite = %lld)", (long long)t->consecutive_nonfinite,
                       (long long)t->max_nonfinite);
  } else {
    t->consecutive_nonfinite = 0;
    t->loss_since_log += loss;
    t->steps_since_log++;
    t->train_loss_sum += loss;
    t->train_loss_steps++;
  }
  if (loss_out) *loss_out = loss;
  if (t->progress_cb && t->progress_cb(t->progress_user, t->global_step, t->total_steps, loss, lr,
                                       t->seconds_total > 0 ? t->tokens_total / t->seconds_total : 0.0))
    stop = 1;
  if (t->global_step % t->logging_steps == 0 && log_training(t)) stop = 1;
  if (t->eval_steps > 0 && t->global_step % t->eval_steps == 0) FTQ_TRY(run_eval(t, &stop));
  if (t->save_steps > 0 && t->global_step % t->save_steps == 0) FTQ_TRY(ftq_trainer_save_rotating(t));
  FTQ_TRY(ftq_dist_any(t, &stop)); /* a stop on one rank stops them all, at the same step */
  if (stop) return ftq_error(FTQ_ERR_CANCELLED, "training stopped by a callback at step %lld", (long long)t->global_step);
  return FTQ_OK;
}

ftq_status ftq_trainer_train(ftq_trainer *t) {
  FTQ_CHECK_ARG(t, "ftq_trainer_train: trainer must not be NULL");
  if (!t->planned) FTQ_TRY(ftq_trainer_plan(t, NULL));
  ftq_status st = FTQ_OK;
  while (st == FTQ_OK && t->global_step < t->total_steps) st = ftq_trainer_step(t, NULL);
  if (st != FTQ_OK && st != FTQ_ERR_CANCELLED) return st;
  char msg[1024];
  snprintf(msg, sizeof msg, "%s", ftq_last_error());
  json_t *rec = json_object();
  if (rec) {
    json_object_set_new(rec, "step", json_integer(t->global_step));
    put_real(rec, "train_loss", t->train_loss_steps ? t->train_loss_sum / (double)t->train_loss_steps : NAN);
    put_real(rec, "train_runtime", t->seconds_total);
    put_real(rec, "train_tokens_per_second", t->seconds_total > 0 ? t->tokens_total / t->seconds_total : 0.0);
    json_object_set_new(rec, "nonfinite_steps", json_integer(t->total_nonfinite));
    json_object_set_new(rec, "completed", json_boolean(t->global_step >= t->total_steps));
    emit(t, rec);
  }
  if (st == FTQ_ERR_CANCELLED) return ftq_error(st, "%s", msg);
  return FTQ_OK;
}

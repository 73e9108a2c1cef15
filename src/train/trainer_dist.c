/* Data-parallel training: the trainer as one rank of a communicator.
 *
 * The global order of micro-batches is the single-device one: step s takes
 * micro-batches [s*A*R, (s+1)*A*R) of the single-device sequence (A =
 * gradient_accumulation_steps, R = ranks) and rank r runs the r-th run of A
 * of them, with the same dropout counters and the loss normalised by the
 * token count of the whole global batch. The gradient sum over the ranks
 * is then the single-device gradient up to the order of the additions. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/log.h"
#include "core/options.h"
#include "train/dataset.h"
#include "train/trainer.h"

void ftq_dist_release(ftq_trainer *t) {
  free(t->owner);
  free(t->grads);
  free(t->counts);
  free(t->params);
  free(t->param_bytes);
  t->owner = NULL;
  t->grads = NULL;
  t->counts = NULL;
  t->params = NULL;
  t->param_bytes = NULL;
}

uint64_t ftq_dist_first_micro(const ftq_trainer *t) {
  return t->micro_step + (t->comm ? (uint64_t)t->rank * (uint64_t)t->grad_accum : 0u);
}

ftq_status ftq_dist_sum(ftq_trainer *t, double *values, size_t n, const char *what) {
  if (!t->comm) return FTQ_OK;
  ftq_status st = ftq_comm_allreduce(t->comm, values, n, FTQ_COMM_SUM);
  return st == FTQ_OK ? st : ftq_error_context(st, "step %lld, %s", (long long)t->global_step + 1, what);
}

ftq_status ftq_dist_any(ftq_trainer *t, int *flag) {
  if (!t->comm) return FTQ_OK;
  double v = *flag ? 1.0 : 0.0;
  FTQ_TRY(ftq_comm_allreduce(t->comm, &v, 1, FTQ_COMM_MAX));
  *flag = v != 0.0;
  return FTQ_OK;
}

ftq_status ftq_dist_agree(ftq_trainer *t, ftq_status st, const char *what) {
  if (!t->comm) return st;
  char msg[1024] = "";
  if (st != FTQ_OK) snprintf(msg, sizeof msg, "%s", ftq_last_error());
  double v = (double)st;
  ftq_status cs = ftq_comm_allreduce(t->comm, &v, 1, FTQ_COMM_MIN);
  if (st != FTQ_OK) return ftq_error(st, "%s", msg); /* this rank's own failure first */
  if (cs != FTQ_OK) return cs;
  if (v < 0)
    return ftq_error((ftq_status)(int)v, "%s failed on another rank (%s); see that rank's message", what,
                     ftq_status_string((ftq_status)(int)v));
  return FTQ_OK;
}

/* ---------------------------------------------------------------------- */
/* gradients                                                                */

static ftq_status reduce_layer(void *user, int64_t layer) {
  ftq_trainer *t = user;
  char what[64];
  snprintf(what, sizeof what, "all-reduce of layer %lld's adapter gradients", (long long)layer);
  const size_t first = (size_t)layer * t->per_layer;
  return ftq_comm_allreduce_sum_f32(t->comm, t->grads + first, t->counts + first, t->per_layer, what);
}

ftq_status ftq_dist_forward_backward(ftq_trainer *t, const ftq_batch *b, uint64_t micro, double num_items, int last,
                                     double *loss) {
  if (!t->comm || !last)
    return ftq_model_forward_backward(t->model, b, t->opts, t->seed, micro, num_items, loss, NULL);
  const int64_t L = t->model->cfg.num_hidden_layers;
  if (t->overlap) {
    FTQ_TRY(ftq_forward_backward_hooked(t->model, b, t->opts, t->seed, micro, num_items, loss, NULL, reduce_layer, t));
  } else {
    FTQ_TRY(ftq_model_forward_backward(t->model, b, t->opts, t->seed, micro, num_items, loss, NULL));
    for (int64_t l = L - 1; l >= 0; l--) FTQ_TRY(reduce_layer(t, l));
  }
  ftq_status st = ftq_comm_wait(t->comm, "all-reduce of the adapter gradients");
  return st == FTQ_OK ? st : ftq_error_context(st, "step %lld", (long long)t->global_step + 1);
}

/* Every adapter tensor, in PEFT order, from roots[i]. */
static ftq_status broadcast_params(ftq_trainer *t, const int *roots, const char *what) {
  FTQ_TRY(ftq_comm_broadcast_bufs(t->comm, t->params, t->param_bytes, roots, t->lora->n_tensors, what));
  return ftq_comm_wait(t->comm, what);
}

/* Rank 0's initial adapter to every rank. */
static ftq_status broadcast_from_rank0(ftq_trainer *t) {
  const size_t n = t->lora->n_tensors;
  int *zero = ftq_calloc(n ? n : 1, sizeof *zero, "broadcast roots");
  if (!zero) return FTQ_ERR_OUT_OF_MEMORY;
  ftq_status st = broadcast_params(t, zero, "broadcast of the initial adapter from rank 0");
  free(zero);
  return st;
}

ftq_status ftq_dist_after_update(ftq_trainer *t) {
  if (!t->comm || t->zero_stage < 1) return FTQ_OK;
  ftq_status st = broadcast_params(t, t->owner, "broadcast of the updated adapter parameters (ZeRO-1)");
  return st == FTQ_OK ? st : ftq_error_context(st, "step %lld", (long long)t->global_step);
}

/* ---------------------------------------------------------------------- */
/* attaching                                                                */

/* The optimizer's parameter list as the collectives take it. Every layer
 * adapts the same projections, so the layer-major list splits into equal
 * per-layer runs: the gradient buckets. */
static ftq_status list_tensors(ftq_trainer *t) {
  const size_t n = t->lora->n_tensors, L = (size_t)t->model->cfg.num_hidden_layers;
  if (L == 0 || n % L != 0)
    return ftq_error(FTQ_ERR_INTERNAL, "data parallel: %zu adapter tensors do not split over %zu layers", n, L);
  t->per_layer = n / L;
  t->grads = ftq_calloc(n ? n : 1, sizeof *t->grads, "gradient buckets");
  t->counts = ftq_calloc(n ? n : 1, sizeof *t->counts, "gradient buckets");
  t->params = ftq_calloc(n ? n : 1, sizeof *t->params, "parameter list");
  t->param_bytes = ftq_calloc(n ? n : 1, sizeof *t->param_bytes, "parameter list");
  if (!t->grads || !t->counts || !t->params || !t->param_bytes) return FTQ_ERR_OUT_OF_MEMORY;
  for (size_t i = 0; i < n; i++) {
    const ftq_optim_param *p = &t->optimizer->params[i];
    t->grads[i] = p->grad;
    t->counts[i] = p->n;
    t->params[i] = p->param;
    t->param_bytes[i] = p->n * sizeof(float);
  }
  return FTQ_OK;
}

/* ZeRO-1 owners: contiguous runs of the parameter list with about equal
 * element counts per rank, the same on every rank. */
static ftq_status assign_owners(ftq_trainer *t) {
  const size_t n = t->lora->n_tensors;
  t->owner = ftq_calloc(n ? n : 1, sizeof *t->owner, "ZeRO-1 owners");
  if (!t->owner) return FTQ_ERR_OUT_OF_MEMORY;
  double total = 0, before = 0;
  for (size_t i = 0; i < n; i++) total += (double)t->optimizer->params[i].n;
  for (size_t i = 0; i < n; i++) {
    double mid = before + 0.5 * (double)t->optimizer->params[i].n;
    int r = total > 0 ? (int)floor(mid / total * t->world) : 0;
    t->owner[i] = r < t->world ? r : t->world - 1;
    before += (double)t->optimizer->params[i].n;
  }
  return FTQ_OK;
}

ftq_status ftq_trainer_plan_steps(ftq_trainer *t, int world) {
  double epochs = 0;
  int64_t max_steps = 0;
  FTQ_TRY(ftq_options_get_int(t->opts, "max_steps", &max_steps));
  FTQ_TRY(ftq_options_get_float(t->opts, "num_train_epochs", &epochs));
  /* transformers: updates per epoch = max(len(dataloader) // (GA x world), 1) */
  int64_t per_step = t->grad_accum * world;
  t->steps_per_epoch = t->batches_per_epoch / per_step > 0 ? t->batches_per_epoch / per_step : 1;
  t->total_steps = max_steps > 0 ? max_steps : (int64_t)ceil(epochs * (double)t->steps_per_epoch);
  if (t->total_steps < 1)
    return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "the run has no steps (num_train_epochs = %g, max_steps = %lld)", epochs,
                     (long long)max_steps);
  return FTQ_OK;
}

/* Every rank must see the same run: the values below are compared over the
 * ranks (min == max), and the first that differs is named. */
static ftq_status check_agreement(ftq_trainer *t, ftq_status local) {
  int64_t n_params = 0;
  if (local == FTQ_OK) local = ftq_lora_num_parameters(t->lora, &n_params);
  const uint64_t fp = ftq_dataset_fingerprint(t->data);
  static const char *const names[] = {"status", "train batches per epoch", "total steps", "adapter tensors",
                                      "adapter parameters", "gradient_accumulation_steps", "batch size",
                                      "data set fingerprint (low)", "data set fingerprint (high)", "zero_stage",
                                      "seed (low)"};
  enum { N = sizeof names / sizeof names[0] };
  double lo[N] = {(double)local, (double)t->batches_per_epoch, (double)t->total_steps, (double)t->lora->n_tensors,
                  (double)n_params, (double)t->grad_accum, (double)t->batch_size, (double)(fp & 0xffffffffu),
                  (double)(fp >> 32), (double)t->zero_stage, (double)(t->seed & 0xffffffffu)};
  double hi[N];
  memcpy(hi, lo, sizeof lo);
  char msg[1024] = "";
  if (local != FTQ_OK) snprintf(msg, sizeof msg, "%s", ftq_last_error());
  FTQ_TRY(ftq_comm_allreduce(t->comm, lo, N, FTQ_COMM_MIN));
  FTQ_TRY(ftq_comm_allreduce(t->comm, hi, N, FTQ_COMM_MAX));
  if (local != FTQ_OK) return ftq_error(local, "%s", msg);
  if (lo[0] < 0)
    return ftq_error((ftq_status)(int)lo[0], "another rank failed to join the trainer (%s); see its message",
                     ftq_status_string((ftq_status)(int)lo[0]));
  for (int i = 1; i < N; i++)
    if (lo[i] != hi[i])
      return ftq_error(FTQ_ERR_STATE, "the ranks disagree on the %s (%.17g on some, %.17g on others): every rank "
                       "needs the same model, adapter, data set and options", names[i], lo[i], hi[i]);
  return FTQ_OK;
}

ftq_status ftq_trainer_set_comm(ftq_trainer *t, ftq_comm *comm) {
  FTQ_CHECK_ARG(t, "ftq_trainer_set_comm: trainer must not be NULL");
  if (t->global_step != 0 || t->micro_step != 0)
    return ftq_error(FTQ_ERR_STATE, "ftq_trainer_set_comm: the trainer has run or resumed (step %lld); attach the "
                     "communicator right after ftq_trainer_create", (long long)t->global_step);
  FTQ_CHECK_ARG(!comm || comm->ctx == t->ctx, "ftq_trainer_set_comm: the communicator belongs to another context");
  ftq_dist_release(t);
  t->comm = comm;
  t->rank = comm ? comm->rank : 0;
  t->world = comm ? comm->size : 1;
  int64_t zero = 0;
  ftq_status st = ftq_options_get_int(t->opts, "zero_stage", &zero);
  if (st == FTQ_OK) st = ftq_options_get_bool(t->opts, "ddp_overlap", &t->overlap);
  t->zero_stage = comm ? (int)zero : 0;
  if (st == FTQ_OK) st = ftq_trainer_plan_steps(t, t->world);
  /* the grouping of the global batch, as the single-device run with the
   * same global batch would group */
  if (st == FTQ_OK && t->data->group_by_length)
    st = ftq_dataset_set_grouping(t->data, comm ? t->batch_size * t->grad_accum * t->world : t->data_grouping0);
  if (st == FTQ_OK && comm) st = list_tensors(t);
  if (st == FTQ_OK && comm && t->zero_stage >= 1) st = assign_owners(t);
  if (comm) st = check_agreement(t, st);
  /* identical starting weights, as DDP makes them at construction */
  if (st == FTQ_OK && comm) st = broadcast_from_rank0(t);
  if (st == FTQ_OK) st = ftq_optimizer_rebuild(t->optimizer, t->opts, t->total_steps, t->owner, t->rank);
  if (comm) st = ftq_dist_agree(t, st, "setting up the optimizer");
  if (st != FTQ_OK) {
    ftq_dist_release(t);
    t->comm = NULL;
    t->rank = 0;
    t->world = 1;
    t->zero_stage = 0;
    return ftq_error_context(st, "ftq_trainer_set_comm");
  }
  if (comm)
    FTQ_LOGI(t->ctx, "trainer: rank %d of %d, %lld steps (global batch %lld x %lld x %lld), zero_stage %d, overlap %s",
             t->rank, t->world, (long long)t->total_steps, (long long)t->batch_size, (long long)t->world,
             (long long)t->grad_accum, t->zero_stage, t->overlap ? "on" : "off");
  return FTQ_OK;
}

/* Internal view of the trainer and the optimizer handle. */
#ifndef FTQ_TRAIN_TRAINER_H
#define FTQ_TRAIN_TRAINER_H

#include "dist/comm.h"
#include "libftq/ftq_trainer.h"
#include "lora/lora.h"
#include "model/graph.h"
#include "optim/optimizer.h"

struct ftq_optimizer {
  ftq_lora *lora;
  ftq_optim *opt;
  ftq_optim_param *params;
  char (*names)[128];
};

struct ftq_trainer {
  ftq_model *model;
  ftq_lora *lora;
  ftq_dataset *data;
  ftq_context *ctx;
  ftq_options *opts;           /* copy of the caller's options */
  ftq_optimizer *optimizer;
  /* settings */
  int64_t batch_size, grad_accum, logging_steps, eval_steps, save_steps, save_total_limit, max_nonfinite;
  uint64_t seed;
  char output_dir[1024];
  int64_t batches_per_epoch;   /* train batches per epoch */
  int64_t steps_per_epoch;     /* optimizer updates per epoch */
  int64_t total_steps;
  /* state (saved in checkpoints) */
  int64_t global_step;
  uint64_t micro_step;         /* micro-batches consumed: the data cursor and the dropout counter */
  int64_t consecutive_nonfinite, total_nonfinite;
  double loss_since_log;       /* sum of step losses since the last log */
  int64_t steps_since_log;
  double train_loss_sum;       /* over the whole run, for the summary */
  int64_t train_loss_steps;
  double tokens_total;         /* non-padding tokens trained, for throughput */
  double seconds_total;        /* time spent in steps */
  double last_grad_norm, last_lr;
  int planned;
  /* data parallel (trainer_dist.c); comm NULL: one device */
  ftq_comm *comm;
  int rank, world;
  int zero_stage, overlap;
  int64_t data_grouping0;      /* the data set's group_by_length grouping before a communicator changed it */
  int *owner;                  /* ZeRO-1: owning rank of each optimizer parameter */
  /* the optimizer's parameter list as the collectives take it; its PEFT
   * order is layer-major, so layer l's tensors are [l * per_layer, (l + 1) * per_layer) */
  float **grads;               /* [n_tensors] gradient tensors */
  size_t *counts;              /* their element counts */
  void **params;               /* [n_tensors] parameter tensors */
  size_t *param_bytes;         /* their sizes */
  size_t per_layer;
  /* scratch */
  ftq_batch **batches;         /* [grad_accum] */
  /* callbacks */
  ftq_trainer_log_callback log_cb;
  void *log_user;
  ftq_trainer_progress_callback progress_cb;
  void *progress_user;
  ftq_trainer_eval_callback eval_cb;
  void *eval_user;
};

void ftq_batch_to_graph(const ftq_batch *b, ftq_graph_batch *g);

/* ftq_model_forward_backward with the graph's per-layer gradient hook
 * (ftq_graph_settings.layer_grads_done). */
ftq_status ftq_forward_backward_hooked(ftq_model *model, const ftq_batch *batch, const ftq_options *opts,
                                       uint64_t seed, uint64_t micro_step, double num_items, double *loss,
                                       int64_t *n_items, ftq_status (*layer_grads_done)(void *, int64_t),
                                       void *hook_user);

/* Recreates the optimizer's states for a run of total_steps; with owner
 * (ZeRO-1) only the parameters owner[i] == rank keep states. */
ftq_status ftq_optimizer_rebuild(ftq_optimizer *o, const ftq_options *opts, int64_t total_steps, const int *owner,
                                 int rank);

/* Steps per epoch and total steps (max_steps, else num_train_epochs) for a
 * global batch of world x gradient_accumulation_steps micro-batches. */
ftq_status ftq_trainer_plan_steps(ftq_trainer *t, int world);

/* Data parallel (trainer_dist.c). Each is a no-op without a communicator. */
/* The micro-batches of this rank's share of the step: the global counter
 * of its first one. */
uint64_t ftq_dist_first_micro(const ftq_trainer *t);
/* Sums host values over the ranks (counts, losses). */
ftq_status ftq_dist_sum(ftq_trainer *t, double *values, size_t n, const char *what);
/* Maximum of a flag over the ranks (stop requests). */
ftq_status ftq_dist_any(ftq_trainer *t, int *flag);
/* The micro-batch's forward/backward; on the last micro-batch of a step
 * the gradients are all-reduced, overlapped with the backward when
 * ddp_overlap is on. */
ftq_status ftq_dist_forward_backward(ftq_trainer *t, const ftq_batch *b, uint64_t micro, double num_items,
                                     int last, double *loss);
/* After the optimizer step: ZeRO-1 broadcasts each parameter from its owner. */
ftq_status ftq_dist_after_update(ftq_trainer *t);
void ftq_dist_release(ftq_trainer *t);
/* Checkpoint helpers (trainer_ckpt.c): the status agreed by every rank
 * (the worst), so all ranks fail or succeed together. */
ftq_status ftq_dist_agree(ftq_trainer *t, ftq_status st, const char *what);

#endif /* FTQ_TRAIN_TRAINER_H */

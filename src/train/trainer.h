/* Internal view of the trainer and the optimizer handle. */
#ifndef FTQ_TRAIN_TRAINER_H
#define FTQ_TRAIN_TRAINER_H

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

#endif /* FTQ_TRAIN_TRAINER_H */

/* The optimizer: AdamW over a list of fp32 parameter tensors with their
 * gradients, global-norm clipping and the learning-rate schedule.
 * Parameters are given as device pointers (the adapter owns them); the
 * optimizer owns its states m and v (device memory, or pinned host memory
 * when paged). */
#ifndef FTQ_OPTIM_OPTIMIZER_H
#define FTQ_OPTIM_OPTIMIZER_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "core/context.h"
#include "libftq/ftq_options.h"
#include "optim/schedule.h"

typedef struct ftq_optim_param {
  const char *name; /* for messages; must outlive the optimizer */
  float *param;     /* device, n elements */
  float *grad;      /* device, n elements */
  size_t n;
  int decay;        /* weight decay applies (transformers: not to biases and norms) */
  int remote;       /* ZeRO-1: another rank keeps this parameter's states and updates it; its gradient
                       still counts in the global norm */
} ftq_optim_param;

typedef struct ftq_optim_settings {
  ftq_adamw_mode mode;
  int paged;            /* states in pinned host memory */
  double learning_rate; /* base lr */
  double beta1, beta2, eps, weight_decay;
  double max_grad_norm; /* <= 0: no clipping */
  ftq_lr_schedule schedule;
  int64_t warmup_steps; /* resolved from warmup_steps / warmup_ratio */
  int64_t total_steps;
} ftq_optim_settings;

typedef struct ftq_optim ftq_optim;

/* Reads the optimizer options (group "optim": optim, learning_rate,
 * adam_beta1/2, adam_epsilon, weight_decay, max_grad_norm,
 * lr_scheduler_type, warmup_ratio, warmup_steps) for a run of total_steps
 * optimizer updates. */
ftq_status ftq_optim_settings_from_options(const ftq_options *opts, int64_t total_steps, ftq_optim_settings *out);

/* Creates the optimizer and zeroed states for `count` parameters (the
 * array is copied). */
ftq_status ftq_optim_create(ftq_context *ctx, const ftq_optim_settings *s, const ftq_optim_param *params,
                            size_t count, ftq_optim **out);
void ftq_optim_destroy(ftq_optim *opt);

/* Result of one step. */
typedef struct ftq_optim_step_info {
  double grad_norm; /* global L2 norm of the gradients before clipping */
  double lr;        /* learning rate this update used */
  int skipped;      /* 1: non-finite gradients, parameters and states untouched */
} ftq_optim_step_info;

/* One optimizer step over every parameter: global grad norm; if it is not
 * finite the update is skipped (info->skipped, the step counter and the
 * schedule do not advance); else clip (coefficient max_norm/(norm+1e-6)
 * clamped to 1, always applied, as torch does), AdamW at lr =
 * base * lambda(step), advance. Gradients are left as they are. */
ftq_status ftq_optim_step(ftq_optim *opt, ftq_optim_step_info *info);

/* Updates done so far, and the lr the next update will use. */
int64_t ftq_optim_steps_done(const ftq_optim *opt);
double ftq_optim_next_lr(const ftq_optim *opt);

/* State for checkpoints: step counter plus m and v of every parameter this
 * optimizer keeps (not the remote ones), in parameter order. state_bytes() tells the size; save writes it to host
 * memory, load reads it back (sizes must match the parameter list). */
size_t ftq_optim_state_bytes(const ftq_optim *opt);
ftq_status ftq_optim_state_save(const ftq_optim *opt, void *host, size_t bytes);
ftq_status ftq_optim_state_load(ftq_optim *opt, const void *host, size_t bytes);

#endif /* FTQ_OPTIM_OPTIMIZER_H */

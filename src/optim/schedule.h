/* Learning-rate schedules with transformers' exact formulas
 * (transformers/optimization.py; qlora-spec.md §6.2). */
#ifndef FTQ_OPTIM_SCHEDULE_H
#define FTQ_OPTIM_SCHEDULE_H

#include <stdint.h>

typedef enum ftq_lr_schedule {
  FTQ_LR_LINEAR = 0,              /* warm-up, then linear decay to 0 */
  FTQ_LR_COSINE = 1,              /* warm-up, then half a cosine to 0 */
  FTQ_LR_CONSTANT = 2,            /* no warm-up, constant */
  FTQ_LR_CONSTANT_WITH_WARMUP = 3 /* warm-up, then constant */
} ftq_lr_schedule;

/* Parses transformers' lr_scheduler_type name; -1 if unknown. */
int ftq_lr_schedule_parse(const char *name);

/* The multiplier of the base learning rate after `step` scheduler steps
 * (LambdaLR's lr_lambda(step)), in double precision as Python computes it.
 * The k-th optimizer update (k = 1..total) uses lambda(k - 1), so the first
 * update runs at lr 0 whenever there is a warm-up. */
double ftq_lr_lambda(ftq_lr_schedule type, int64_t step, int64_t warmup_steps, int64_t total_steps);

/* transformers' get_warmup_steps: warmup_steps if > 0, else
 * ceil(total_steps * warmup_ratio). */
int64_t ftq_warmup_steps(int64_t total_steps, int64_t warmup_steps, double warmup_ratio);

#endif /* FTQ_OPTIM_SCHEDULE_H */

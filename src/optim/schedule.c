/* Learning-rate schedules (transformers' formulas, evaluated in double). */
#include "optim/schedule.h"

#include <math.h>
#include <string.h>

int ftq_lr_schedule_parse(const char *name) {
  if (!name) return -1;
  if (strcmp(name, "linear") == 0) return FTQ_LR_LINEAR;
  if (strcmp(name, "cosine") == 0) return FTQ_LR_COSINE;
  if (strcmp(name, "constant") == 0) return FTQ_LR_CONSTANT;
  if (strcmp(name, "constant_with_warmup") == 0) return FTQ_LR_CONSTANT_WITH_WARMUP;
  return -1;
}

static double max1(int64_t x) { return x > 1 ? (double)x : 1.0; }

double ftq_lr_lambda(ftq_lr_schedule type, int64_t step, int64_t warmup, int64_t total) {
  if (type == FTQ_LR_CONSTANT) return 1.0;
  if (step < warmup) return (double)step / max1(warmup);
  switch (type) {
    case FTQ_LR_LINEAR: {
      double v = (double)(total - step) / max1(total - warmup);
      return v > 0.0 ? v : 0.0;
    }
    case FTQ_LR_COSINE: {
      const double num_cycles = 0.5;
      double progress = (double)(step - warmup) / max1(total - warmup);
      double v = 0.5 * (1.0 + cos(M_PI * num_cycles * 2.0 * progress));
      return v > 0.0 ? v : 0.0;
    }
    case FTQ_LR_CONSTANT_WITH_WARMUP:
    default: return 1.0;
  }
}

int64_t ftq_warmup_steps(int64_t total_steps, int64_t warmup_steps, double warmup_ratio) {
  if (warmup_steps > 0) return warmup_steps;
  return (int64_t)ceil((double)total_steps * warmup_ratio);
}

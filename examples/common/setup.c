/* The example programs' common start (setup.h). */
#include "setup.h"

#include <stdio.h>

void ftq_example_log(void *user, ftq_log_level level, const char *msg) {
  static const char *names[] = {"error", "warn", "info", "debug"};
  (void)user;
  fprintf(stderr, "[%s] %s\n", names[level], msg);
}

ftq_status ftq_example_open(const char *device, const ftq_options *opts, int level, const char *model_path,
                            const ftq_options *load_opts, const char *adapter, ftq_context **ctx, ftq_model **model,
                            ftq_lora **lora) {
  *ctx = NULL;
  *model = NULL;
  if (lora) *lora = NULL;
  ftq_status st = ftq_context_create(device, opts, ctx);
  if (st == FTQ_OK && level >= 0) {
    st = ftq_context_set_log_callback(*ctx, ftq_example_log, NULL);
    if (st == FTQ_OK) st = ftq_context_set_log_level(*ctx, (ftq_log_level)level);
  }
  if (st == FTQ_OK) st = ftq_model_load(*ctx, model_path, load_opts, model);
  if (st == FTQ_OK && adapter && lora) st = ftq_lora_load(*model, adapter, NULL, load_opts, lora);
  if (st == FTQ_OK && adapter && lora) st = ftq_lora_set_active(*lora, 1);
  return st;
}

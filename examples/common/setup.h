/* What the example programs do first: a context on the device with log
 * lines on stderr, the model, and optionally a PEFT adapter made active.
 * Public API only. */
#ifndef FTQ_EXAMPLES_SETUP_H
#define FTQ_EXAMPLES_SETUP_H

#include <libftq/ftq.h>

/* Prints "[level] message" to stderr (a ftq_log_callback). */
void ftq_example_log(void *user, ftq_log_level level, const char *msg);

/* Creates the context on `device` (options `opts`) logging up to `level`
 * (-1: no log), loads `model_path` with `load_opts` and, when `adapter` is
 * not NULL, the adapter folder (made active) into *lora. On error the
 * objects made so far are left in the out-parameters for the caller to
 * destroy, and ftq_last_error() says what failed. */
ftq_status ftq_example_open(const char *device, const ftq_options *opts, int level, const char *model_path,
                            const ftq_options *load_opts, const char *adapter, ftq_context **ctx, ftq_model **model,
                            ftq_lora **lora);

#endif /* FTQ_EXAMPLES_SETUP_H */

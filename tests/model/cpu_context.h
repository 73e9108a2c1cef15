/* The CPU context the model tests run on. */
#ifndef FTQ_TEST_CPU_CONTEXT_H
#define FTQ_TEST_CPU_CONTEXT_H

#include "test_util.h"

/* A CPU context with two worker threads (the CI machine's cores). */
static inline ftq_context *test_cpu_context(void) {
  ftq_options *o;
  REQUIRE_OK(ftq_options_create(&o));
  REQUIRE_OK(ftq_options_set_int(o, "num_threads", 2));
  ftq_context *ctx;
  REQUIRE_OK(ftq_context_create("cpu", o, &ctx));
  ftq_options_destroy(o);
  return ctx;
}

#endif /* FTQ_TEST_CPU_CONTEXT_H */

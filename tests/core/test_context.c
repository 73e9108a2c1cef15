/* Contexts: device strings, options, logging, memory accounting, arenas. */
#include "core/context.h"
#include "core/log.h"
#include "test_util.h"

typedef struct log_capture {
  int count;
  ftq_log_level last_level;
  char last[256];
} log_capture;

static void on_log(void *user, ftq_log_level level, const char *msg) {
  log_capture *c = user;
  c->count++;
  c->last_level = level;
  snprintf(c->last, sizeof c->last, "%s", msg);
}

int main(void) {
  ftq_context *ctx = NULL;
  ftq_options *o;
  REQUIRE_OK(ftq_options_create(&o));
  REQUIRE_OK(ftq_options_set_int(o, "num_threads", 3));
  REQUIRE_OK(ftq_context_create("cpu", o, &ctx));
  CHECK(ftq_context_device_type(ctx) == FTQ_DEVICE_CPU);
  CHECK(ftq_context_num_threads(ctx) == 3);
  CHECK(strncmp(ftq_context_device_name(ctx), "cpu (3 threads", 14) == 0);
  CHECK(ftq_context_device_type(NULL) == -1 && ftq_context_num_threads(NULL) == -1);

  /* logging: nothing without a callback, level filtering, removal */
  log_capture cap = {0};
  ftq_log(ctx, FTQ_LOG_ERROR, "dropped");
  CHECK_OK(ftq_context_set_log_callback(ctx, on_log, &cap));
  ftq_log(ctx, FTQ_LOG_INFO, "loaded %d tensors", 7);
  CHECK(cap.count == 1 && cap.last_level == FTQ_LOG_INFO && strcmp(cap.last, "loaded 7 tensors") == 0);
  ftq_log(ctx, FTQ_LOG_DEBUG, "hidden at info");
  CHECK(cap.count == 1);
  CHECK_OK(ftq_context_set_log_level(ctx, FTQ_LOG_DEBUG));
  ftq_log(ctx, FTQ_LOG_DEBUG, "shown");
  CHECK(cap.count == 2);
  CHECK_OK(ftq_context_set_log_level(ctx, FTQ_LOG_ERROR));
  ftq_log(ctx, FTQ_LOG_WARN, "hidden");
  CHECK(cap.count == 2);
  CHECK_STATUS(ftq_context_set_log_level(ctx, (ftq_log_level)9), FTQ_ERR_INVALID_ARGUMENT);
  CHECK_OK(ftq_context_set_log_callback(ctx, NULL, NULL));
  ftq_log(ctx, FTQ_LOG_ERROR, "dropped");
  CHECK(cap.count == 2);

  /* memory accounting by category */
  size_t cur, peak;
  ftq_buffer a, b;
  CHECK_OK(ftq_buffer_alloc(ctx, FTQ_MEM_WEIGHTS, 1000, "test weights", &a));
  CHECK_OK(ftq_buffer_alloc(ctx, FTQ_MEM_ACTIVATIONS, 500, "test activations", &b));
  CHECK_OK(ftq_context_memory(ctx, FTQ_MEM_WEIGHTS, &cur, &peak));
  CHECK(cur == 1000 && peak == 1000);
  CHECK_OK(ftq_context_memory(ctx, FTQ_MEM_ALL, &cur, &peak));
  CHECK(cur == 1500 && peak == 1500);
  ftq_buffer_free(ctx, &b);
  CHECK(b.ptr == NULL);
  ftq_buffer_free(ctx, &b); /* twice is harmless */
  CHECK_OK(ftq_context_memory(ctx, FTQ_MEM_ALL, &cur, &peak));
  CHECK(cur == 1000 && peak == 1500);
  CHECK_OK(ftq_context_memory(ctx, FTQ_MEM_ACTIVATIONS, &cur, &peak));
  CHECK(cur == 0 && peak == 500);
  ftq_buffer_free(ctx, &a);
  CHECK_STATUS(ftq_context_memory(ctx, (ftq_memory_category)8, &cur, &peak), FTQ_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(ftq_context_memory(NULL, FTQ_MEM_ALL, &cur, &peak), FTQ_ERR_INVALID_ARGUMENT);
  ftq_buffer z;
  CHECK_OK(ftq_buffer_alloc(ctx, FTQ_MEM_OTHER, 0, "nothing", &z));
  CHECK(z.ptr == NULL);
  /* a failed allocation names what it was for */
  CHECK_STATUS(ftq_buffer_alloc(ctx, FTQ_MEM_WEIGHTS, (size_t)1 << 62, "a huge tensor", &z), FTQ_ERR_OUT_OF_MEMORY);
  CHECK_ERROR_MENTIONS("a huge tensor");
  CHECK_OK(ftq_context_memory(ctx, FTQ_MEM_ALL, &cur, NULL));
  CHECK(cur == 0);

  /* arenas: aligned bump allocation, marks, clear error when exhausted */
  ftq_arena ar;
  CHECK_OK(ftq_arena_init(ctx, &ar, FTQ_MEM_ACTIVATIONS, 1024, "test arena"));
  void *p1, *p2, *p3;
  CHECK_OK(ftq_arena_alloc(&ar, 10, &p1));
  size_t mark = ftq_arena_mark(&ar);
  CHECK_OK(ftq_arena_alloc(&ar, 300, &p2));
  CHECK(((uintptr_t)p2 % 256) == 0 && (char *)p2 - (char *)p1 == 256);
  CHECK_STATUS(ftq_arena_alloc(&ar, 600, &p3), FTQ_ERR_INTERNAL);
  CHECK_ERROR_MENTIONS("test arena");
  ftq_arena_reset(&ar, mark);
  CHECK_OK(ftq_arena_alloc(&ar, 600, &p3));
  CHECK(p3 == p2 && ar.high_water == 1024);
  CHECK_OK(ftq_context_memory(ctx, FTQ_MEM_ACTIVATIONS, &cur, NULL));
  CHECK(cur == 1024);
  ftq_arena_release(ctx, &ar);

  size_t fr = 0, tot = 0;
  CHECK_OK(ftq_context_device_memory(ctx, &fr, &tot));
  CHECK(tot > 0 && fr <= tot);
  CHECK_OK(ftq_context_synchronize(ctx));
  ftq_context_destroy(ctx);
  ftq_context_destroy(NULL);

  /* default thread count is the core count */
  REQUIRE_OK(ftq_context_create("cpu", NULL, &ctx));
  CHECK(ftq_context_num_threads(ctx) >= 1);
  ftq_context_destroy(ctx);

  /* bad device strings and options */
  const char *bad[] = {"", "gpu", "cuda:", "cuda:x", "cuda:-1", "cpu:0", "cuda:1x", "CUDA"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    ctx = (ftq_context *)1;
    CHECK_STATUS(ftq_context_create(bad[i], NULL, &ctx), FTQ_ERR_INVALID_ARGUMENT);
    CHECK(ctx == NULL);
  }
  CHECK_STATUS(ftq_context_create(NULL, NULL, &ctx), FTQ_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(ftq_context_create("cpu", NULL, NULL), FTQ_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(ftq_options_set_int(o, "num_threads", -1), FTQ_ERR_OPTION_RANGE);

  /* CUDA: either a working device or a clear NO_DEVICE error */
  int ndev = -1;
  CHECK_OK(ftq_cuda_device_count(&ndev));
  CHECK(ndev >= 0);
  ftq_status st = ftq_context_create("cuda:99", NULL, &ctx);
  CHECK(st == FTQ_ERR_NO_DEVICE);
  CHECK(strlen(ftq_last_error()) > 10);
  if (ndev == 0) {
    CHECK_STATUS(ftq_context_create("cuda", NULL, &ctx), FTQ_ERR_NO_DEVICE);
    printf("no CUDA device: %s\n", ftq_last_error());
  }
  ftq_options_destroy(o);
  return test_finish("test_context");
}

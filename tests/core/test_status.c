/* Status codes are pinned; messages are per thread; context is prepended. */
#include <pthread.h>

#include "core/error.h"
#include "test_util.h"

static void *other_thread(void *arg) {
  (void)arg;
  /* a fresh thread starts with no error, and its error stays its own */
  int clean = ftq_last_error()[0] == '\0' && ftq_last_error_status() == FTQ_OK;
  ftq_error(FTQ_ERR_IO, "thread error");
  return (void *)(intptr_t)clean;
}

int main(void) {
  /* pinned values: these numbers are part of the ABI forever */
  CHECK(FTQ_OK == 0);
  CHECK(FTQ_ERR_INVALID_ARGUMENT == -1);
  CHECK(FTQ_ERR_OUT_OF_MEMORY == -2);
  CHECK(FTQ_ERR_DEVICE_OUT_OF_MEMORY == -3);
  CHECK(FTQ_ERR_IO == -4);
  CHECK(FTQ_ERR_FORMAT == -5);
  CHECK(FTQ_ERR_UNSUPPORTED == -6);
  CHECK(FTQ_ERR_UNKNOWN_OPTION == -7);
  CHECK(FTQ_ERR_OPTION_TYPE == -8);
  CHECK(FTQ_ERR_OPTION_RANGE == -9);
  CHECK(FTQ_ERR_NO_DEVICE == -10);
  CHECK(FTQ_ERR_CUDA == -11);
  CHECK(FTQ_ERR_CUBLAS == -12);
  CHECK(FTQ_ERR_NCCL == -13);
  CHECK(FTQ_ERR_STATE == -14);
  CHECK(FTQ_ERR_NOT_FOUND == -15);
  CHECK(FTQ_ERR_SHAPE == -16);
  CHECK(FTQ_ERR_NUMERIC == -17);
  CHECK(FTQ_ERR_CANCELLED == -18);
  CHECK(FTQ_ERR_TIMEOUT == -19);
  CHECK(FTQ_ERR_INTERNAL == -20);

  /* every code has its own string; unknown ones say so */
  for (int a = 0; a >= -20; a--) {
    const char *sa = ftq_status_string((ftq_status)a);
    CHECK(sa && *sa && strcmp(sa, "unknown status") != 0);
    for (int b = a - 1; b >= -20; b--) CHECK(strcmp(sa, ftq_status_string((ftq_status)b)) != 0);
  }
  CHECK(strcmp(ftq_status_string((ftq_status)-999), "unknown status") == 0);

  /* message and status */
  ftq_clear_error();
  CHECK(ftq_last_error()[0] == '\0');
  CHECK(ftq_error(FTQ_ERR_FORMAT, "tensor '%s' has %d dims", "w", 3) == FTQ_ERR_FORMAT);
  CHECK(strcmp(ftq_last_error(), "tensor 'w' has 3 dims") == 0);
  CHECK(ftq_last_error_status() == FTQ_ERR_FORMAT);
  CHECK(ftq_error_context(FTQ_ERR_FORMAT, "loading '%s'", "m.safetensors") == FTQ_ERR_FORMAT);
  CHECK(strcmp(ftq_last_error(), "loading 'm.safetensors': tensor 'w' has 3 dims") == 0);

  /* long messages are truncated, not overflowed */
  char big[5000];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  ftq_error(FTQ_ERR_IO, "%s", big);
  CHECK(strlen(ftq_last_error()) < sizeof big - 1);

  /* thread-local */
  ftq_error(FTQ_ERR_SHAPE, "main thread");
  pthread_t t;
  void *clean = NULL;
  CHECK(pthread_create(&t, NULL, other_thread, NULL) == 0);
  pthread_join(t, &clean);
  CHECK(clean == (void *)1);
  CHECK(strcmp(ftq_last_error(), "main thread") == 0);
  CHECK(ftq_last_error_status() == FTQ_ERR_SHAPE);

  ftq_free(NULL);
  return test_finish("test_status");
}

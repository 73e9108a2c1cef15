/* Thread-local last-error message and status strings. */
#include "core/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FTQ_ERROR_MAX 2048

static _Thread_local char tl_message[FTQ_ERROR_MAX];
static _Thread_local ftq_status tl_status = FTQ_OK;

ftq_status ftq_verror(ftq_status status, const char *fmt, va_list ap) {
  vsnprintf(tl_message, sizeof tl_message, fmt, ap);
  tl_status = status;
  return status;
}

ftq_status ftq_error(ftq_status status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  ftq_verror(status, fmt, ap);
  va_end(ap);
  return status;
}

ftq_status ftq_error_context(ftq_status status, const char *fmt, ...) {
  char prefix[FTQ_ERROR_MAX];
  char old[FTQ_ERROR_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  memcpy(old, tl_message, sizeof old);
  /* prefix + ": " + old, truncated to the buffer */
  size_t n = strlen(prefix);
  if (n > sizeof tl_message - 3) n = sizeof tl_message - 3;
  memcpy(tl_message, prefix, n);
  tl_message[n++] = ':';
  tl_message[n++] = ' ';
  size_t m = strlen(old);
  if (m > sizeof tl_message - 1 - n) m = sizeof tl_message - 1 - n;
  memcpy(tl_message + n, old, m);
  tl_message[n + m] = '\0';
  tl_status = status;
  return status;
}

const char *ftq_last_error(void) { return tl_message; }

ftq_status ftq_last_error_status(void) { return tl_status; }

void ftq_clear_error(void) {
  tl_message[0] = '\0';
  tl_status = FTQ_OK;
}

void ftq_free(void *ptr) { free(ptr); }

const char *ftq_status_string(ftq_status status) {
  switch (status) {
    case FTQ_OK: return "ok";
    case FTQ_ERR_INVALID_ARGUMENT: return "invalid argument";
    case FTQ_ERR_OUT_OF_MEMORY: return "out of host memory";
    case FTQ_ERR_DEVICE_OUT_OF_MEMORY: return "out of device memory";
    case FTQ_ERR_IO: return "input/output error";
    case FTQ_ERR_FORMAT: return "malformed input";
    case FTQ_ERR_UNSUPPORTED: return "unsupported";
    case FTQ_ERR_UNKNOWN_OPTION: return "unknown option";
    case FTQ_ERR_OPTION_TYPE: return "wrong option type";
    case FTQ_ERR_OPTION_RANGE: return "option value out of range";
    case FTQ_ERR_NO_DEVICE: return "no such device";
    case FTQ_ERR_CUDA: return "CUDA error";
    case FTQ_ERR_CUBLAS: return "cuBLAS error";
    case FTQ_ERR_NCCL: return "NCCL error";
    case FTQ_ERR_STATE: return "invalid state";
    case FTQ_ERR_NOT_FOUND: return "not found";
    case FTQ_ERR_SHAPE: return "shape mismatch";
    case FTQ_ERR_NUMERIC: return "non-finite value";
    case FTQ_ERR_CANCELLED: return "cancelled";
    case FTQ_ERR_TIMEOUT: return "timed out";
    case FTQ_ERR_INTERNAL: return "internal error";
    case FTQ_ERR_COMM: return "communicator peer lost";
  }
  return "unknown status";
}

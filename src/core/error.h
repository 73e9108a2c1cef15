/* Internal error helpers: set the thread-local message and return a status. */
#ifndef FTQ_CORE_ERROR_H
#define FTQ_CORE_ERROR_H

#include <stdarg.h>

#include "libftq/ftq_status.h"

#if defined(__GNUC__) || defined(__clang__)
#define FTQ_PRINTF(fmt_idx, arg_idx) __attribute__((format(printf, fmt_idx, arg_idx)))
#else
#define FTQ_PRINTF(fmt_idx, arg_idx)
#endif

/* Stores "fmt..." as the calling thread's last error and returns `status`,
 * so error paths read `return ftq_error(FTQ_ERR_IO, "...", ...);`. */
ftq_status ftq_error(ftq_status status, const char *fmt, ...) FTQ_PRINTF(2, 3);
ftq_status ftq_verror(ftq_status status, const char *fmt, va_list ap);

/* Prepends context ("loading 'x': ") to the current message, keeping its
 * status; returns `status` for chaining on the way out of a call. */
ftq_status ftq_error_context(ftq_status status, const char *fmt, ...) FTQ_PRINTF(2, 3);

/* Propagates a failed status unchanged (message already set). */
#define FTQ_TRY(expr)                      \
  do {                                     \
    ftq_status ftq_try_st_ = (expr);       \
    if (ftq_try_st_ != FTQ_OK) return ftq_try_st_; \
  } while (0)

/* Argument checks at the public boundary. */
#define FTQ_CHECK_ARG(cond, ...)                                   \
  do {                                                             \
    if (!(cond)) return ftq_error(FTQ_ERR_INVALID_ARGUMENT, __VA_ARGS__); \
  } while (0)

#endif /* FTQ_CORE_ERROR_H */

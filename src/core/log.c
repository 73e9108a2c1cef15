/* Log messages go to the context's callback, filtered by its level. */
#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>

#include "core/context.h"

void ftq_log(const ftq_context *ctx, ftq_log_level level, const char *fmt, ...) {
  if (!ctx || !ctx->log_cb || level > ctx->log_level) return;
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  ctx->log_cb(ctx->log_user, level, msg);
}

const char *ftq_format_bytes(double bytes, char *buf, size_t len) {
  static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024.0 && u < 4) {
    bytes /= 1024.0;
    u++;
  }
  snprintf(buf, len, u ? "%.2f %s" : "%.0f %s", bytes, units[u]);
  return buf;
}

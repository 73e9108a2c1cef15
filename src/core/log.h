/* Logging through the context's callback; nothing is printed directly. */
#ifndef FTQ_CORE_LOG_H
#define FTQ_CORE_LOG_H

#include "core/error.h"
#include "libftq/ftq_context.h"

void ftq_log(const ftq_context *ctx, ftq_log_level level, const char *fmt, ...) FTQ_PRINTF(3, 4);

#define FTQ_LOGE(ctx, ...) ftq_log(ctx, FTQ_LOG_ERROR, __VA_ARGS__)
#define FTQ_LOGW(ctx, ...) ftq_log(ctx, FTQ_LOG_WARN, __VA_ARGS__)
#define FTQ_LOGI(ctx, ...) ftq_log(ctx, FTQ_LOG_INFO, __VA_ARGS__)
#define FTQ_LOGD(ctx, ...) ftq_log(ctx, FTQ_LOG_DEBUG, __VA_ARGS__)

/* Formats a byte count as "1.50 GiB" into buf (returns buf). */
const char *ftq_format_bytes(double bytes, char *buf, size_t len);

#endif /* FTQ_CORE_LOG_H */

/* ftq_context: device selection, backend state, memory accounting, logging. */
#include "core/context.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/log.h"
#include "core/options.h"

static const ftq_option_def context_option_defs[] = {
    {"num_threads", "context", FTQ_OPTION_INT, "0", 0, 4096, NULL, 0,
     "CPU worker threads for the CPU backend and host-side work; 0 = one per online core"},
    {"log_level", "context", FTQ_OPTION_STRING, "info", 0, 0, "error|warn|info|debug", 0,
     "most verbose log level passed to the log callback"},
    {"cuda_workspace_mb", "context", FTQ_OPTION_INT, "32", 0, 4096, NULL, 0,
     "cuBLASLt workspace per CUDA context, in MiB"},
};
FTQ_OPTION_TABLE(context, context_option_defs);

/* Parses "cpu", "cuda", "cuda:N". */
static ftq_status parse_device(const char *device, ftq_device_type *type, int *index) {
  if (!device) return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "device must not be NULL (use \"cpu\" or \"cuda:N\")");
  if (strcmp(device, "cpu") == 0) {
    *type = FTQ_DEVICE_CPU;
    *index = 0;
    return FTQ_OK;
  }
  if (strncmp(device, "cuda", 4) == 0) {
    *type = FTQ_DEVICE_CUDA;
    if (device[4] == '\0') return *index = 0, FTQ_OK;
    if (device[4] == ':' && device[5] >= '0' && device[5] <= '9') {
      char *end;
      errno = 0;
      long v = strtol(device + 5, &end, 10);
      if (*end == '\0' && errno == 0 && v >= 0 && v <= INT_MAX) return *index = (int)v, FTQ_OK;
    }
  }
  return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "unrecognised device \"%s\" (use \"cpu\", \"cuda\" or \"cuda:N\")",
                   device);
}

static ftq_log_level parse_level(const char *s) {
  if (strcmp(s, "error") == 0) return FTQ_LOG_ERROR;
  if (strcmp(s, "warn") == 0) return FTQ_LOG_WARN;
  if (strcmp(s, "debug") == 0) return FTQ_LOG_DEBUG;
  return FTQ_LOG_INFO;
}

ftq_status ftq_context_create(const char *device, const ftq_options *opts, ftq_context **out) {
  FTQ_CHECK_ARG(out, "ftq_context_create: out must not be NULL");
  *out = NULL;
  ftq_device_type type = FTQ_DEVICE_CPU;
  int dev_index = 0;
  FTQ_TRY(parse_device(device, &type, &dev_index));

  int64_t threads, ws_mb;
  const char *level;
  FTQ_TRY(ftq_options_get_int(opts, "num_threads", &threads));
  FTQ_TRY(ftq_options_get_int(opts, "cuda_workspace_mb", &ws_mb));
  FTQ_TRY(ftq_options_get_string(opts, "log_level", &level));

  const ftq_backend *be = NULL;
  if (type == FTQ_DEVICE_CPU) be = ftq_backend_cpu();
  else FTQ_TRY(ftq_backend_cuda(&be));

  ftq_context *ctx = ftq_calloc(1, sizeof *ctx, "context");
  if (!ctx) return FTQ_ERR_OUT_OF_MEMORY;
  ctx->type = type;
  ctx->device_index = dev_index;
  ctx->be = be;
  ctx->log_level = parse_level(level);
  ctx->num_threads = threads > 0 ? (int)threads : ftq_cpu_count();

  ftq_status st = ftq_threadpool_create(ctx->num_threads, &ctx->pool);
  if (st == FTQ_OK) {
    ftq_backend_config cfg = {dev_index, ctx->num_threads, (size_t)ws_mb << 20, ctx};
    st = be->create(&cfg, &ctx->be_ctx, ctx->device_name, sizeof ctx->device_name);
  }
  if (st != FTQ_OK) {
    ftq_threadpool_destroy(ctx->pool);
    free(ctx);
    return st;
  }
  *out = ctx;
  return FTQ_OK;
}

void ftq_context_destroy(ftq_context *ctx) {
  if (!ctx) return;
  if (ctx->be_ctx) ctx->be->destroy(ctx->be_ctx);
  ftq_threadpool_destroy(ctx->pool);
  free(ctx);
}

ftq_status ftq_context_set_log_callback(ftq_context *ctx, ftq_log_callback cb, void *user) {
  FTQ_CHECK_ARG(ctx, "ftq_context_set_log_callback: ctx must not be NULL");
  ctx->log_cb = cb;
  ctx->log_user = user;
  return FTQ_OK;
}

ftq_status ftq_context_set_log_level(ftq_context *ctx, ftq_log_level level) {
  FTQ_CHECK_ARG(ctx, "ftq_context_set_log_level: ctx must not be NULL");
  FTQ_CHECK_ARG(level >= FTQ_LOG_ERROR && level <= FTQ_LOG_DEBUG, "ftq_context_set_log_level: level %d is not a ftq_log_level",
                (int)level);
  ctx->log_level = level;
  return FTQ_OK;
}

int ftq_context_device_type(const ftq_context *ctx) { return ctx ? (int)ctx->type : -1; }

const char *ftq_context_device_name(const ftq_context *ctx) { return ctx ? ctx->device_name : ""; }

int ftq_context_num_threads(const ftq_context *ctx) { return ctx ? ctx->num_threads : -1; }

ftq_status ftq_context_memory(const ftq_context *ctx, ftq_memory_category cat, size_t *current, size_t *peak) {
  FTQ_CHECK_ARG(ctx, "ftq_context_memory: ctx must not be NULL");
  FTQ_CHECK_ARG((int)cat >= 0 && (int)cat < FTQ_MEM_CATEGORIES, "ftq_context_memory: category %d is not a ftq_memory_category",
                (int)cat);
  if (current) *current = ctx->mem[cat].current;
  if (peak) *peak = ctx->mem[cat].peak;
  return FTQ_OK;
}

ftq_status ftq_context_device_memory(const ftq_context *ctx, size_t *free_bytes, size_t *total_bytes) {
  FTQ_CHECK_ARG(ctx, "ftq_context_device_memory: ctx must not be NULL");
  size_t f = 0, t = 0;
  FTQ_TRY(ctx->be->device_memory(ctx->be_ctx, &f, &t));
  if (free_bytes) *free_bytes = f;
  if (total_bytes) *total_bytes = t;
  return FTQ_OK;
}

ftq_status ftq_context_synchronize(ftq_context *ctx) {
  FTQ_CHECK_ARG(ctx, "ftq_context_synchronize: ctx must not be NULL");
  return ctx->be->synchronize(ctx->be_ctx);
}

ftq_status ftq_cuda_device_count(int *count) {
  FTQ_CHECK_ARG(count, "ftq_cuda_device_count: count must not be NULL");
  *count = 0;
  const ftq_backend *be;
  if (ftq_backend_cuda(&be) != FTQ_OK) return FTQ_OK; /* reason stays in ftq_last_error() */
  if (be->device_count(count) != FTQ_OK) *count = 0;
  return FTQ_OK;
}

/* ---------------------------------------------------------------------- */
/* Buffers and arenas                                                       */

static void account(ftq_context *ctx, ftq_memory_category cat, size_t bytes, int add) {
  int cats[2] = {FTQ_MEM_ALL, (int)cat};
  for (int k = 0; k < (cat == FTQ_MEM_ALL ? 1 : 2); k++) {
    if (add) {
      ctx->mem[cats[k]].current += bytes;
      if (ctx->mem[cats[k]].current > ctx->mem[cats[k]].peak) ctx->mem[cats[k]].peak = ctx->mem[cats[k]].current;
    } else {
      ctx->mem[cats[k]].current -= bytes;
    }
  }
}

ftq_status ftq_buffer_alloc(ftq_context *ctx, ftq_memory_category cat, size_t bytes, const char *what,
                            ftq_buffer *out) {
  out->ptr = NULL;
  out->bytes = 0;
  out->category = cat;
  if (bytes == 0) return FTQ_OK;
  ftq_status st = ctx->be->alloc(ctx->be_ctx, bytes, &out->ptr);
  if (st != FTQ_OK) {
    char need[32], held[32];
    return ftq_error_context(st, "allocating %s for %s (%s already held by this context)",
                             ftq_format_bytes((double)bytes, need, sizeof need), what,
                             ftq_format_bytes((double)ctx->mem[FTQ_MEM_ALL].current, held, sizeof held));
  }
  out->bytes = bytes;
  account(ctx, cat, bytes, 1);
  return FTQ_OK;
}

void ftq_buffer_free(ftq_context *ctx, ftq_buffer *buf) {
  if (!buf || !buf->ptr) return;
  ctx->be->free(ctx->be_ctx, buf->ptr);
  account(ctx, buf->category, buf->bytes, 0);
  buf->ptr = NULL;
  buf->bytes = 0;
}

ftq_status ftq_arena_init(ftq_context *ctx, ftq_arena *a, ftq_memory_category cat, size_t capacity,
                          const char *name) {
  memset(a, 0, sizeof *a);
  a->name = name;
  return ftq_buffer_alloc(ctx, cat, ftq_arena_round(capacity), name, &a->buf);
}

void ftq_arena_release(ftq_context *ctx, ftq_arena *a) {
  ftq_buffer_free(ctx, &a->buf);
  a->used = a->high_water = 0;
}

ftq_status ftq_arena_alloc(ftq_arena *a, size_t bytes, void **out) {
  size_t need = ftq_arena_round(bytes);
  if (need < bytes || need > a->buf.bytes - a->used) {
    *out = NULL;
    return ftq_error(FTQ_ERR_INTERNAL, "arena '%s' exhausted: %zu bytes requested, %zu of %zu used (the memory plan was too small)",
                     a->name ? a->name : "?", bytes, a->used, a->buf.bytes);
  }
  *out = (char *)a->buf.ptr + a->used;
  a->used += need;
  if (a->used > a->high_water) a->high_water = a->used;
  return FTQ_OK;
}

/* Internal view of ftq_context, device buffers and arenas. */
#ifndef FTQ_CORE_CONTEXT_H
#define FTQ_CORE_CONTEXT_H

#include <stddef.h>

#include "backend.h"
#include "core/threads.h"
#include "libftq/ftq_context.h"

#define FTQ_MEM_CATEGORIES 8 /* FTQ_MEM_ALL .. FTQ_MEM_OTHER */

struct ftq_context {
  ftq_device_type type;
  int device_index;
  char device_name[256];
  const ftq_backend *be;
  void *be_ctx;
  ftq_threadpool *pool; /* host-side work (CPU backend ops, quantize at load) */
  int num_threads;
  ftq_log_callback log_cb;
  void *log_user;
  ftq_log_level log_level;
  struct {
    size_t current, peak;
  } mem[FTQ_MEM_CATEGORIES];
};

/* A device allocation with its size and accounting category. */
typedef struct ftq_buffer {
  void *ptr;
  size_t bytes;
  ftq_memory_category category;
} ftq_buffer;

/* Allocates `bytes` on the context's device (zero bytes gives ptr NULL) and
 * accounts them under `category`. On failure: FTQ_ERR_DEVICE_OUT_OF_MEMORY
 * (or FTQ_ERR_OUT_OF_MEMORY on the CPU) naming `what` and the sizes. */
ftq_status ftq_buffer_alloc(ftq_context *ctx, ftq_memory_category category, size_t bytes, const char *what,
                            ftq_buffer *out);
void ftq_buffer_free(ftq_context *ctx, ftq_buffer *buf);

/* A bump allocator over one buffer: sized from a plan, reset per step.
 * Allocations are aligned to 256 bytes (what cuBLASLt and vector loads want). */
typedef struct ftq_arena {
  ftq_buffer buf;
  size_t used;
  size_t high_water;
  const char *name;
} ftq_arena;

ftq_status ftq_arena_init(ftq_context *ctx, ftq_arena *arena, ftq_memory_category category, size_t capacity,
                          const char *name);
void ftq_arena_release(ftq_context *ctx, ftq_arena *arena);
/* FTQ_ERR_INTERNAL naming the arena when the plan was too small. */
ftq_status ftq_arena_alloc(ftq_arena *arena, size_t bytes, void **out);
static inline size_t ftq_arena_mark(const ftq_arena *a) { return a->used; }
static inline void ftq_arena_reset(ftq_arena *a, size_t mark) { a->used = mark; }
/* Bytes an allocation takes in an arena, for plans. */
static inline size_t ftq_arena_round(size_t bytes) { return (bytes + 255u) & ~(size_t)255u; }

#endif /* FTQ_CORE_CONTEXT_H */

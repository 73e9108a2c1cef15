/* Host allocation helpers that set the error message on failure. */
#ifndef FTQ_CORE_ALLOC_H
#define FTQ_CORE_ALLOC_H

#include <stddef.h>
#include <stdint.h>

#include "libftq/ftq_status.h"

/* malloc/calloc that report "out of host memory allocating N bytes for
 * `what`" through ftq_last_error() on failure. */
void *ftq_malloc(size_t bytes, const char *what);
void *ftq_calloc(size_t count, size_t size, const char *what);
void *ftq_realloc(void *ptr, size_t bytes, const char *what);
char *ftq_strdup(const char *s, const char *what);

/* Overflow-checked size arithmetic: returns 0 and leaves *out alone on
 * overflow. */
static inline int ftq_mul_size(size_t a, size_t b, size_t *out) {
  if (a != 0 && b > SIZE_MAX / a) return 0;
  *out = a * b;
  return 1;
}
static inline int ftq_add_size(size_t a, size_t b, size_t *out) {
  if (b > SIZE_MAX - a) return 0;
  *out = a + b;
  return 1;
}

#endif /* FTQ_CORE_ALLOC_H */

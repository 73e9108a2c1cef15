/* Host allocation wrappers: every failure becomes a named error. */
#include "core/alloc.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"

void *ftq_malloc(size_t bytes, const char *what) {
  void *p = malloc(bytes ? bytes : 1);
  if (!p) ftq_error(FTQ_ERR_OUT_OF_MEMORY, "out of host memory allocating %zu bytes for %s", bytes, what);
  return p;
}

void *ftq_calloc(size_t count, size_t size, const char *what) {
  void *p = calloc(count ? count : 1, size ? size : 1);
  if (!p)
    ftq_error(FTQ_ERR_OUT_OF_MEMORY, "out of host memory allocating %zu x %zu bytes for %s", count, size, what);
  return p;
}

void *ftq_realloc(void *ptr, size_t bytes, const char *what) {
  void *p = realloc(ptr, bytes ? bytes : 1);
  if (!p) ftq_error(FTQ_ERR_OUT_OF_MEMORY, "out of host memory growing %s to %zu bytes", what, bytes);
  return p;
}

char *ftq_strdup(const char *s, const char *what) {
  size_t n = strlen(s) + 1;
  char *p = ftq_malloc(n, what);
  if (p) memcpy(p, s, n);
  return p;
}

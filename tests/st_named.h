/* Tests: a safetensors tensor seen as the quantizer's named tensor (the
 * lookups the bitsandbytes-format readers take). */
#ifndef FTQ_TESTS_ST_NAMED_H
#define FTQ_TESTS_ST_NAMED_H

#include <string.h>

#include "io/safetensors.h"
#include "quant/bnb_format.h"

/* Fills *t from *s; NULL (no tensor) when s is NULL or has too many dims. */
static inline const ftq_named_tensor *test_named_from_st(const ftq_st_tensor *s, ftq_named_tensor *t) {
  if (!s || s->ndim > FTQ_MAX_DIMS) return NULL;
  memset(t, 0, sizeof *t);
  t->name = s->name;
  t->dtype = s->dtype;
  t->ndim = s->ndim;
  for (int d = 0; d < s->ndim; d++) t->shape[d] = s->shape[d];
  t->data = s->data;
  t->bytes = s->bytes;
  return t;
}

#endif

/* libFuzzer target: the safetensors header parser on arbitrary file images.
 * Every accepted file must be internally consistent (tensors inside the
 * image, in order, findable by name). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ftq_safetensors *f;
  if (ftq_safetensors_parse(data, size, "fuzz", &f) != FTQ_OK) return 0;
  uint64_t end = 0;
  for (size_t i = 0; i < ftq_safetensors_count(f); i++) {
    const ftq_st_tensor *t = ftq_safetensors_tensor(f, i);
    if (t->file_offset < end || t->file_offset + t->bytes > size || ftq_safetensors_find(f, t->name) == NULL)
      abort(); /* an accepted file broke an invariant */
    end = t->file_offset + t->bytes;
    volatile uint8_t sink = 0;
    for (size_t b = 0; b < t->bytes; b += 61) sink ^= ((const uint8_t *)t->data)[b];
    (void)sink;
  }
  (void)ftq_safetensors_metadata(f, "format");
  ftq_safetensors_close(f);
  return 0;
}

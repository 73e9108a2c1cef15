/* libFuzzer target: the GGUF reader on arbitrary file images, then every
 * getter on every key, the model configuration from the metadata, and the
 * dequantization of every (small) tensor the file declares. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/ggml_quant.h"
#include "io/gguf.h"
#include "model/model_load.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ftq_gguf *g;
  if (ftq_gguf_open_memory(data, size, "fuzz", &g) != FTQ_OK) return 0;
  for (uint64_t i = 0; i < ftq_gguf_key_count(g); i++) {
    const char *k;
    size_t len;
    if (ftq_gguf_key_at(g, i, &k, &len) != FTQ_OK) abort();
    char key[256];
    if (len >= sizeof key || memchr(k, 0, len)) continue;
    memcpy(key, k, len);
    key[len] = '\0';
    ftq_gguf_type t, et;
    uint64_t count;
    if (ftq_gguf_key_type(g, key, &t, &et, &count) != FTQ_OK) abort(); /* keys are unique */
    int64_t iv;
    double dv;
    int bv;
    const char *s;
    const void *arr;
    (void)ftq_gguf_get_int(g, key, &iv);
    (void)ftq_gguf_get_float(g, key, &dv);
    (void)ftq_gguf_get_bool(g, key, &bv);
    (void)ftq_gguf_get_string(g, key, &s, &len);
    (void)ftq_gguf_get_array(g, key, &et, &count, &arr);
    if (t == FTQ_GGUF_ARRAY && et == FTQ_GGUF_STRING)
      for (uint64_t j = 0; j < count && j < 64; j++) {
        if (ftq_gguf_get_array_string(g, key, j, &s, &len) != FTQ_OK || s < (const char *)data ||
            s + len > (const char *)data + size)
          abort();
      }
  }
  ftq_model_config cfg;
  int permuted;
  (void)ftq_gguf_read_config(g, &cfg, &permuted);
  for (uint64_t i = 0; i < ftq_gguf_tensor_count(g); i++) {
    const char *name;
    uint32_t type, nd;
    uint64_t ne[4], idx;
    const void *td;
    size_t bytes;
    if (ftq_gguf_tensor_info(g, i, &name, &type, &nd, ne, &td, &bytes) != FTQ_OK) abort();
    if (ftq_gguf_find_tensor(g, name, &idx) != FTQ_OK || idx != i) abort();
    if ((const uint8_t *)td < data || (const uint8_t *)td + bytes > data + size) abort();
    const ftq_ggml_type_info *ti = ftq_ggml_type(type);
    if (!ti || !ti->can_dequantize || bytes > (1u << 20)) continue;
    size_t n = bytes / ti->type_size * ti->block;
    float *out = malloc(n * sizeof *out + 1);
    if (out && ftq_ggml_dequantize(type, td, out, n) != FTQ_OK) abort();
    free(out);
  }
  ftq_gguf_close(g);
  return 0;
}

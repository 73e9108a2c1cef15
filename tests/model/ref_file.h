/* A tiny safetensors reader for the reference files in tests/ref/model
 * (written by gen_ref.py with the Python safetensors package): the whole
 * file in memory, the JSON header through jansson, tensors by name. Test
 * code only; the library's own reader lives in src/io. */
#ifndef FTQ_TEST_REF_FILE_H
#define FTQ_TEST_REF_FILE_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct ref_file {
  char *bytes;
  size_t size;
  size_t data_start;
  json_t *header;
  json_t *config; /* __metadata__.config parsed */
} ref_file;

typedef struct ref_tensor {
  const char *dtype; /* "F32", "I32", "U8", "U16", ... */
  int ndim;
  int64_t shape[4];
  int64_t numel;
  const void *data;
} ref_tensor;

static inline void ref_close(ref_file *r) {
  if (r->header) json_decref(r->header);
  if (r->config) json_decref(r->config);
  free(r->bytes);
  memset(r, 0, sizeof *r);
}

static inline int ref_open(ref_file *r, const char *path) {
  memset(r, 0, sizeof *r);
  FILE *f = fopen(path, "rb");
  if (!f) return fprintf(stderr, "cannot open %s\n", path), 0;
  fseek(f, 0, SEEK_END);
  long sz = ftell(f);
  fseek(f, 0, SEEK_SET);
  r->bytes = malloc((size_t)sz + 1);
  r->size = (size_t)sz;
  int ok = r->bytes && fread(r->bytes, 1, r->size, f) == r->size && r->size >= 8;
  fclose(f);
  if (!ok) return fprintf(stderr, "cannot read %s\n", path), ref_close(r), 0;
  uint64_t hlen;
  memcpy(&hlen, r->bytes, 8);
  if (hlen > r->size - 8) return fprintf(stderr, "%s: bad header\n", path), ref_close(r), 0;
  json_error_t err;
  r->header = json_loadb(r->bytes + 8, (size_t)hlen, 0, &err);
  r->data_start = 8 + (size_t)hlen;
  json_t *meta = r->header ? json_object_get(r->header, "__metadata__") : NULL;
  json_t *cfg = meta ? json_object_get(meta, "config") : NULL;
  if (cfg && json_is_string(cfg)) r->config = json_loads(json_string_value(cfg), 0, &err);
  if (!r->header || !r->config) return fprintf(stderr, "%s: bad JSON\n", path), ref_close(r), 0;
  return 1;
}

static inline int ref_get(const ref_file *r, const char *name, ref_tensor *t) {
  json_t *e = json_object_get(r->header, name);
  if (!e) return 0;
  memset(t, 0, sizeof *t);
  t->dtype = json_string_value(json_object_get(e, "dtype"));
  json_t *shape = json_object_get(e, "shape"), *off = json_object_get(e, "data_offsets");
  t->ndim = (int)json_array_size(shape);
  t->numel = 1;
  for (int i = 0; i < t->ndim && i < 4; i++) {
    t->shape[i] = json_integer_value(json_array_get(shape, (size_t)i));
    t->numel *= t->shape[i];
  }
  size_t b = (size_t)json_integer_value(json_array_get(off, 0));
  t->data = r->bytes + r->data_start + b;
  return 1;
}

/* A tensor that must exist: exits the test otherwise. */
static inline ref_tensor ref_need(const ref_file *r, const char *name) {
  ref_tensor t;
  if (!ref_get(r, name, &t)) {
    fprintf(stderr, "reference file lacks tensor %s\n", name);
    exit(1);
  }
  return t;
}

static inline double ref_cfg_num(const ref_file *r, const char *key) {
  return json_number_value(json_object_get(r->config, key));
}

#endif /* FTQ_TEST_REF_FILE_H */

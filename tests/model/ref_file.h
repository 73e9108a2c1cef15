/* The reference files of tests/ref/model (safetensors written by the Python
 * package, configuration as JSON text in the metadata key "config") through
 * libftq's own safetensors reader (src/io/safetensors.h). */
#ifndef FTQ_TEST_REF_FILE_H
#define FTQ_TEST_REF_FILE_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "libftq/ftq_status.h"

typedef struct ref_file {
  ftq_safetensors *f;
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
  if (r->config) json_decref(r->config);
  ftq_safetensors_close(r->f);
  memset(r, 0, sizeof *r);
}

static inline int ref_open(ref_file *r, const char *path) {
  memset(r, 0, sizeof *r);
  if (ftq_safetensors_open(path, &r->f) != FTQ_OK) {
    fprintf(stderr, "cannot read %s: %s\n", path, ftq_last_error());
    return 0;
  }
  const char *cfg = ftq_safetensors_metadata(r->f, "config");
  json_error_t err;
  r->config = cfg ? json_loads(cfg, 0, &err) : NULL;
  if (!r->config) {
    fprintf(stderr, "%s: no JSON configuration in the metadata\n", path);
    ref_close(r);
    return 0;
  }
  return 1;
}

static inline size_t ref_count(const ref_file *r) { return ftq_safetensors_count(r->f); }
static inline const char *ref_name(const ref_file *r, size_t i) { return ftq_safetensors_tensor(r->f, i)->name; }

static inline int ref_get(const ref_file *r, const char *name, ref_tensor *t) {
  const ftq_st_tensor *s = ftq_safetensors_find(r->f, name);
  if (!s) return 0;
  memset(t, 0, sizeof *t);
  t->dtype = s->dtype_name;
  t->ndim = s->ndim < 4 ? s->ndim : 4;
  for (int i = 0; i < t->ndim; i++) t->shape[i] = s->shape[i];
  t->numel = (int64_t)s->numel;
  t->data = s->data;
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

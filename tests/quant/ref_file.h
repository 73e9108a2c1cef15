/* Reader of the reference-vector container (tests/ref/quant/refio.py):
 * "FTQREF1\n", then records of name, dtype, shape and raw data. The whole
 * file is read into memory; lookups are by name. */
#ifndef FTQ_TESTS_QUANT_REF_FILE_H
#define FTQ_TESTS_QUANT_REF_FILE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct ref_rec {
  char name[256];
  int dtype; /* ftq_dtype value */
  int ndim;
  int64_t shape[8];
  int64_t numel;
  const void *data;
  size_t bytes;
} ref_rec;

typedef struct ref_file {
  unsigned char *buf;
  size_t size;
  ref_rec *recs;
  size_t count;
} ref_file;

static inline int ref_open(const char *path, ref_file *rf) {
  memset(rf, 0, sizeof *rf);
  FILE *f = fopen(path, "rb");
  if (!f) return 0;
  fseek(f, 0, SEEK_END);
  long sz = ftell(f);
  fseek(f, 0, SEEK_SET);
  rf->buf = malloc((size_t)sz);
  if (!rf->buf || fread(rf->buf, 1, (size_t)sz, f) != (size_t)sz) {
    fclose(f);
    return 0;
  }
  fclose(f);
  rf->size = (size_t)sz;
  if (rf->size < 8 || memcmp(rf->buf, "FTQREF1\n", 8) != 0) return 0;
  size_t off = 8, cap = 0;
  while (off < rf->size) {
    if (rf->count == cap) {
      cap = cap ? cap * 2 : 256;
      rf->recs = realloc(rf->recs, cap * sizeof *rf->recs);
    }
    ref_rec *r = &rf->recs[rf->count];
    memset(r, 0, sizeof *r);
    uint32_t len, dt, nd;
    if (off + 4 > rf->size) return 0;
    memcpy(&len, rf->buf + off, 4);
    off += 4;
    if (len >= sizeof r->name || off + len + 8 > rf->size) return 0;
    memcpy(r->name, rf->buf + off, len);
    off += len;
    memcpy(&dt, rf->buf + off, 4);
    memcpy(&nd, rf->buf + off + 4, 4);
    off += 8;
    if (nd > 8 || off + 8 * nd + 8 > rf->size) return 0;
    r->dtype = (int)dt;
    r->ndim = (int)nd;
    r->numel = 1;
    for (uint32_t i = 0; i < nd; i++) {
      memcpy(&r->shape[i], rf->buf + off, 8);
      r->numel *= r->shape[i];
      off += 8;
    }
    uint64_t nb;
    memcpy(&nb, rf->buf + off, 8);
    off += 8;
    if (off + nb > rf->size) return 0;
    /* an aligned copy: the file packs records without padding */
    void *copy = malloc(nb ? (size_t)nb : 1);
    if (!copy) return 0;
    memcpy(copy, rf->buf + off, (size_t)nb);
    r->data = copy;
    r->bytes = (size_t)nb;
    off += nb;
    rf->count++;
  }
  return 1;
}

static inline const ref_rec *ref_get(const ref_file *rf, const char *name) {
  for (size_t i = 0; i < rf->count; i++)
    if (strcmp(rf->recs[i].name, name) == 0) return &rf->recs[i];
  return NULL;
}

static inline void ref_close(ref_file *rf) {
  for (size_t i = 0; i < rf->count; i++) free((void *)rf->recs[i].data);
  free(rf->buf);
  free(rf->recs);
  memset(rf, 0, sizeof *rf);
}

#endif /* FTQ_TESTS_QUANT_REF_FILE_H */

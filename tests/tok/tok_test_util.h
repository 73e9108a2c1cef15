/* Helpers shared by the tokenizer tests: reading reference JSON and base64. */
#ifndef FTQ_TESTS_TOK_UTIL_H
#define FTQ_TESTS_TOK_UTIL_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "libftq/ftq.h"

static inline json_t *tt_load_json(const char *path) {
  json_error_t err;
  json_t *j = json_load_file(path, JSON_ALLOW_NUL, &err);
  if (!j) {
    fprintf(stderr, "cannot read %s: %s (line %d)\n", path, err.text, err.line);
    exit(1);
  }
  return j;
}

/* Decodes base64 into a new buffer (NUL-terminated); *len gets the size. */
static inline unsigned char *tt_b64(const char *s, size_t *len) {
  size_t n = strlen(s);
  unsigned char *out = malloc(n / 4 * 3 + 4);
  size_t o = 0;
  unsigned v = 0;
  int bits = 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    int d = c >= 'A' && c <= 'Z' ? c - 'A' : c >= 'a' && c <= 'z' ? c - 'a' + 26 : c >= '0' && c <= '9' ? c - '0' + 52
            : c == '+' ? 62 : c == '/' ? 63 : -1;
    if (d < 0) continue;
    v = (v << 6) | (unsigned)d;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (unsigned char)(v >> bits);
    }
  }
  out[o] = 0;
  *len = o;
  return out;
}

/* Copies a JSON array of integers into a new int32 array. */
static inline int32_t *tt_ids(json_t *arr, size_t *n) {
  *n = json_array_size(arr);
  int32_t *v = malloc((*n + 1) * sizeof *v);
  for (size_t i = 0; i < *n; i++) v[i] = (int32_t)json_integer_value(json_array_get(arr, i));
  return v;
}

static inline void tt_print_ids(const char *what, const int32_t *v, size_t n) {
  fprintf(stderr, "  %s (%zu):", what, n);
  for (size_t i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", v[i]);
  fprintf(stderr, "%s\n", n > 40 ? " ..." : "");
}

/* Reads a whole file into a new NUL-terminated buffer; NULL if missing. */
static inline char *tt_slurp(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long sz = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *b = malloc((size_t)sz + 1);
  *n = b ? fread(b, 1, (size_t)sz, f) : 0;
  if (b) b[*n] = 0;
  fclose(f);
  return b;
}

/* Path of a reference tokenizer: tests/ref/tok/<name>/tokenizer.json, or
 * its .gz when that is what is committed. */
static inline void tt_ref_tokenizer_path(const char *name, char *path, size_t size) {
  snprintf(path, size, "tests/ref/tok/%s/tokenizer.json", name);
  FILE *f = fopen(path, "rb");
  if (f) fclose(f);
  else snprintf(path, size, "tests/ref/tok/%s/tokenizer.json.gz", name);
}

/* Loads a reference tokenizer or exits. */
static inline ftq_tokenizer *tt_load_ref_tokenizer(const char *name) {
  char path[512];
  tt_ref_tokenizer_path(name, path, sizeof path);
  ftq_tokenizer *t = NULL;
  if (ftq_tokenizer_load(path, NULL, &t) != FTQ_OK) {
    fprintf(stderr, "cannot load %s: %s\n", path, ftq_last_error());
    exit(1);
  }
  return t;
}

#endif

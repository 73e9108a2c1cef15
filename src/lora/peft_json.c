/* Writers shared by PEFT adapters and merged model folders: JSON text
 * exactly as Python's json.dumps(v, indent=2, sort_keys=True) produces it
 * (what PEFT writes adapter_config.json with and transformers config.json),
 * folder creation and atomic whole-file writes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/alloc.h"
#include "core/error.h"
#include "io/file.h"
#include "lora/peft.h"
#include "quant/bnb_format.h"

/* A growing text buffer; `oom` sticks after the first failed allocation. */
typedef struct text {
  char *p;
  size_t len, cap;
  int oom;
} text;

static void put(text *t, const char *s, size_t n) {
  if (t->oom) return;
  if (t->len + n + 1 > t->cap) {
    size_t cap = t->cap ? t->cap : 256;
    while (cap < t->len + n + 1) cap *= 2;
    char *p = realloc(t->p, cap);
    if (!p) {
      t->oom = 1;
      return;
    }
    t->p = p;
    t->cap = cap;
  }
  memcpy(t->p + t->len, s, n);
  t->len += n;
  t->p[t->len] = '\0';
}

static void puts_(text *t, const char *s) { put(t, s, strlen(s)); }

static void indent(text *t, int level) {
  put(t, "\n", 1);
  for (int i = 0; i < level; i++) put(t, "  ", 2);
}

/* Decodes one UTF-8 sequence at s (jansson strings are valid UTF-8). */
static unsigned utf8_next(const unsigned char *s, size_t *used) {
  if (s[0] < 0x80) return *used = 1, s[0];
  if ((s[0] & 0xE0) == 0xC0) return *used = 2, ((s[0] & 0x1Fu) << 6) | (s[1] & 0x3Fu);
  if ((s[0] & 0xF0) == 0xE0) return *used = 3, ((s[0] & 0x0Fu) << 12) | ((s[1] & 0x3Fu) << 6) | (s[2] & 0x3Fu);
  *used = 4;
  return ((s[0] & 0x07u) << 18) | ((s[1] & 0x3Fu) << 12) | ((s[2] & 0x3Fu) << 6) | (s[3] & 0x3Fu);
}

/* A string with ensure_ascii: printable ASCII as is, the short escapes,
 * everything else as \uXXXX (surrogate pairs above U+FFFF). */
static void put_string(text *t, const char *s, size_t n) {
  char buf[16];
  put(t, "\"", 1);
  for (size_t i = 0; i < n;) {
    size_t used;
    unsigned c = utf8_next((const unsigned char *)s + i, &used);
    if (i + used > n) break;
    i += used;
    switch (c) {
      case '"': puts_(t, "\\\""); continue;
      case '\\': puts_(t, "\\\\"); continue;
      case '\n': puts_(t, "\\n"); continue;
      case '\r': puts_(t, "\\r"); continue;
      case '\t': puts_(t, "\\t"); continue;
      case '\b': puts_(t, "\\b"); continue;
      case '\f': puts_(t, "\\f"); continue;
      default: break;
    }
    if (c >= 0x20 && c < 0x7F) {
      buf[0] = (char)c;
      put(t, buf, 1);
    } else if (c < 0x10000) {
      snprintf(buf, sizeof buf, "\\u%04x", c);
      puts_(t, buf);
    } else {
      c -= 0x10000;
      snprintf(buf, sizeof buf, "\\u%04x\\u%04x", 0xD800 + (c >> 10), 0xDC00 + (c & 0x3FF));
      puts_(t, buf);
    }
  }
  put(t, "\"", 1);
}

static int cmp_key(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

static void put_value(text *t, const json_t *v, int level) {
  char buf[48];
  switch (json_typeof(v)) {
    case JSON_NULL: puts_(t, "null"); return;
    case JSON_TRUE: puts_(t, "true"); return;
    case JSON_FALSE: puts_(t, "false"); return;
    case JSON_INTEGER:
      snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v));
      puts_(t, buf);
      return;
    case JSON_REAL: puts_(t, ftq_py_float_repr(json_real_value(v), buf, sizeof buf)); return;
    case JSON_STRING: put_string(t, json_string_value(v), json_string_length(v)); return;
    case JSON_ARRAY: {
      size_t n = json_array_size(v);
      if (!n) {
        puts_(t, "[]");
        return;
      }
      put(t, "[", 1);
      for (size_t i = 0; i < n; i++) {
        if (i) put(t, ",", 1);
        indent(t, level + 1);
        put_value(t, json_array_get(v, i), level + 1);
      }
      indent(t, level);
      put(t, "]", 1);
      return;
    }
    case JSON_OBJECT: {
      size_t n = json_object_size(v);
      if (!n) {
        puts_(t, "{}");
        return;
      }
      const char **keys = malloc(n * sizeof *keys);
      if (!keys) {
        t->oom = 1;
        return;
      }
      size_t k = 0;
      const char *key;
      json_t *val;
      json_object_foreach((json_t *)v, key, val) keys[k++] = key;
      /* Python sorts by code point, which is the byte order of UTF-8 */
      qsort(keys, n, sizeof *keys, cmp_key);
      put(t, "{", 1);
      for (size_t i = 0; i < n; i++) {
        if (i) put(t, ",", 1);
        indent(t, level + 1);
        put_string(t, keys[i], strlen(keys[i]));
        put(t, ": ", 2);
        put_value(t, json_object_get(v, keys[i]), level + 1);
      }
      free(keys);
      indent(t, level);
      put(t, "}", 1);
      return;
    }
  }
}

char *ftq_py_json_dumps(const json_t *v) {
  text t = {0};
  put_value(&t, v, 0);
  if (t.oom || !t.p) {
    free(t.p);
    ftq_error(FTQ_ERR_OUT_OF_MEMORY, "out of host memory writing JSON text");
    return NULL;
  }
  return t.p;
}

ftq_status ftq_make_dir(const char *dir) {
  if (!dir || !*dir) return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "output folder must not be empty");
  if (ftq_dir_exists(dir)) return FTQ_OK;
  if (mkdir(dir, 0777) != 0 && !(errno == EEXIST && ftq_dir_exists(dir)))
    return ftq_error(FTQ_ERR_IO, "cannot create folder '%s': %s", dir, strerror(errno));
  return FTQ_OK;
}

ftq_status ftq_write_file_atomic(const char *path, const void *data, size_t len) {
  ftq_atomic_file f;
  FTQ_TRY(ftq_atomic_open(path, &f));
  ftq_status st = ftq_atomic_write(&f, data, len);
  if (st != FTQ_OK) {
    ftq_atomic_abort(&f);
    return st;
  }
  return ftq_atomic_commit(&f);
}

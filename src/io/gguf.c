/* GGUF reader (v2, v3, little-endian). The whole file is validated at open:
 * every key/value and tensor info is bounds-checked against the file,
 * counts are checked against the bytes that remain before anything is
 * allocated for them, duplicate keys and tensor names are refused, tensor
 * data must be aligned, inside the file and not overlap. Afterwards the
 * getters only index validated tables. */
#include "io/gguf.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "io/file.h"
#include "io/ggml_quant.h"

#define GGUF_MAGIC "GGUF"
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4
#define GGUF_MAX_NAME 1024

typedef struct gguf_kv {
  const char *key; /* into the file, not NUL-terminated */
  size_t key_len;
  ftq_gguf_type type;
  ftq_gguf_type elem_type; /* arrays */
  uint64_t count;          /* arrays: elements; scalars: 1 */
  const uint8_t *value;    /* scalars: the value; strings: the bytes; arrays: first element */
  size_t value_len;        /* strings: length */
  uint64_t *str_offsets;   /* string arrays: offset of each element's length field from `value` */
} gguf_kv;

typedef struct gguf_tensor {
  char *name;
  uint32_t n_dims;
  uint64_t ne[GGUF_MAX_DIMS];
  uint32_t type;
  uint64_t offset; /* relative to the data section */
  const void *data;
  size_t bytes;
} gguf_tensor;

struct ftq_gguf {
  ftq_mapped_file map;
  const uint8_t *base;
  size_t size;
  char *path;
  uint32_t version;
  gguf_kv *kv;
  uint64_t n_kv;
  size_t *kv_sorted; /* kv indices sorted by key */
  gguf_tensor *t;
  uint64_t n_t;
  size_t *t_sorted; /* tensor indices sorted by name */
  uint64_t alignment;
  uint64_t data_start;
};

/* ---------------------------------------------------------------------- */
/* Bounds-checked cursor                                                    */

typedef struct rd {
  const uint8_t *p;
  size_t pos, size;
  const char *what;
} rd;

static size_t rd_left(const rd *r) { return r->size - r->pos; }

static ftq_status rd_short(const rd *r, const char *field, uint64_t need) {
  return ftq_error(FTQ_ERR_FORMAT, "%s: truncated at byte %zu reading %s (%llu bytes needed, %zu left)", r->what, r->pos,
                   field, (unsigned long long)need, rd_left(r));
}

static ftq_status rd_u32(rd *r, const char *field, uint32_t *v) {
  if (rd_left(r) < 4) return rd_short(r, field, 4);
  const uint8_t *p = r->p + r->pos;
  *v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
  r->pos += 4;
  return FTQ_OK;
}

static ftq_status rd_u64(rd *r, const char *field, uint64_t *v) {
  if (rd_left(r) < 8) return rd_short(r, field, 8);
  uint64_t x = 0;
  for (int i = 7; i >= 0; i--) x = x << 8 | r->p[r->pos + (size_t)i];
  *v = x;
  r->pos += 8;
  return FTQ_OK;
}

/* A GGUF string: u64 length + bytes. */
static ftq_status rd_str(rd *r, const char *field, const char **s, size_t *len) {
  uint64_t n;
  FTQ_TRY(rd_u64(r, field, &n));
  if (n > rd_left(r))
    return ftq_error(FTQ_ERR_FORMAT, "%s: %s at byte %zu has length %llu beyond the end of the file (%zu bytes left)",
                     r->what, field, r->pos - 8, (unsigned long long)n, rd_left(r));
  *s = (const char *)r->p + r->pos;
  *len = (size_t)n;
  r->pos += (size_t)n;
  return FTQ_OK;
}

static size_t scalar_size(ftq_gguf_type t) {
  switch (t) {
    case FTQ_GGUF_UINT8: case FTQ_GGUF_INT8: case FTQ_GGUF_BOOL: return 1;
    case FTQ_GGUF_UINT16: case FTQ_GGUF_INT16: return 2;
    case FTQ_GGUF_UINT32: case FTQ_GGUF_INT32: case FTQ_GGUF_FLOAT32: return 4;
    case FTQ_GGUF_UINT64: case FTQ_GGUF_INT64: case FTQ_GGUF_FLOAT64: return 8;
    default: return 0;
  }
}

static const char *type_name(ftq_gguf_type t) {
  static const char *names[] = {"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
                                "bool", "string", "array", "uint64", "int64", "float64"};
  return (unsigned)t <= FTQ_GGUF_FLOAT64 ? names[t] : "?";
}

/* ---------------------------------------------------------------------- */
/* Parsing                                                                  */

static int cmp_key(const gguf_kv *a, const gguf_kv *b) {
  size_t n = a->key_len < b->key_len ? a->key_len : b->key_len;
  int c = memcmp(a->key, b->key, n);
  return c ? c : (a->key_len < b->key_len ? -1 : a->key_len > b->key_len);
}
static int cmp_kv_idx(const void *x, const void *y, void *base) {
  const gguf_kv *kv = base;
  return cmp_key(&kv[*(const size_t *)x], &kv[*(const size_t *)y]);
}
static int cmp_t_idx(const void *x, const void *y, void *base) {
  const gguf_tensor *t = base;
  return strcmp(t[*(const size_t *)x].name, t[*(const size_t *)y].name);
}
static int cmp_t_off(const void *x, const void *y, void *base) {
  const gguf_tensor *t = base;
  uint64_t a = t[*(const size_t *)x].offset, b = t[*(const size_t *)y].offset;
  return a < b ? -1 : a > b;
}

static ftq_status parse_value(ftq_gguf *g, rd *r, gguf_kv *kv) {
  uint32_t type;
  FTQ_TRY(rd_u32(r, "a value type", &type));
  if (type > FTQ_GGUF_FLOAT64)
    return ftq_error(FTQ_ERR_FORMAT, "%s: key '%.*s' has unknown value type %u", r->what, (int)kv->key_len, kv->key, type);
  kv->type = (ftq_gguf_type)type;
  kv->elem_type = kv->type;
  kv->count = 1;
  if (type == FTQ_GGUF_STRING) {
    const char *s;
    FTQ_TRY(rd_str(r, "a string value", &s, &kv->value_len));
    kv->value = (const uint8_t *)s;
    return FTQ_OK;
  }
  if (type != FTQ_GGUF_ARRAY) {
    size_t n = scalar_size(kv->type);
    if (rd_left(r) < n) return rd_short(r, "a value", n);
    kv->value = r->p + r->pos;
    if (type == FTQ_GGUF_BOOL && *kv->value > 1)
      return ftq_error(FTQ_ERR_FORMAT, "%s: key '%.*s': bool value %u is neither 0 nor 1", r->what, (int)kv->key_len,
                       kv->key, *kv->value);
    r->pos += n;
    return FTQ_OK;
  }
  uint32_t et;
  FTQ_TRY(rd_u32(r, "an array element type", &et));
  FTQ_TRY(rd_u64(r, "an array length", &kv->count));
  if (et > FTQ_GGUF_FLOAT64)
    return ftq_error(FTQ_ERR_FORMAT, "%s: key '%.*s': unknown array element type %u", r->what, (int)kv->key_len, kv->key, et);
  if (et == FTQ_GGUF_ARRAY)
    return ftq_error(FTQ_ERR_UNSUPPORTED, "%s: key '%.*s': arrays of arrays are not supported", r->what, (int)kv->key_len,
                     kv->key);
  kv->elem_type = (ftq_gguf_type)et;
  kv->value = r->p + r->pos;
  if (et == FTQ_GGUF_STRING) {
    /* every string takes at least its 8-byte length: bound the count first */
    if (kv->count > rd_left(r) / 8)
      return ftq_error(FTQ_ERR_FORMAT, "%s: key '%.*s': %llu strings cannot fit in the %zu bytes left", r->what,
                       (int)kv->key_len, kv->key, (unsigned long long)kv->count, rd_left(r));
    kv->str_offsets = ftq_malloc((size_t)(kv->count ? kv->count : 1) * sizeof *kv->str_offsets, "GGUF string array");
    if (!kv->str_offsets) return FTQ_ERR_OUT_OF_MEMORY;
    size_t start = r->pos;
    for (uint64_t i = 0; i < kv->count; i++) {
      kv->str_offsets[i] = r->pos - start;
      const char *s;
      size_t len;
      ftq_status st = rd_str(r, "an array string", &s, &len);
      if (st != FTQ_OK) return ftq_error_context(st, "key '%.*s' element %llu", (int)kv->key_len, kv->key, (unsigned long long)i);
    }
    return FTQ_OK;
  }
  size_t es = scalar_size(kv->elem_type);
  if (kv->count > rd_left(r) / es)
    return ftq_error(FTQ_ERR_FORMAT, "%s: key '%.*s': %llu %s elements run past the end of the file", r->what,
                     (int)kv->key_len, kv->key, (unsigned long long)kv->count, type_name(kv->elem_type));
  if (et == FTQ_GGUF_BOOL)
    for (uint64_t i = 0; i < kv->count; i++)
      if (kv->value[i] > 1)
        return ftq_error(FTQ_ERR_FORMAT, "%s: key '%.*s': bool element %llu is %u", r->what, (int)kv->key_len, kv->key,
                         (unsigned long long)i, kv->value[i]);
  r->pos += (size_t)(kv->count * es);
  (void)g;
  return FTQ_OK;
}

static const gguf_kv *find_kv(const ftq_gguf *g, const char *key) {
  gguf_kv probe = {.key = key, .key_len = strlen(key)};
  size_t lo = 0, hi = (size_t)g->n_kv;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = cmp_key(&g->kv[g->kv_sorted[mid]], &probe);
    if (c == 0) return &g->kv[g->kv_sorted[mid]];
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  return NULL;
}

static ftq_status parse_tensor_info(ftq_gguf *g, rd *r, uint64_t i, gguf_tensor *t) {
  const char *name;
  size_t len;
  FTQ_TRY(rd_str(r, "a tensor name", &name, &len));
  if (len == 0 || len > GGUF_MAX_NAME || memchr(name, 0, len))
    return ftq_error(FTQ_ERR_FORMAT, "%s: tensor %llu has an invalid name (length %zu)", r->what, (unsigned long long)i, len);
  t->name = strndup(name, len);
  if (!t->name) return ftq_error(FTQ_ERR_OUT_OF_MEMORY, "out of host memory reading tensor names");
  FTQ_TRY(rd_u32(r, "a tensor's dimension count", &t->n_dims));
  if (t->n_dims > GGUF_MAX_DIMS)
    return ftq_error(FTQ_ERR_FORMAT, "%s: tensor '%s' has %u dimensions (at most %d)", r->what, t->name, t->n_dims,
                     GGUF_MAX_DIMS);
  for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
  for (uint32_t d = 0; d < t->n_dims; d++) FTQ_TRY(rd_u64(r, "a tensor dimension", &t->ne[d]));
  FTQ_TRY(rd_u32(r, "a tensor type", &t->type));
  FTQ_TRY(rd_u64(r, "a tensor offset", &t->offset));
  const ftq_ggml_type_info *ti = ftq_ggml_type(t->type);
  if (!ti) return ftq_error(FTQ_ERR_UNSUPPORTED, "%s: tensor '%s' has unknown GGML type %u", r->what, t->name, t->type);
  if (t->ne[0] % ti->block)
    return ftq_error(FTQ_ERR_FORMAT, "%s: tensor '%s': first dimension %llu is not a multiple of the %s block size %u",
                     r->what, t->name, (unsigned long long)t->ne[0], ti->name, ti->block);
  size_t bytes = (size_t)(t->ne[0] / ti->block);
  int ok = t->ne[0] / ti->block <= SIZE_MAX && ftq_mul_size(bytes, ti->type_size, &bytes);
  for (int d = 1; d < GGUF_MAX_DIMS && ok; d++) ok = t->ne[d] <= SIZE_MAX && ftq_mul_size(bytes, (size_t)t->ne[d], &bytes);
  for (int d = 0; d < GGUF_MAX_DIMS && ok; d++) ok = t->ne[d] <= (uint64_t)INT64_MAX;
  if (!ok) return ftq_error(FTQ_ERR_FORMAT, "%s: tensor '%s': dimensions overflow", r->what, t->name);
  t->bytes = bytes;
  (void)g;
  return FTQ_OK;
}

static ftq_status parse(ftq_gguf *g) {
  rd r = {g->base, 0, g->size, g->path};
  if (g->size < 24 || memcmp(g->base, GGUF_MAGIC, 4) != 0)
    return ftq_error(FTQ_ERR_FORMAT, "%s: not a GGUF file (no \"GGUF\" magic)", g->path);
  r.pos = 4;
  FTQ_TRY(rd_u32(&r, "the version", &g->version));
  if (g->version == 0x02000000u || g->version == 0x03000000u)
    return ftq_error(FTQ_ERR_UNSUPPORTED, "%s: big-endian GGUF files are not supported", g->path);
  if (g->version == 1) return ftq_error(FTQ_ERR_UNSUPPORTED, "%s: GGUF version 1 is not supported (v2 and v3 are)", g->path);
  if (g->version != 2 && g->version != 3)
    return ftq_error(FTQ_ERR_UNSUPPORTED, "%s: GGUF version %u is not supported (v2 and v3 are)", g->path, g->version);
  FTQ_TRY(rd_u64(&r, "the tensor count", &g->n_t));
  FTQ_TRY(rd_u64(&r, "the key/value count", &g->n_kv));
  /* smallest key/value: 8 (key length) + 1 (key) + 4 (type) + 1 (value);
   * smallest tensor info: 8 + 1 + 4 + 4 + 8 */
  if (g->n_kv > rd_left(&r) / 14)
    return ftq_error(FTQ_ERR_FORMAT, "%s: %llu key/value pairs cannot fit in a %zu-byte file", g->path,
                     (unsigned long long)g->n_kv, g->size);
  if (g->n_t > rd_left(&r) / 25)
    return ftq_error(FTQ_ERR_FORMAT, "%s: %llu tensor infos cannot fit in a %zu-byte file", g->path,
                     (unsigned long long)g->n_t, g->size);
  g->kv = ftq_calloc((size_t)(g->n_kv ? g->n_kv : 1), sizeof *g->kv, "GGUF metadata");
  g->kv_sorted = ftq_malloc((size_t)(g->n_kv ? g->n_kv : 1) * sizeof *g->kv_sorted, "GGUF metadata");
  g->t = ftq_calloc((size_t)(g->n_t ? g->n_t : 1), sizeof *g->t, "GGUF tensor infos");
  g->t_sorted = ftq_malloc((size_t)(g->n_t ? g->n_t : 1) * sizeof *g->t_sorted, "GGUF tensor infos");
  if (!g->kv || !g->kv_sorted || !g->t || !g->t_sorted) return FTQ_ERR_OUT_OF_MEMORY;

  for (uint64_t i = 0; i < g->n_kv; i++) {
    gguf_kv *kv = &g->kv[i];
    FTQ_TRY(rd_str(&r, "a key", &kv->key, &kv->key_len));
    if (kv->key_len == 0) return ftq_error(FTQ_ERR_FORMAT, "%s: key/value pair %llu has an empty key", g->path, (unsigned long long)i);
    FTQ_TRY(parse_value(g, &r, kv));
    g->kv_sorted[i] = (size_t)i;
  }
  qsort_r(g->kv_sorted, (size_t)g->n_kv, sizeof *g->kv_sorted, cmp_kv_idx, g->kv);
  for (uint64_t i = 1; i < g->n_kv; i++) {
    const gguf_kv *a = &g->kv[g->kv_sorted[i - 1]], *b = &g->kv[g->kv_sorted[i]];
    if (cmp_key(a, b) == 0)
      return ftq_error(FTQ_ERR_FORMAT, "%s: key '%.*s' appears twice", g->path, (int)(a->key_len > 200 ? 200 : a->key_len),
                       a->key);
  }

  g->alignment = GGUF_DEFAULT_ALIGNMENT;
  const gguf_kv *al = find_kv(g, "general.alignment");
  if (al) {
    uint32_t a = 0;
    if (al->type != FTQ_GGUF_UINT32)
      return ftq_error(FTQ_ERR_FORMAT, "%s: general.alignment must be a uint32 (is %s)", g->path, type_name(al->type));
    memcpy(&a, al->value, 4);
    if (a == 0 || (a & (a - 1)))
      return ftq_error(FTQ_ERR_FORMAT, "%s: general.alignment = %u is not a power of two", g->path, a);
    g->alignment = a;
  }

  for (uint64_t i = 0; i < g->n_t; i++) {
    FTQ_TRY(parse_tensor_info(g, &r, i, &g->t[i]));
    g->t_sorted[i] = (size_t)i;
  }
  qsort_r(g->t_sorted, (size_t)g->n_t, sizeof *g->t_sorted, cmp_t_idx, g->t);
  for (uint64_t i = 1; i < g->n_t; i++)
    if (strcmp(g->t[g->t_sorted[i - 1]].name, g->t[g->t_sorted[i]].name) == 0)
      return ftq_error(FTQ_ERR_FORMAT, "%s: tensor '%s' appears twice", g->path, g->t[g->t_sorted[i]].name);

  /* the data section starts at the next multiple of the alignment */
  uint64_t pad = (g->alignment - r.pos % g->alignment) % g->alignment;
  g->data_start = r.pos + pad;
  if (g->n_t == 0) return FTQ_OK;
  if (g->data_start > g->size)
    return ftq_error(FTQ_ERR_FORMAT, "%s: file ends before its tensor data section (at byte %llu)", g->path,
                     (unsigned long long)g->data_start);
  uint64_t data_len = g->size - g->data_start;
  size_t *by_off = ftq_malloc((size_t)g->n_t * sizeof *by_off, "GGUF tensor order");
  if (!by_off) return FTQ_ERR_OUT_OF_MEMORY;
  ftq_status st = FTQ_OK;
  for (uint64_t i = 0; i < g->n_t && st == FTQ_OK; i++) {
    gguf_tensor *t = &g->t[i];
    by_off[i] = (size_t)i;
    if (t->offset % g->alignment)
      st = ftq_error(FTQ_ERR_FORMAT, "%s: tensor '%s': data offset %llu is not a multiple of the alignment %llu", g->path,
                     t->name, (unsigned long long)t->offset, (unsigned long long)g->alignment);
    else if (t->offset > data_len || t->bytes > data_len - t->offset)
      st = ftq_error(FTQ_ERR_FORMAT, "%s: tensor '%s': data [%llu, +%zu) runs past the end of the file (data section is %llu bytes)",
                     g->path, t->name, (unsigned long long)t->offset, t->bytes, (unsigned long long)data_len);
    else
      t->data = g->base + g->data_start + t->offset;
  }
  if (st == FTQ_OK) {
    qsort_r(by_off, (size_t)g->n_t, sizeof *by_off, cmp_t_off, g->t);
    for (uint64_t i = 1; i < g->n_t && st == FTQ_OK; i++) {
      const gguf_tensor *a = &g->t[by_off[i - 1]], *b = &g->t[by_off[i]];
      if (a->bytes && b->bytes && b->offset < a->offset + a->bytes)
        st = ftq_error(FTQ_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap (offsets %llu+%zu and %llu)", g->path, a->name,
                       b->name, (unsigned long long)a->offset, a->bytes, (unsigned long long)b->offset);
    }
  }
  free(by_off);
  return st;
}

void ftq_gguf_close(ftq_gguf *g) {
  if (!g) return;
  if (g->kv)
    for (uint64_t i = 0; i < g->n_kv; i++) free(g->kv[i].str_offsets);
  if (g->t)
    for (uint64_t i = 0; i < g->n_t; i++) free(g->t[i].name);
  free(g->kv);
  free(g->kv_sorted);
  free(g->t);
  free(g->t_sorted);
  free(g->path);
  ftq_file_unmap(&g->map);
  free(g);
}

ftq_status ftq_gguf_open_memory(const void *data, size_t size, const char *what, ftq_gguf **out) {
  *out = NULL;
  ftq_gguf *g = ftq_calloc(1, sizeof *g, "GGUF reader");
  if (!g) return FTQ_ERR_OUT_OF_MEMORY;
  g->path = ftq_strdup(what ? what : "GGUF", "GGUF name");
  g->base = data;
  g->size = size;
  ftq_status st = g->path ? parse(g) : FTQ_ERR_OUT_OF_MEMORY;
  if (st != FTQ_OK) {
    ftq_gguf_close(g);
    return st;
  }
  *out = g;
  return FTQ_OK;
}

ftq_status ftq_gguf_open(const char *path, ftq_gguf **out) {
  *out = NULL;
  ftq_mapped_file map;
  FTQ_TRY(ftq_file_map(path, &map));
  ftq_gguf *g;
  ftq_status st = ftq_gguf_open_memory(map.data, map.size, path, &g);
  if (st != FTQ_OK) {
    ftq_file_unmap(&map);
    return st;
  }
  g->map = map;
  *out = g;
  return FTQ_OK;
}

const char *ftq_gguf_path(const ftq_gguf *g) { return g->path; }
uint32_t ftq_gguf_version(const ftq_gguf *g) { return g->version; }
uint64_t ftq_gguf_alignment(const ftq_gguf *g) { return g->alignment; }

/* ---------------------------------------------------------------------- */
/* Metadata                                                                 */

uint64_t ftq_gguf_key_count(const ftq_gguf *g) { return g->n_kv; }

ftq_status ftq_gguf_key_at(const ftq_gguf *g, uint64_t i, const char **key, size_t *len) {
  if (i >= g->n_kv) return ftq_error(FTQ_ERR_NOT_FOUND, "%s: key index %llu out of range", g->path, (unsigned long long)i);
  *key = g->kv[i].key;
  *len = g->kv[i].key_len;
  return FTQ_OK;
}

static ftq_status lookup(const ftq_gguf *g, const char *key, const gguf_kv **kv) {
  *kv = key ? find_kv(g, key) : NULL;
  if (!*kv) return ftq_error(FTQ_ERR_NOT_FOUND, "%s: no key '%s'", g->path, key ? key : "(null)");
  return FTQ_OK;
}

ftq_status ftq_gguf_key_type(const ftq_gguf *g, const char *key, ftq_gguf_type *type, ftq_gguf_type *elem_type,
                             uint64_t *count) {
  const gguf_kv *kv;
  FTQ_TRY(lookup(g, key, &kv));
  if (type) *type = kv->type;
  if (elem_type) *elem_type = kv->elem_type;
  if (count) *count = kv->count;
  return FTQ_OK;
}

/* Reads a scalar of integer type `t` at p as int64 (0 if it does not fit). */
static int scalar_int(ftq_gguf_type t, const uint8_t *p, int64_t *out) {
  uint64_t u = 0;
  size_t n = scalar_size(t);
  for (size_t i = n; i-- > 0;) u = u << 8 | p[i];
  switch (t) {
    case FTQ_GGUF_UINT8: case FTQ_GGUF_UINT16: case FTQ_GGUF_UINT32: *out = (int64_t)u; return 1;
    case FTQ_GGUF_UINT64:
      if (u > (uint64_t)INT64_MAX) return 0;
      *out = (int64_t)u;
      return 1;
    case FTQ_GGUF_INT8: *out = (int8_t)u; return 1;
    case FTQ_GGUF_INT16: *out = (int16_t)u; return 1;
    case FTQ_GGUF_INT32: *out = (int32_t)u; return 1;
    case FTQ_GGUF_INT64: *out = (int64_t)u; return 1;
    default: return 0;
  }
}

ftq_status ftq_gguf_get_int(const ftq_gguf *g, const char *key, int64_t *out) {
  const gguf_kv *kv;
  FTQ_TRY(lookup(g, key, &kv));
  if (kv->type == FTQ_GGUF_ARRAY || kv->type == FTQ_GGUF_STRING || kv->type == FTQ_GGUF_BOOL ||
      kv->type == FTQ_GGUF_FLOAT32 || kv->type == FTQ_GGUF_FLOAT64)
    return ftq_error(FTQ_ERR_FORMAT, "%s: key '%s' is a %s, not an integer", g->path, key, type_name(kv->type));
  if (!scalar_int(kv->type, kv->value, out))
    return ftq_error(FTQ_ERR_FORMAT, "%s: key '%s': value does not fit a signed 64-bit integer", g->path, key);
  return FTQ_OK;
}

ftq_status ftq_gguf_get_float(const ftq_gguf *g, const char *key, double *out) {
  const gguf_kv *kv;
  FTQ_TRY(lookup(g, key, &kv));
  if (kv->type == FTQ_GGUF_FLOAT32) {
    float f;
    memcpy(&f, kv->value, 4);
    *out = f;
    return FTQ_OK;
  }
  if (kv->type == FTQ_GGUF_FLOAT64) {
    memcpy(out, kv->value, 8);
    return FTQ_OK;
  }
  int64_t i;
  if (kv->type != FTQ_GGUF_ARRAY && kv->type != FTQ_GGUF_STRING && kv->type != FTQ_GGUF_BOOL &&
      scalar_int(kv->type, kv->value, &i)) {
    *out = (double)i;
    return FTQ_OK;
  }
  return ftq_error(FTQ_ERR_FORMAT, "%s: key '%s' is a %s, not a number", g->path, key, type_name(kv->type));
}

ftq_status ftq_gguf_get_bool(const ftq_gguf *g, const char *key, int *out) {
  const gguf_kv *kv;
  FTQ_TRY(lookup(g, key, &kv));
  if (kv->type != FTQ_GGUF_BOOL)
    return ftq_error(FTQ_ERR_FORMAT, "%s: key '%s' is a %s, not a bool", g->path, key, type_name(kv->type));
  *out = kv->value[0] != 0;
  return FTQ_OK;
}

ftq_status ftq_gguf_get_string(const ftq_gguf *g, const char *key, const char **s, size_t *len) {
  const gguf_kv *kv;
  FTQ_TRY(lookup(g, key, &kv));
  if (kv->type != FTQ_GGUF_STRING)
    return ftq_error(FTQ_ERR_FORMAT, "%s: key '%s' is a %s, not a string", g->path, key, type_name(kv->type));
  *s = (const char *)kv->value;
  *len = kv->value_len;
  return FTQ_OK;
}

ftq_status ftq_gguf_get_array(const ftq_gguf *g, const char *key, ftq_gguf_type *elem_type, uint64_t *count,
                              const void **data) {
  const gguf_kv *kv;
  FTQ_TRY(lookup(g, key, &kv));
  if (kv->type != FTQ_GGUF_ARRAY)
    return ftq_error(FTQ_ERR_FORMAT, "%s: key '%s' is a %s, not an array", g->path, key, type_name(kv->type));
  if (elem_type) *elem_type = kv->elem_type;
  if (count) *count = kv->count;
  if (data) *data = kv->value;
  return FTQ_OK;
}

ftq_status ftq_gguf_get_array_string(const ftq_gguf *g, const char *key, uint64_t i, const char **s, size_t *len) {
  const gguf_kv *kv;
  FTQ_TRY(lookup(g, key, &kv));
  if (kv->type != FTQ_GGUF_ARRAY || kv->elem_type != FTQ_GGUF_STRING)
    return ftq_error(FTQ_ERR_FORMAT, "%s: key '%s' is not an array of strings", g->path, key);
  if (i >= kv->count)
    return ftq_error(FTQ_ERR_NOT_FOUND, "%s: key '%s': index %llu out of range (%llu strings)", g->path, key,
                     (unsigned long long)i, (unsigned long long)kv->count);
  const uint8_t *p = kv->value + kv->str_offsets[i];
  uint64_t n = 0;
  for (int b = 7; b >= 0; b--) n = n << 8 | p[b];
  *s = (const char *)p + 8;
  *len = (size_t)n;
  return FTQ_OK;
}

/* ---------------------------------------------------------------------- */
/* Tensors                                                                  */

uint64_t ftq_gguf_tensor_count(const ftq_gguf *g) { return g->n_t; }

ftq_status ftq_gguf_tensor_info(const ftq_gguf *g, uint64_t i, const char **name, uint32_t *ggml_type,
                                uint32_t *n_dims, uint64_t ne[4], const void **data, size_t *bytes) {
  if (i >= g->n_t)
    return ftq_error(FTQ_ERR_NOT_FOUND, "%s: tensor index %llu out of range (%llu tensors)", g->path,
                     (unsigned long long)i, (unsigned long long)g->n_t);
  const gguf_tensor *t = &g->t[i];
  if (name) *name = t->name;
  if (ggml_type) *ggml_type = t->type;
  if (n_dims) *n_dims = t->n_dims;
  if (ne) memcpy(ne, t->ne, sizeof t->ne);
  if (data) *data = t->data;
  if (bytes) *bytes = t->bytes;
  return FTQ_OK;
}

ftq_status ftq_gguf_find_tensor(const ftq_gguf *g, const char *name, uint64_t *index) {
  size_t lo = 0, hi = (size_t)g->n_t;
  while (name && lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(g->t[g->t_sorted[mid]].name, name);
    if (c == 0) {
      *index = g->t_sorted[mid];
      return FTQ_OK;
    }
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  return ftq_error(FTQ_ERR_NOT_FOUND, "%s: no tensor '%s'", g->path, name ? name : "(null)");
}

void ftq_gguf_release_tensor(const ftq_gguf *g, uint64_t i) {
  if (i < g->n_t) ftq_file_release_range(&g->map, g->t[i].data, g->t[i].bytes);
}

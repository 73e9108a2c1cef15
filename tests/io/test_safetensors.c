/* safetensors: files written by the Python `safetensors` package read back
 * exactly; the writer reproduces them byte for byte; round trips for every
 * dtype and for sharded checkpoints; every malformed-header check; atomic
 * writes. References: tests/ref/io/st/ (make_refs.py). */
#include <ctype.h>
#include <dirent.h>
#include <unistd.h>

#include "../model_load/model_test_util.h"
#include "core/error.h"
#include "core/half.h"
#include "io/file.h"
#include "io/safetensors.h"

#define REF "tests/ref/io/"

static const struct {
  const char *name;
  ftq_dtype dtype;
  int ndim;
  int64_t shape[3];
} pattern_tensors[] = {
    /* the order and shapes of make_refs.py's ST_DTYPES (salt = index) */
    {"BOOL", FTQ_DTYPE_BOOL, 2, {3, 5}}, {"U8", FTQ_DTYPE_U8, 1, {7}},      {"I8", FTQ_DTYPE_I8, 3, {2, 3, 4}},
    {"I16", FTQ_DTYPE_I16, 2, {5, 3}},   {"U16", FTQ_DTYPE_U16, 1, {4}},    {"F16", FTQ_DTYPE_F16, 2, {3, 7}},
    {"BF16", FTQ_DTYPE_BF16, 2, {6, 2}}, {"I32", FTQ_DTYPE_I32, 1, {9}},    {"U32", FTQ_DTYPE_U32, 2, {2, 2}},
    {"F32", FTQ_DTYPE_F32, 2, {4, 3}},   {"F64", FTQ_DTYPE_F64, 1, {5}},    {"I64", FTQ_DTYPE_I64, 1, {3}},
    {"U64", FTQ_DTYPE_U64, 3, {2, 1, 2}},
};
#define N_PATTERN (sizeof pattern_tensors / sizeof pattern_tensors[0])

static uint8_t *pattern(size_t n, int salt, int is_bool) {
  uint8_t *b = malloc(n + 1);
  for (size_t j = 0; j < n; j++) {
    b[j] = (uint8_t)((j * 131 + (size_t)salt * 29 + 7) & 0xFF);
    if (is_bool) b[j] &= 1;
  }
  return b;
}

static size_t numel_of(int ndim, const int64_t *shape) {
  size_t n = 1;
  for (int d = 0; d < ndim; d++) n *= (size_t)shape[d];
  return n;
}

static char tmpdir[256];

static char *tmp_path(const char *name) {
  static char buf[512];
  snprintf(buf, sizeof buf, "%s/%s", tmpdir, name);
  return buf;
}

static int count_temp_files(void) {
  DIR *d = opendir(tmpdir);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (strstr(e->d_name, ".tmp.")) n++;
  closedir(d);
  return n;
}

static int files_equal(const char *a, const char *b) {
  size_t la, lb;
  void *x = test_read_file(a, &la), *y = test_read_file(b, &lb);
  int eq = la == lb && memcmp(x, y, la) == 0;
  if (!eq) fprintf(stderr, "%s (%zu bytes) differs from %s (%zu bytes)\n", a, la, b, lb);
  free(x);
  free(y);
  return eq;
}

/* ---- reading the Python-written file, and writing it again ---- */

static void test_python_file(void) {
  ftq_safetensors *f;
  REQUIRE_OK(ftq_safetensors_open(REF "st/all_dtypes.safetensors", &f));
  CHECK(ftq_safetensors_count(f) == N_PATTERN + 3);
  CHECK(ftq_safetensors_metadata(f, "format") && strcmp(ftq_safetensors_metadata(f, "format"), "pt") == 0);
  CHECK(ftq_safetensors_metadata(f, "nope") == NULL);
  ftq_st_writer *w;
  REQUIRE_OK(ftq_st_writer_create(&w));
  uint8_t *bufs[N_PATTERN];
  for (size_t k = 0; k < N_PATTERN; k++) {
    char name[32];
    snprintf(name, sizeof name, "t_%s", pattern_tensors[k].name);
    for (char *p = name; *p; p++) *p = (char)tolower((unsigned char)*p);
    const ftq_st_tensor *t = ftq_safetensors_find(f, name);
    CHECK_MSG(t != NULL, "%s missing", name);
    if (!t) continue;
    size_t n = numel_of(pattern_tensors[k].ndim, pattern_tensors[k].shape);
    bufs[k] = pattern(n * ftq_dtype_size(pattern_tensors[k].dtype), (int)k, pattern_tensors[k].dtype == FTQ_DTYPE_BOOL);
    CHECK(strcmp(t->dtype_name, pattern_tensors[k].name) == 0);
    CHECK(t->dtype == pattern_tensors[k].dtype);
    CHECK(t->ndim == pattern_tensors[k].ndim);
    for (int d = 0; d < t->ndim; d++) CHECK(t->shape[d] == pattern_tensors[k].shape[d]);
    CHECK(t->numel == n);
    CHECK(t->bytes == n * ftq_dtype_size(t->dtype));
    CHECK_MSG(memcmp(t->data, bufs[k], t->bytes) == 0, "%s data", name);
    CHECK(((uintptr_t)t->data % t->elem_size) == 0);
    CHECK_OK(ftq_st_writer_add(w, name, pattern_tensors[k].dtype, pattern_tensors[k].ndim, pattern_tensors[k].shape,
                               bufs[k]));
  }
  const ftq_st_tensor *s = ftq_safetensors_find(f, "scalar_f32");
  CHECK(s && s->ndim == 0 && s->numel == 1 && *(const float *)s->data == 1.5f);
  const ftq_st_tensor *e = ftq_safetensors_find(f, "empty_f32");
  CHECK(e && e->ndim == 2 && e->shape[0] == 0 && e->shape[1] == 4 && e->bytes == 0);
  const ftq_st_tensor *z = ftq_safetensors_find(f, "zz.last");
  CHECK(z && z->dtype == FTQ_DTYPE_I64 && ((const int64_t *)z->data)[3] == 3);
  /* tensors come in file order */
  for (size_t i = 1; i < ftq_safetensors_count(f); i++)
    CHECK(ftq_safetensors_tensor(f, i)->file_offset >= ftq_safetensors_tensor(f, i - 1)->file_offset);

  float scalar = 1.5f;
  int64_t empty_shape[2] = {0, 4}, last_shape[1] = {4}, last[4] = {0, 1, 2, 3};
  CHECK_OK(ftq_st_writer_add(w, "scalar_f32", FTQ_DTYPE_F32, 0, NULL, &scalar));
  CHECK_OK(ftq_st_writer_add(w, "empty_f32", FTQ_DTYPE_F32, 2, empty_shape, NULL));
  CHECK_OK(ftq_st_writer_add(w, "zz.last", FTQ_DTYPE_I64, 1, last_shape, last));
  /* errors of the writer */
  CHECK_STATUS(ftq_st_writer_add(w, "zz.last", FTQ_DTYPE_I64, 1, last_shape, last), FTQ_ERR_INVALID_ARGUMENT);
  CHECK_ERROR_MENTIONS("added twice");
  CHECK_STATUS(ftq_st_writer_add(w, "", FTQ_DTYPE_I64, 1, last_shape, last), FTQ_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(ftq_st_writer_add(w, "__metadata__", FTQ_DTYPE_I64, 1, last_shape, last), FTQ_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(ftq_st_writer_add(w, "bad", FTQ_DTYPE_COUNT, 1, last_shape, last), FTQ_ERR_INVALID_ARGUMENT);
  CHECK_OK(ftq_st_writer_write(w, tmp_path("all_dtypes.safetensors")));
  CHECK(files_equal(tmp_path("all_dtypes.safetensors"), REF "st/all_dtypes.safetensors"));
  ftq_st_writer_destroy(w);
  for (size_t k = 0; k < N_PATTERN; k++) free(bufs[k]);
  ftq_safetensors_close(f);

  /* no metadata, names that JSON must escape */
  REQUIRE_OK(ftq_st_writer_create(&w));
  CHECK_OK(ftq_st_writer_set_metadata(w, "format", NULL));
  uint16_t ones[2] = {0x3c00, 0x3c00};
  float zero = 0;
  int64_t two[1] = {2}, one[1] = {1};
  CHECK_OK(ftq_st_writer_add(w, "quote\"back\\slash\ttab", FTQ_DTYPE_F16, 1, two, ones));
  CHECK_OK(ftq_st_writer_add(w, "a", FTQ_DTYPE_F32, 1, one, &zero));
  CHECK_OK(ftq_st_writer_write(w, tmp_path("escapes.safetensors")));
  CHECK(files_equal(tmp_path("escapes.safetensors"), REF "st/escapes.safetensors"));
  ftq_st_writer_destroy(w);
  REQUIRE_OK(ftq_safetensors_open(REF "st/escapes.safetensors", &f));
  CHECK(ftq_safetensors_find(f, "quote\"back\\slash\ttab") != NULL);
  CHECK(ftq_safetensors_metadata(f, "format") == NULL);
  ftq_safetensors_close(f);
}

/* ---- round trips ---- */

typedef struct fill_ctx {
  const uint8_t *src;
  int calls;
} fill_ctx;

static ftq_status fill_copy(void *user, const char *name, void *dst, size_t bytes) {
  fill_ctx *c = user;
  (void)name;
  memcpy(dst, c->src, bytes);
  c->calls++;
  return FTQ_OK;
}

static ftq_status fill_fail(void *user, const char *name, void *dst, size_t bytes) {
  (void)user;
  (void)dst;
  (void)bytes;
  return ftq_error(FTQ_ERR_IO, "fill for %s failed on purpose", name);
}

static void test_round_trips(void) {
  static const ftq_dtype all[] = {FTQ_DTYPE_F32, FTQ_DTYPE_F16, FTQ_DTYPE_BF16, FTQ_DTYPE_F64, FTQ_DTYPE_I8,
                                  FTQ_DTYPE_U8,  FTQ_DTYPE_I16, FTQ_DTYPE_U16,  FTQ_DTYPE_I32, FTQ_DTYPE_U32,
                                  FTQ_DTYPE_I64, FTQ_DTYPE_U64, FTQ_DTYPE_BOOL};
  const size_t nd = sizeof all / sizeof all[0];
  uint64_t seed = 42;
  ftq_st_writer *w;
  REQUIRE_OK(ftq_st_writer_create(&w));
  uint8_t *data[2 * 13];
  int64_t shapes[2 * 13][3];
  fill_ctx fc[13];
  for (size_t k = 0; k < nd; k++) {
    for (int v = 0; v < 2; v++) { /* v = 0: from a buffer; v = 1: through a fill callback */
      size_t i = 2 * k + (size_t)v;
      shapes[i][0] = 1 + (int64_t)(test_rand_u64(&seed) % 5);
      shapes[i][1] = 1 + (int64_t)(test_rand_u64(&seed) % 7);
      shapes[i][2] = 3;
      size_t bytes = (size_t)(shapes[i][0] * shapes[i][1] * 3) * ftq_dtype_size(all[k]);
      data[i] = malloc(bytes);
      for (size_t b = 0; b < bytes; b++) data[i][b] = (uint8_t)test_rand_u64(&seed);
      if (all[k] == FTQ_DTYPE_BOOL)
        for (size_t b = 0; b < bytes; b++) data[i][b] &= 1;
      char name[64];
      snprintf(name, sizeof name, "layer.%zu.%s.%s", k, ftq_dtype_name(all[k]), v ? "fn" : "buf");
      if (v) {
        fc[k] = (fill_ctx){data[i], 0};
        CHECK_OK(ftq_st_writer_add_fn(w, name, all[k], 3, shapes[i], fill_copy, &fc[k]));
      } else {
        CHECK_OK(ftq_st_writer_add(w, name, all[k], 3, shapes[i], data[i]));
      }
    }
  }
  CHECK_OK(ftq_st_writer_set_metadata(w, "note", "round trip"));
  CHECK_OK(ftq_st_writer_write(w, tmp_path("rt.safetensors")));
  for (size_t k = 0; k < nd; k++) CHECK(fc[k].calls == 1);
  CHECK(count_temp_files() == 0);
  ftq_safetensors *f;
  REQUIRE_OK(ftq_safetensors_open(tmp_path("rt.safetensors"), &f));
  CHECK(ftq_safetensors_count(f) == 2 * nd);
  CHECK(strcmp(ftq_safetensors_metadata(f, "note"), "round trip") == 0);
  for (size_t k = 0; k < nd; k++) {
    for (int v = 0; v < 2; v++) {
      size_t i = 2 * k + (size_t)v;
      char name[64];
      snprintf(name, sizeof name, "layer.%zu.%s.%s", k, ftq_dtype_name(all[k]), v ? "fn" : "buf");
      const ftq_st_tensor *t = ftq_safetensors_find(f, name);
      CHECK_MSG(t && t->dtype == all[k] && t->ndim == 3 && t->shape[0] == shapes[i][0] && t->shape[1] == shapes[i][1] &&
                    memcmp(t->data, data[i], t->bytes) == 0,
                "round trip of %s", name);
    }
  }
  /* wider dtypes come first in the file (the Python package's order) */
  for (size_t i = 1; i < ftq_safetensors_count(f); i++)
    CHECK(ftq_safetensors_tensor(f, i - 1)->elem_size >= ftq_safetensors_tensor(f, i)->elem_size);
  ftq_safetensors_close(f);

  /* sharded: small shards, read back through the index */
  int shards = 0;
  CHECK_OK(ftq_st_writer_write_sharded(w, tmpdir, "model", 600, &shards));
  CHECK(shards > 2);
  ftq_st_set *set;
  REQUIRE_OK(ftq_st_set_open(tmpdir, &set));
  CHECK((int)ftq_st_set_file_count(set) == shards);
  CHECK(ftq_st_set_count(set) == 2 * nd);
  for (size_t k = 0; k < nd; k++) {
    char name[64];
    snprintf(name, sizeof name, "layer.%zu.%s.buf", k, ftq_dtype_name(all[k]));
    const ftq_st_tensor *t = ftq_st_set_find(set, name);
    CHECK_MSG(t && memcmp(t->data, data[2 * k], t->bytes) == 0, "sharded %s", name);
  }
  ftq_st_set_close(set);
  /* a failing fill leaves nothing behind and keeps the old file */
  ftq_st_writer *w2;
  REQUIRE_OK(ftq_st_writer_create(&w2));
  int64_t one[1] = {1};
  CHECK_OK(ftq_st_writer_add_fn(w2, "x", FTQ_DTYPE_F32, 1, one, fill_fail, NULL));
  CHECK_STATUS(ftq_st_writer_write(w2, tmp_path("rt.safetensors")), FTQ_ERR_IO);
  CHECK_ERROR_MENTIONS("failed on purpose");
  CHECK(count_temp_files() == 0);
  REQUIRE_OK(ftq_safetensors_open(tmp_path("rt.safetensors"), &f));
  CHECK(ftq_safetensors_count(f) == 2 * nd);
  ftq_safetensors_close(f);
  CHECK_STATUS(ftq_st_writer_write(w2, "/nonexistent-dir/x.safetensors"), FTQ_ERR_IO);
  CHECK_ERROR_MENTIONS("/nonexistent-dir/x.safetensors");
  ftq_st_writer_destroy(w2);
  ftq_st_writer_destroy(w);
  for (size_t i = 0; i < 2 * nd; i++) free(data[i]);
}

/* ---- the transformers-written sharded checkpoint ---- */

static void test_transformers_shards(void) {
  ftq_st_set *set;
  REQUIRE_OK(ftq_st_set_open(REF "tiny_llama_sharded", &set));
  CHECK(ftq_st_set_file_count(set) == 6);
  json_t *ref = test_load_json(REF "tiny_llama_sharded.stats.json");
  json_t *tensors = json_object_get(ref, "tensors");
  CHECK(ftq_st_set_count(set) == json_object_size(tensors));
  const char *key;
  json_t *val;
  json_object_foreach(tensors, key, val) {
    const ftq_st_tensor *t = ftq_st_set_find(set, key);
    CHECK_MSG(t && t->dtype == FTQ_DTYPE_F16, "%s", key);
    if (!t) continue;
    float *x = malloc(t->numel * sizeof *x + 1);
    for (size_t i = 0; i < t->numel; i++) x[i] = ftq_f16_to_f32(((const uint16_t *)t->data)[i]);
    test_failures += test_check_stats(key, x, t->numel, val);
    free(x);
  }
  json_decref(ref);
  ftq_st_set_close(set);
  /* the index file itself, and a shard alone */
  REQUIRE_OK(ftq_st_set_open(REF "tiny_llama_sharded/model.safetensors.index.json", &set));
  CHECK(ftq_st_set_file_count(set) == 6);
  ftq_st_set_close(set);
  REQUIRE_OK(ftq_st_set_open(REF "tiny_llama_sharded/model-00002-of-00006.safetensors", &set));
  CHECK(ftq_st_set_file_count(set) == 1);
  ftq_st_set_close(set);
  REQUIRE_OK(ftq_st_set_open(REF "tiny_llama", &set)); /* single model.safetensors */
  CHECK(ftq_st_set_count(set) == 21);
  ftq_st_set_close(set);
}

/* ---- malformed headers ---- */

/* A file image: 8-byte length, header (padded to `pad` with spaces), data. */
static uint8_t *image(const char *header, size_t pad_to, size_t data_len, size_t *size) {
  size_t h = strlen(header), hp = h;
  while (pad_to && hp % pad_to) hp++;
  *size = 8 + hp + data_len;
  uint8_t *b = calloc(1, *size + 1);
  for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)hp >> (8 * i));
  memcpy(b + 8, header, h);
  memset(b + 8 + h, ' ', hp - h);
  return b;
}

static void expect_bad(const char *header, size_t data_len, ftq_status want, const char *mention) {
  size_t size;
  uint8_t *b = image(header, 8, data_len, &size);
  ftq_safetensors *f = NULL;
  ftq_status st = ftq_safetensors_parse(b, size, "bad.safetensors", &f);
  CHECK_MSG(st == want, "header %s: got %d (%s), want %d", header, (int)st, ftq_last_error(), (int)want);
  CHECK_MSG(strstr(ftq_last_error(), mention) && strstr(ftq_last_error(), "bad.safetensors"),
            "header %s: message \"%s\" lacks \"%s\"", header, ftq_last_error(), mention);
  CHECK(f == NULL);
  ftq_safetensors_close(f);
  free(b);
}

static void test_malformed(void) {
  const char *T = "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
  size_t size;
  uint8_t *ok = image(T, 8, 8, &size);
  ftq_safetensors *f;
  CHECK_OK(ftq_safetensors_parse(ok, size, "ok", &f));
  ftq_safetensors_close(f);
  /* every truncation fails cleanly */
  for (size_t n = 0; n < size; n++) {
    ftq_status st = ftq_safetensors_parse(ok, n, "cut", &f);
    CHECK_MSG(st == FTQ_ERR_FORMAT, "truncated to %zu: %d", n, (int)st);
  }
  free(ok);
  uint8_t small[4] = {0};
  CHECK_STATUS(ftq_safetensors_parse(small, 4, "tiny", &f), FTQ_ERR_FORMAT);
  CHECK_ERROR_MENTIONS("too small");
  uint8_t huge[16] = {0x00, 0xe2, 0xf5, 0x05, 0, 0, 0, 0, '{', '}'}; /* 100,000,256 */
  CHECK_STATUS(ftq_safetensors_parse(huge, 16, "huge", &f), FTQ_ERR_FORMAT);
  CHECK_ERROR_MENTIONS("header too large");
  uint8_t beyond[16] = {0x40, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
  CHECK_STATUS(ftq_safetensors_parse(beyond, 16, "beyond", &f), FTQ_ERR_FORMAT);
  CHECK_ERROR_MENTIONS("exceeds the file");

  expect_bad("not json", 0, FTQ_ERR_FORMAT, "JSON");
  expect_bad("{\"a\":1,", 0, FTQ_ERR_FORMAT, "invalid JSON");
  expect_bad("[1,2]", 0, FTQ_ERR_FORMAT, "not a JSON object");
  expect_bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"t\":{\"dtype\":\"F32\",\"shape\":[1],"
             "\"data_offsets\":[4,8]}}", 8, FTQ_ERR_FORMAT, "duplicate");
  expect_bad("{\"t\":5}", 0, FTQ_ERR_FORMAT, "must be an object");
  expect_bad("{\"t\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, FTQ_ERR_FORMAT, "dtype missing");
  expect_bad("{\"t\":{\"dtype\":\"F7\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, FTQ_ERR_UNSUPPORTED, "unknown dtype");
  expect_bad("{\"t\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, FTQ_ERR_FORMAT, "shape missing");
  expect_bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, FTQ_ERR_FORMAT, "shape[0]");
  expect_bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, FTQ_ERR_FORMAT, "shape[0]");
  expect_bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, FTQ_ERR_UNSUPPORTED,
             "dimensions");
  expect_bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,4]}}", 4,
             FTQ_ERR_FORMAT, "overflows");
  expect_bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, FTQ_ERR_FORMAT, "[begin, end]");
  expect_bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,-4]}}", 4, FTQ_ERR_FORMAT, "non-negative");
  expect_bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8, FTQ_ERR_FORMAT, "end before begin");
  expect_bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, FTQ_ERR_FORMAT, "needs 8");
  expect_bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, FTQ_ERR_FORMAT, "out of range");
  expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],"
             "\"data_offsets\":[4,12]}}", 12, FTQ_ERR_FORMAT, "overlaps");
  expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],"
             "\"data_offsets\":[8,12]}}", 12, FTQ_ERR_FORMAT, "gap");
  expect_bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8, FTQ_ERR_FORMAT, "after the last tensor");
  expect_bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],"
             "\"data_offsets\":[1,5]}}", 5, FTQ_ERR_FORMAT, "not aligned");
  expect_bad("{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, FTQ_ERR_FORMAT, "empty name");
  expect_bad("{\"__metadata__\":{\"format\":3}}", 0, FTQ_ERR_FORMAT, "must be a string");
  expect_bad("{\"__metadata__\":[]}", 0, FTQ_ERR_FORMAT, "__metadata__ must be an object");
  expect_bad("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}\x01", 4, FTQ_ERR_FORMAT, "invalid JSON");

  /* an unpadded header is fine while every tensor stays aligned */
  const char *h = "{\"a\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]}}";
  uint8_t *b = image(h, 0, 3, &size);
  CHECK_OK(ftq_safetensors_parse(b, size, "unpadded", &f));
  ftq_safetensors_close(f);
  free(b);

  /* files and folders */
  ftq_st_set *set;
  CHECK_STATUS(ftq_safetensors_open("tests/ref/io/st/missing.safetensors", &f), FTQ_ERR_IO);
  CHECK_ERROR_MENTIONS("missing.safetensors");
  CHECK_STATUS(ftq_st_set_open("tests/ref/io/gguf", &set), FTQ_ERR_NOT_FOUND);
  CHECK_ERROR_MENTIONS("no .safetensors");
}

static void test_bad_index(void) {
  char dir[512];
  snprintf(dir, sizeof dir, "%s/idx", tmpdir);
  mkdir(dir, 0755);
  char path[600], shard[600];
  snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
  snprintf(shard, sizeof shard, "%s/a.safetensors", dir);
  ftq_st_writer *w;
  REQUIRE_OK(ftq_st_writer_create(&w));
  float x[2] = {1, 2};
  int64_t two[1] = {2};
  CHECK_OK(ftq_st_writer_add(w, "x", FTQ_DTYPE_F32, 1, two, x));
  CHECK_OK(ftq_st_writer_write(w, shard));
  snprintf(shard, sizeof shard, "%s/b.safetensors", dir);
  CHECK_OK(ftq_st_writer_write(w, shard));
  ftq_st_writer_destroy(w);
  ftq_st_set *set;
  test_write_text(path, "{\"weight_map\": {\"x\": \"a.safetensors\"}}");
  CHECK_OK(ftq_st_set_open(dir, &set));
  ftq_st_set_close(set);
  test_write_text(path, "{\"weight_map\": {\"y\": \"a.safetensors\"}}");
  CHECK_STATUS(ftq_st_set_open(dir, &set), FTQ_ERR_FORMAT);
  CHECK_ERROR_MENTIONS("does not contain it");
  test_write_text(path, "{\"weight_map\": {\"x\": \"a.safetensors\", \"z\": \"b.safetensors\"}}");
  CHECK_STATUS(ftq_st_set_open(dir, &set), FTQ_ERR_FORMAT);
  CHECK_ERROR_MENTIONS("appears in both");
  test_write_text(path, "{\"weight_map\": {\"x\": \"../a.safetensors\"}}");
  CHECK_STATUS(ftq_st_set_open(dir, &set), FTQ_ERR_FORMAT);
  CHECK_ERROR_MENTIONS("same folder");
  test_write_text(path, "{\"weight_map\": {\"x\": \"c.safetensors\"}}");
  CHECK_STATUS(ftq_st_set_open(dir, &set), FTQ_ERR_IO);
  CHECK_ERROR_MENTIONS("c.safetensors");
  test_write_text(path, "{\"metadata\": {}}");
  CHECK_STATUS(ftq_st_set_open(dir, &set), FTQ_ERR_FORMAT);
  CHECK_ERROR_MENTIONS("weight_map");
  test_write_text(path, "{\"weight_map\": ");
  CHECK_STATUS(ftq_st_set_open(dir, &set), FTQ_ERR_FORMAT);
  CHECK_ERROR_MENTIONS("model.safetensors.index.json:1:");
  /* without an index, two files are ambiguous */
  remove(path);
  CHECK_STATUS(ftq_st_set_open(dir, &set), FTQ_ERR_FORMAT);
  CHECK_ERROR_MENTIONS("2 .safetensors files");
}

int main(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/ftq_st_XXXXXX");
  if (!mkdtemp(tmpdir)) return 1;
  test_python_file();
  test_round_trips();
  test_transformers_shards();
  test_malformed();
  test_bad_index();
  test_rm_rf(tmpdir);
  return test_finish("test_safetensors");
}

/* GGUF reader and GGML dequantization: metadata of every value type and
 * tensors of every supported type in files the `gguf` package wrote (v3,
 * and the same file as v2), dequantized values equal to the package's own
 * dequantize() bit for bit, and hand-built malformed files for each check.
 * References: tests/ref/io/gguf/ (make_refs.py). */
#include "../model_load/model_test_util.h"
#include "io/ggml_quant.h"
#include "io/gguf.h"

#define REF "tests/ref/io/gguf/"

/* ---- the package-written files ---- */

static void check_metadata(const ftq_gguf *g, json_t *meta) {
  const char *key;
  json_t *m;
  json_object_foreach(meta, key, m) {
    const char *type = json_string_value(json_object_get(m, "type"));
    json_t *v = json_object_get(m, "value");
    ftq_gguf_type t, et;
    uint64_t count;
    CHECK_OK(ftq_gguf_key_type(g, key, &t, &et, &count));
    if (!strcmp(type, "string")) {
      const char *s;
      size_t len;
      CHECK_OK(ftq_gguf_get_string(g, key, &s, &len));
      CHECK_MSG(len == strlen(json_string_value(v)) && memcmp(s, json_string_value(v), len) == 0, "%s", key);
      CHECK_STATUS(ftq_gguf_get_int(g, key, &(int64_t){0}), FTQ_ERR_FORMAT);
      CHECK_ERROR_MENTIONS(key);
    } else if (!strcmp(type, "bool")) {
      int b;
      CHECK_OK(ftq_gguf_get_bool(g, key, &b));
      CHECK(b == json_is_true(v));
    } else if (!strcmp(type, "float32") || !strcmp(type, "float64")) {
      double d;
      CHECK_OK(ftq_gguf_get_float(g, key, &d));
      CHECK_MSG(d == json_number_value(v), "%s: %.17g", key, d);
      CHECK_STATUS(ftq_gguf_get_int(g, key, &(int64_t){0}), FTQ_ERR_FORMAT);
    } else if (!strcmp(type, "array")) {
      const char *elem = json_string_value(json_object_get(m, "elem"));
      CHECK(t == FTQ_GGUF_ARRAY && count == json_array_size(v));
      if (!strcmp(elem, "string")) {
        CHECK(et == FTQ_GGUF_STRING);
        for (size_t i = 0; i < json_array_size(v); i++) {
          const char *s;
          size_t len;
          CHECK_OK(ftq_gguf_get_array_string(g, key, i, &s, &len));
          const char *want = json_string_value(json_array_get(v, i));
          CHECK_MSG(len == strlen(want) && memcmp(s, want, len) == 0, "%s[%zu]", key, i);
        }
        const char *s;
        size_t len;
        CHECK_STATUS(ftq_gguf_get_array_string(g, key, count, &s, &len), FTQ_ERR_NOT_FOUND);
      } else if (count) {
        const void *data;
        ftq_gguf_type e2;
        uint64_t c2;
        CHECK_OK(ftq_gguf_get_array(g, key, &e2, &c2, &data));
        for (size_t i = 0; i < c2; i++) {
          double want = json_number_value(json_array_get(v, i)), got;
          if (e2 == FTQ_GGUF_INT32) {
            int32_t x;
            memcpy(&x, (const char *)data + 4 * i, 4);
            got = x;
          } else {
            float x;
            memcpy(&x, (const char *)data + 4 * i, 4);
            got = x;
          }
          CHECK_MSG(got == want, "%s[%zu]", key, i);
        }
      }
    } else {
      int64_t i;
      CHECK_OK(ftq_gguf_get_int(g, key, &i));
      CHECK_MSG(i == json_integer_value(v), "%s: %lld", key, (long long)i);
      double d;
      CHECK_OK(ftq_gguf_get_float(g, key, &d)); /* integers read as numbers too */
      CHECK(d == (double)json_integer_value(v));
      CHECK_STATUS(ftq_gguf_get_string(g, key, &(const char *){0}, &(size_t){0}), FTQ_ERR_FORMAT);
    }
  }
}

static void check_file(const char *path, uint32_t version, json_t *ref) {
  ftq_gguf *g;
  REQUIRE_OK(ftq_gguf_open(path, &g));
  CHECK(ftq_gguf_version(g) == version);
  CHECK(ftq_gguf_alignment(g) == 32);
  CHECK(strcmp(ftq_gguf_path(g), path) == 0);
  const char *arch;
  size_t len;
  CHECK_OK(ftq_gguf_get_string(g, "general.architecture", &arch, &len));
  CHECK(len == 5 && !memcmp(arch, "llama", 5));
  check_metadata(g, json_object_get(ref, "metadata"));
  CHECK(ftq_gguf_key_count(g) == json_object_size(json_object_get(ref, "metadata")) + 1);
  const char *k;
  CHECK_OK(ftq_gguf_key_at(g, 0, &k, &len));
  CHECK_STATUS(ftq_gguf_key_at(g, 1000, &k, &len), FTQ_ERR_NOT_FOUND);
  CHECK_STATUS(ftq_gguf_key_type(g, "no.such.key", NULL, NULL, NULL), FTQ_ERR_NOT_FOUND);
  CHECK_STATUS(ftq_gguf_get_int(g, "no.such.key", &(int64_t){0}), FTQ_ERR_NOT_FOUND);
  CHECK_ERROR_MENTIONS("no.such.key");

  json_t *tensors = json_object_get(ref, "tensors");
  CHECK(ftq_gguf_tensor_count(g) == json_array_size(tensors));
  for (size_t i = 0; i < json_array_size(tensors); i++) {
    json_t *t = json_array_get(tensors, i);
    const char *name = json_string_value(json_object_get(t, "name"));
    uint64_t idx, ne[4];
    CHECK_OK(ftq_gguf_find_tensor(g, name, &idx));
    const char *n2;
    uint32_t type, nd;
    const void *data;
    size_t bytes;
    CHECK_OK(ftq_gguf_tensor_info(g, idx, &n2, &type, &nd, ne, &data, &bytes));
    int64_t rows = json_integer_value(json_array_get(json_object_get(t, "shape"), 0));
    int64_t cols = json_integer_value(json_array_get(json_object_get(t, "shape"), 1));
    CHECK(!strcmp(n2, name) && type == (uint32_t)json_integer_value(json_object_get(t, "type_id")));
    CHECK(nd == 2 && ne[0] == (uint64_t)cols && ne[1] == (uint64_t)rows && ne[2] == 1 && ne[3] == 1);
    const ftq_ggml_type_info *ti = ftq_ggml_type(type);
    CHECK(ti && !strcmp(ti->name, json_string_value(json_object_get(t, "type"))));
    CHECK(bytes == (size_t)(rows * cols / ti->block * ti->type_size));
    CHECK(((uintptr_t)data % 32) == 0);
    size_t n = (size_t)(rows * cols), elen;
    float *got = malloc(n * sizeof *got);
    CHECK_OK(ftq_ggml_dequantize(type, data, got, n));
    char epath[256];
    snprintf(epath, sizeof epath, REF "expected/%s.f32", name);
    float *want = test_read_file(epath, &elen);
    CHECK(elen == n * sizeof(float));
    size_t bad = 0;
    for (size_t e = 0; e < n; e++)
      if (memcmp(&got[e], &want[e], 4) != 0 && !(isnan(got[e]) && isnan(want[e]))) bad++;
    CHECK_MSG(bad == 0, "%s (%s): %zu of %zu values differ from gguf.quants.dequantize", name, ti->name, bad, n);
    free(got);
    free(want);
  }
  uint64_t idx;
  CHECK_STATUS(ftq_gguf_find_tensor(g, "nope", &idx), FTQ_ERR_NOT_FOUND);
  CHECK_STATUS(ftq_gguf_tensor_info(g, 999, NULL, NULL, NULL, NULL, NULL, NULL), FTQ_ERR_NOT_FOUND);
  ftq_gguf_release_tensor(g, 0);
  ftq_gguf_close(g);
}

/* ---- hand-built files ---- */

typedef struct buf {
  uint8_t *p;
  size_t n, cap;
} buf;

static void put(buf *b, const void *d, size_t n) {
  if (b->n + n > b->cap) {
    b->cap = (b->n + n) * 2 + 64;
    b->p = realloc(b->p, b->cap);
  }
  memcpy(b->p + b->n, d, n);
  b->n += n;
}
static void u32(buf *b, uint32_t v) { put(b, &v, 4); }
static void u64(buf *b, uint64_t v) { put(b, &v, 8); }
static void str(buf *b, const char *s) {
  u64(b, strlen(s));
  put(b, s, strlen(s));
}
static void header(buf *b, uint32_t version, uint64_t n_t, uint64_t n_kv) {
  put(b, "GGUF", 4);
  u32(b, version);
  u64(b, n_t);
  u64(b, n_kv);
}
static void tinfo(buf *b, const char *name, uint32_t nd, const uint64_t *ne, uint32_t type, uint64_t off) {
  str(b, name);
  u32(b, nd);
  for (uint32_t i = 0; i < nd; i++) u64(b, ne[i]);
  u32(b, type);
  u64(b, off);
}
static void pad_data(buf *b, size_t align, size_t data) {
  while (b->n % align) put(b, "", 1);
  for (size_t i = 0; i < data; i++) put(b, "\x3f", 1);
}

static void expect(buf *b, ftq_status want, const char *mention) {
  ftq_gguf *g = NULL;
  ftq_status st = ftq_gguf_open_memory(b->p, b->n, "case.gguf", &g);
  CHECK_MSG(st == want, "status %d (%s), want %d [%s]", (int)st, ftq_last_error(), (int)want, mention);
  if (want != FTQ_OK)
    CHECK_MSG(strstr(ftq_last_error(), mention) && strstr(ftq_last_error(), "case.gguf"), "message \"%s\" lacks \"%s\"",
              ftq_last_error(), mention);
  ftq_gguf_close(g);
  free(b->p);
  memset(b, 0, sizeof *b);
}

static void test_malformed(void) {
  buf b = {0};
  uint64_t ne4[1] = {4}, ne16[1] = {16}, big[5] = {1ull << 40, 1ull << 40, 1ull << 40, 1, 1};
  header(&b, 3, 0, 0);
  expect(&b, FTQ_OK, "");
  header(&b, 3, 1, 0);
  tinfo(&b, "t", 1, ne4, 0, 0);
  pad_data(&b, 32, 16);
  expect(&b, FTQ_OK, "");
  put(&b, "GGUX", 4);
  u32(&b, 3);
  u64(&b, 0);
  u64(&b, 0);
  expect(&b, FTQ_ERR_FORMAT, "magic");
  header(&b, 1, 0, 0);
  expect(&b, FTQ_ERR_UNSUPPORTED, "version 1");
  header(&b, 4, 0, 0);
  expect(&b, FTQ_ERR_UNSUPPORTED, "version 4");
  header(&b, 0x03000000u, 0, 0);
  expect(&b, FTQ_ERR_UNSUPPORTED, "big-endian");
  header(&b, 3, 0, 1ull << 60);
  expect(&b, FTQ_ERR_FORMAT, "key/value pairs cannot fit");
  header(&b, 3, 1ull << 60, 0);
  expect(&b, FTQ_ERR_FORMAT, "tensor infos cannot fit");
  /* key/values */
  header(&b, 3, 0, 1);
  str(&b, "");
  u32(&b, 0);
  put(&b, "\1\0\0\0", 4);
  expect(&b, FTQ_ERR_FORMAT, "empty key");
  header(&b, 3, 0, 1);
  str(&b, "k");
  u32(&b, 13);
  put(&b, "\1", 1);
  expect(&b, FTQ_ERR_FORMAT, "unknown value type 13");
  header(&b, 3, 0, 1);
  str(&b, "k");
  u32(&b, 7);
  put(&b, "\2", 1);
  expect(&b, FTQ_ERR_FORMAT, "neither 0 nor 1");
  header(&b, 3, 0, 1);
  str(&b, "k");
  u32(&b, 8);
  u64(&b, 1ull << 50);
  put(&b, "abc", 3);
  expect(&b, FTQ_ERR_FORMAT, "beyond the end");
  header(&b, 3, 0, 2); /* empty arrays are fine */
  str(&b, "e");
  u32(&b, 9);
  u32(&b, 8);
  u64(&b, 0);
  str(&b, "f");
  u32(&b, 9);
  u32(&b, 5);
  u64(&b, 0);
  expect(&b, FTQ_OK, "");
  header(&b, 3, 0, 1);
  str(&b, "k");
  u32(&b, 9);
  u32(&b, 9);
  u64(&b, 1);
  expect(&b, FTQ_ERR_UNSUPPORTED, "arrays of arrays");
  header(&b, 3, 0, 1);
  str(&b, "k");
  u32(&b, 9);
  u32(&b, 8);
  u64(&b, 1ull << 40);
  u64(&b, 0);
  expect(&b, FTQ_ERR_FORMAT, "strings cannot fit");
  header(&b, 3, 0, 1);
  str(&b, "k");
  u32(&b, 9);
  u32(&b, 6);
  u64(&b, 1ull << 62);
  u64(&b, 0);
  expect(&b, FTQ_ERR_FORMAT, "past the end");
  header(&b, 3, 0, 1);
  str(&b, "k");
  u32(&b, 9);
  u32(&b, 20);
  u64(&b, 0);
  expect(&b, FTQ_ERR_FORMAT, "unknown array element type");
  header(&b, 3, 0, 2);
  str(&b, "dup");
  u32(&b, 4);
  u32(&b, 1);
  str(&b, "dup");
  u32(&b, 4);
  u32(&b, 2);
  expect(&b, FTQ_ERR_FORMAT, "'dup' appears twice");
  header(&b, 3, 0, 1);
  str(&b, "general.alignment");
  u32(&b, 4);
  u32(&b, 24);
  expect(&b, FTQ_ERR_FORMAT, "power of two");
  header(&b, 3, 0, 1);
  str(&b, "general.alignment");
  u32(&b, 10);
  u64(&b, 64);
  expect(&b, FTQ_ERR_FORMAT, "must be a uint32");
  /* tensor infos */
  header(&b, 3, 1, 1);
  str(&b, "general.alignment");
  u32(&b, 4);
  u32(&b, 64);
  tinfo(&b, "t", 1, ne4, 0, 32);
  pad_data(&b, 64, 64);
  expect(&b, FTQ_ERR_FORMAT, "not a multiple of the alignment 64");
  header(&b, 3, 1, 0);
  tinfo(&b, "t", 1, ne4, 0, 0);
  pad_data(&b, 32, 15);
  expect(&b, FTQ_ERR_FORMAT, "runs past the end");
  header(&b, 3, 1, 0);
  tinfo(&b, "t", 1, ne4, 0, 1ull << 63);
  pad_data(&b, 32, 16);
  expect(&b, FTQ_ERR_FORMAT, "past the end");
  header(&b, 3, 2, 0);
  tinfo(&b, "a", 1, ne16, 0, 0);
  tinfo(&b, "b", 1, ne16, 0, 32);
  pad_data(&b, 32, 96);
  expect(&b, FTQ_ERR_FORMAT, "overlap");
  header(&b, 3, 2, 0);
  tinfo(&b, "a", 1, ne4, 0, 0);
  tinfo(&b, "a", 1, ne4, 0, 32);
  pad_data(&b, 32, 64);
  expect(&b, FTQ_ERR_FORMAT, "'a' appears twice");
  header(&b, 3, 1, 0);
  tinfo(&b, "", 1, ne4, 0, 0);
  pad_data(&b, 32, 16);
  expect(&b, FTQ_ERR_FORMAT, "invalid name");
  header(&b, 3, 1, 0);
  tinfo(&b, "t", 5, big, 0, 0);
  expect(&b, FTQ_ERR_FORMAT, "5 dimensions");
  header(&b, 3, 1, 0);
  tinfo(&b, "t", 1, ne4, 99, 0);
  pad_data(&b, 32, 16);
  expect(&b, FTQ_ERR_UNSUPPORTED, "unknown GGML type 99");
  header(&b, 3, 1, 0);
  tinfo(&b, "t", 1, ne16, FTQ_GGML_Q4_0, 0);
  pad_data(&b, 32, 16);
  expect(&b, FTQ_ERR_FORMAT, "not a multiple of the Q4_0 block size");
  header(&b, 3, 1, 0);
  tinfo(&b, "t", 3, big, 0, 0);
  pad_data(&b, 32, 16);
  expect(&b, FTQ_ERR_FORMAT, "overflow");
  header(&b, 3, 1, 0);
  tinfo(&b, "t", 1, ne4, 0, 0);
  expect(&b, FTQ_ERR_FORMAT, "ends before its tensor data");

  /* the package-written file cut at every length: fails until the last
   * tensor's data is complete, and never crashes */
  size_t size;
  uint8_t *img = test_read_file(REF "types.gguf", &size);
  ftq_gguf *g;
  REQUIRE_OK(ftq_gguf_open_memory(img, size, "types", &g));
  size_t need = 0;
  for (uint64_t i = 0; i < ftq_gguf_tensor_count(g); i++) {
    const void *data;
    size_t bytes;
    CHECK_OK(ftq_gguf_tensor_info(g, i, NULL, NULL, NULL, NULL, &data, &bytes));
    size_t end = (size_t)((const uint8_t *)data - img) + bytes;
    if (end > need) need = end;
  }
  ftq_gguf_close(g);
  size_t failures = 0;
  for (size_t n = 0; n < size; n++) {
    ftq_status st = ftq_gguf_open_memory(img, n, "cut", &g);
    if ((n < need) != (st != FTQ_OK)) failures++;
    ftq_gguf_close(st == FTQ_OK ? g : NULL);
  }
  CHECK_MSG(failures == 0, "%zu truncation lengths gave the wrong result", failures);
  free(img);
  CHECK_STATUS(ftq_gguf_open(REF "missing.gguf", &g), FTQ_ERR_IO);
  CHECK_ERROR_MENTIONS("missing.gguf");
}

static void test_types(void) {
  CHECK(ftq_ggml_type(4) == NULL && ftq_ggml_type(1000) == NULL);
  CHECK(ftq_ggml_type(FTQ_GGML_Q4_K)->block == 256 && ftq_ggml_type(FTQ_GGML_Q4_K)->type_size == 144);
  uint8_t blk[64] = {0};
  float out[256];
  CHECK_STATUS(ftq_ggml_dequantize(FTQ_GGML_Q8_K, blk, out, 256), FTQ_ERR_UNSUPPORTED);
  CHECK_ERROR_MENTIONS("Q8_K");
  CHECK_STATUS(ftq_ggml_dequantize(20, blk, out, 32), FTQ_ERR_UNSUPPORTED);
  CHECK_STATUS(ftq_ggml_dequantize(999, blk, out, 32), FTQ_ERR_UNSUPPORTED);
}

int main(void) {
  json_t *ref = test_load_json(REF "types.json");
  check_file(REF "types.gguf", 3, ref);
  check_file(REF "types_v2.gguf", 2, ref);
  json_decref(ref);
  test_malformed();
  test_types();
  return test_finish("test_gguf");
}

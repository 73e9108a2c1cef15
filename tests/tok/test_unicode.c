/* Unicode helpers: NFC against Python's unicodedata.normalize on random
 * strings of combining marks, Hangul jamo, singletons and composition
 * exclusions (tests/ref/tok/nfc.json); the character classes on fixed
 * points; UTF-8 decoding of ill-formed input (maximal subparts). */
#include "test_util.h"
#include "tok/unicode.h"
#include "tok_test_util.h"

static void test_nfc(void) {
  json_t *ref = tt_load_json("tests/ref/tok/nfc.json");
  CHECK(strcmp(json_string_value(json_object_get(ref, "unicode_version")), ftq_unicode_version) == 0);
  json_t *cases = json_object_get(ref, "cases");
  int shown = 0;
  for (size_t i = 0; i < json_array_size(cases); i++) {
    json_t *c = json_array_get(cases, i);
    json_t *in = json_array_get(c, 0), *want = json_array_get(c, 1);
    size_t n = json_string_length(in);
    unsigned char *out = malloc(ftq_nfc_bound(n));
    int32_t *al = malloc(ftq_nfc_bound(n) * sizeof *al);
    size_t m = ftq_nfc((const unsigned char *)json_string_value(in), n, out, al);
    int ok = m == json_string_length(want) && memcmp(out, json_string_value(want), m) == 0;
    CHECK_MSG(ok, "NFC case %zu differs from Python", i);
    if (!ok && shown++ < 5) {
      fprintf(stderr, "  in:  ");
      for (size_t k = 0; k < n; k++) fprintf(stderr, "%02x", (unsigned char)json_string_value(in)[k]);
      fprintf(stderr, "\n  out: ");
      for (size_t k = 0; k < m; k++) fprintf(stderr, "%02x", out[k]);
      fprintf(stderr, "\n");
    }
    for (size_t k = 0; k < m; k++) CHECK(al[k] >= 0 && (size_t)al[k] < n && (k == 0 || al[k] >= al[k - 1]));
    free(out);
    free(al);
  }
  json_decref(ref);
}

static void test_classes(void) {
  CHECK(ftq_uflags('a') & FTQ_U_LETTER);
  CHECK(ftq_uflags(0x4E2D) & FTQ_U_LETTER);   /* 中 */
  CHECK(ftq_uflags(0x0663) & FTQ_U_NUMBER);   /* Arabic-Indic 3 */
  CHECK(ftq_uflags(0x216B) & FTQ_U_NUMBER);   /* Roman numeral twelve (Nl) */
  CHECK(ftq_uflags(0x00BD) & FTQ_U_NUMBER);   /* ½ (No) */
  CHECK(ftq_uflags(0x3000) & FTQ_U_SPACE);
  CHECK(ftq_uflags(0x0085) & FTQ_U_SPACE);
  CHECK(!(ftq_uflags(0x200B) & FTQ_U_SPACE)); /* zero width space is not White_Space */
  CHECK(ftq_uflags(0x0308) & FTQ_U_WORD);     /* combining mark */
  CHECK(ftq_uflags('_') & FTQ_U_WORD);
  CHECK(!(ftq_uflags('-') & FTQ_U_WORD));
  CHECK(ftq_uflags(0x1C89) & FTQ_U_LETTER);   /* added in Unicode 16.0 */
  CHECK(ftq_uflags(0x110000) == 0);
}

static void test_utf8(void) {
  struct {
    const char *in;
    size_t n;
    int valid_prefix;
  } v[] = {{"abc", 3, 3}, {"\xC3\xA9", 2, 2}, {"\xF0\x9F\x90\x8D", 4, 4}, {"a\x80", 2, 1}, {"\xE2\x82", 2, 0},
           {"\xED\xA0\x80", 3, 0}, {"\xF4\x90\x80\x80", 4, 0}, {"\xC0\xAF", 2, 0}};
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
    CHECK(ftq_utf8_valid_prefix((const unsigned char *)v[i].in, v[i].n) == (size_t)v[i].valid_prefix);
  /* maximal subparts: E2 82 then 'x' -> one U+FFFD of 2 bytes; F0 9F 98 -> one of 3 */
  size_t len;
  int ok;
  CHECK(ftq_utf8_decode((const unsigned char *)"\xE2\x82x", 3, &len, &ok) == 0xFFFD && len == 2 && !ok);
  CHECK(ftq_utf8_decode((const unsigned char *)"\xF0\x9F\x98", 3, &len, &ok) == 0xFFFD && len == 3 && !ok);
  CHECK(ftq_utf8_decode((const unsigned char *)"\xED\xA0\x80", 3, &len, &ok) == 0xFFFD && len == 1 && !ok);
  CHECK(ftq_utf8_decode((const unsigned char *)"\xF0\x9F\x90\x8D", 4, &len, &ok) == 0x1F40D && len == 4 && ok);
  unsigned char buf[4];
  CHECK(ftq_utf8_encode(0x1F40D, buf) == 4 && memcmp(buf, "\xF0\x9F\x90\x8D", 4) == 0);
  CHECK(ftq_utf8_encode(0xE9, buf) == 2 && memcmp(buf, "\xC3\xA9", 2) == 0);
}

int main(void) {
  test_nfc();
  test_classes();
  test_utf8();
  return test_finish("test_unicode");
}

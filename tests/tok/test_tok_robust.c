/* Robustness of the text-facing parsers on hostile input (run under the
 * sanitizers in CI): random bytes through every reference tokenizer
 * (encode, offsets, decode, special-as-text), and mutated tokenizer.json,
 * GGUF vocabularies and JSONL rows, which must load or fail with an error,
 * never crash or leak. Deterministic (splitmix64 from test_util.h). */
#include <unistd.h>

#include "test_util.h"
#include "tok_test_util.h"

static const char *NAMES[] = {"smollm2", "sp_legacy", "sp_meta", "llama3", "qwen2"};

static void random_text(uint64_t *s, unsigned char *buf, size_t n) {
  static const char *frags[] = {"<s>", "</s>", "<|im_end|>", "<mask>", "[DOG]", "'s", "'LL", " ", "\n", "\r\n",
                                "\xE2\x96\x81", "e\xCC\x81", "\xF0\x9F\x91\x8D", "\xC3", "\xE2\x82", "1234"};
  size_t i = 0;
  while (i < n) {
    uint64_t r = test_rand_u64(s);
    if (r % 3 == 0) {
      const char *f = frags[(r >> 8) % (sizeof frags / sizeof frags[0])];
      size_t l = strlen(f);
      if (i + l > n) l = n - i;
      memcpy(buf + i, f, l);
      i += l;
    } else {
      buf[i++] = (unsigned char)(r >> 16);
    }
  }
}

static void fuzz_encode(void) {
  uint64_t seed = 1;
  for (size_t k = 0; k < sizeof NAMES / sizeof NAMES[0]; k++) {
    ftq_tokenizer *t = tt_load_ref_tokenizer(NAMES[k]);
    for (int it = 0; it < 150; it++) {
      unsigned char buf[300];
      size_t n = (size_t)(test_rand_u64(&seed) % sizeof buf);
      random_text(&seed, buf, n);
      unsigned flags = (unsigned)(test_rand_u64(&seed) & (FTQ_ENCODE_ADD_SPECIAL | FTQ_ENCODE_SPECIAL_AS_TEXT));
      int32_t *ids, *offs;
      size_t m;
      CHECK_OK(ftq_tokenizer_encode_offsets(t, (const char *)buf, n, flags, &ids, &offs, &m));
      int ok = 1;
      for (size_t i = 0; i < m; i++) ok &= offs[i] >= 0 && (size_t)offs[i] <= n && (i == 0 || offs[i] >= offs[i - 1]);
      CHECK_MSG(ok, "%s: offsets out of order on random input %d", NAMES[k], it);
      char *text;
      size_t len;
      CHECK_OK(ftq_tokenizer_decode(t, ids, m, (unsigned)(it & 1), &text, &len));
      ftq_free(text);
      ftq_free(ids);
      ftq_free(offs);
    }
    ftq_tokenizer_destroy(t);
  }
}

static void mutate(uint64_t *s, char *b, size_t *n) {
  int edits = 1 + (int)(test_rand_u64(s) % 4);
  for (int e = 0; e < edits && *n; e++) {
    uint64_t r = test_rand_u64(s);
    size_t at = (size_t)(r % *n);
    switch ((r >> 32) % 4) {
      case 0: b[at] = (char)(r >> 40); break;                 /* flip a byte */
      case 1: *n = at; break;                                  /* truncate */
      case 2: memmove(b + at, b + at + 1, *n - at - 1), (*n)--; break; /* delete */
      default: b[at] = "{}[]\",:0-\\"[(r >> 40) % 10]; break;  /* a JSON-significant byte */
    }
  }
}

static void fuzz_loaders(void) {
  uint64_t seed = 7;
  size_t n;
  char *json = tt_slurp("tests/ref/tok/llama3/tokenizer.json", &n);
  size_t gn;
  char *gguf = tt_slurp("tests/ref/tok/sp_legacy.gguf", &gn);
  REQUIRE_OK(json && gguf ? FTQ_OK : FTQ_ERR_IO);
  char dir[] = "/tmp/ftq_robust_XXXXXX";
  REQUIRE_OK(mkdtemp(dir) ? FTQ_OK : FTQ_ERR_IO);
  char gpath[600];
  snprintf(gpath, sizeof gpath, "%s/v.gguf", dir);
  int loaded = 0, refused = 0;
  for (int it = 0; it < 120; it++) {
    size_t m = n;
    char *b = malloc(n + 1);
    memcpy(b, json, n);
    mutate(&seed, b, &m);
    ftq_tokenizer *t = NULL;
    ftq_status st = ftq_tokenizer_load_json(b, m, NULL, &t);
    if (st == FTQ_OK) {
      loaded++;
      int32_t *ids;
      size_t k;
      if (ftq_tokenizer_encode(t, "Hello, world! 123", 17, 0, &ids, &k) == FTQ_OK) ftq_free(ids);
      ftq_tokenizer_destroy(t);
    } else {
      refused++;
      CHECK(t == NULL && ftq_last_error()[0] != 0);
    }
    free(b);
    /* a mutated GGUF vocabulary */
    m = gn;
    b = malloc(gn);
    memcpy(b, gguf, gn);
    mutate(&seed, b, &m);
    FILE *f = fopen(gpath, "wb");
    fwrite(b, 1, m, f);
    fclose(f);
    t = NULL;
    if (ftq_tokenizer_load(gpath, NULL, &t) == FTQ_OK) ftq_tokenizer_destroy(t);
    else CHECK(t == NULL);
    free(b);
  }
  printf("test_tok_robust: mutated tokenizer.json: %d loaded, %d refused\n", loaded, refused);
  CHECK(refused > 0);
  remove(gpath);

  /* mutated JSONL rows, skipped and counted */
  char dpath[600];
  snprintf(dpath, sizeof dpath, "%s/rows.jsonl", dir);
  size_t rn;
  char *rows = tt_slurp("tests/ref/tok/data/rows.jsonl", &rn);
  ftq_tokenizer *tok = tt_load_ref_tokenizer("sp_legacy");
  ftq_options *o;
  REQUIRE_OK(ftq_options_create(&o));
  REQUIRE_OK(ftq_options_set_bool(o, "skip_malformed_rows", 1));
  REQUIRE_OK(ftq_options_set_bool(o, "packing", 1));
  REQUIRE_OK(ftq_options_set_int(o, "max_seq_length", 64));
  for (int it = 0; it < 60; it++) {
    size_t m = rn;
    char *b = malloc(rn + 1);
    memcpy(b, rows, rn);
    mutate(&seed, b, &m);
    FILE *f = fopen(dpath, "wb");
    fwrite(b, 1, m, f);
    fclose(f);
    ftq_dataset *ds = NULL;
    ftq_status st = ftq_dataset_load(NULL, tok, dpath, o, &ds);
    CHECK_MSG(st == FTQ_OK || st == FTQ_ERR_FORMAT || st == FTQ_ERR_STATE, "mutated rows: status %d: %s", st,
              ftq_last_error());
    if (ds) {
      ftq_batch *bt;
      REQUIRE_OK(ftq_batch_create(&bt));
      for (int64_t i = 0; i < ftq_dataset_num_batches(ds, FTQ_SPLIT_TRAIN); i++)
        CHECK_OK(ftq_dataset_get_batch(ds, FTQ_SPLIT_TRAIN, 0, i, bt));
      ftq_batch_destroy(bt);
      ftq_dataset_destroy(ds);
    }
    free(b);
  }
  remove(dpath);
  rmdir(dir);
  ftq_options_destroy(o);
  ftq_tokenizer_destroy(tok);
  free(rows);
  free(json);
  free(gguf);
}

int main(void) {
  fuzz_encode();
  fuzz_loaders();
  return test_finish("test_tok_robust");
}

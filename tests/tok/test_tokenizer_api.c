/* The tokenizer's public API around encoding: loading from folders, files,
 * gzip and memory; tokenizer_config.json and option overrides; special ids;
 * token lookups and pieces; errors for unsupported features (named) and bad
 * input. */
#include <unistd.h>

#include "test_util.h"
#include "tok_test_util.h"

static ftq_tokenizer *load(const char *path) {
  ftq_tokenizer *t = NULL;
  REQUIRE_OK(ftq_tokenizer_load(path, NULL, &t));
  return t;
}

static void test_specials_and_lookups(void) {
  ftq_tokenizer *sm = load("tests/ref/tok/smollm2"); /* a folder with tokenizer.json.gz + tokenizer_config.json */
  CHECK(ftq_tokenizer_vocab_size(sm) == 49152);
  CHECK(ftq_tokenizer_special_id(sm, FTQ_TOKEN_BOS) == 1);  /* <|im_start|>, from tokenizer_config.json */
  CHECK(ftq_tokenizer_special_id(sm, FTQ_TOKEN_EOS) == 2);  /* <|im_end|> */
  CHECK(ftq_tokenizer_special_id(sm, FTQ_TOKEN_PAD) == 2);
  CHECK(ftq_tokenizer_special_id(sm, FTQ_TOKEN_UNK) == 0);
  CHECK(ftq_tokenizer_is_special(sm, 2) && !ftq_tokenizer_is_special(sm, 100));
  CHECK(ftq_tokenizer_chat_template(sm) && strcmp(ftq_tokenizer_chat_template(sm), "chatml") == 0);
  int32_t id;
  CHECK_OK(ftq_tokenizer_token_to_id(sm, "<|im_end|>", 10, &id));
  CHECK(id == 2);
  CHECK_OK(ftq_tokenizer_token_to_id(sm, "\xC4\xA0the", 5, &id)); /* "Ġthe" */
  const char *piece, *tokstr;
  size_t len;
  CHECK_OK(ftq_tokenizer_token_to_piece(sm, id, &piece, &len));
  CHECK(len == 4 && memcmp(piece, " the", 4) == 0);
  CHECK_OK(ftq_tokenizer_id_to_token(sm, id, &tokstr, &len));
  CHECK(strcmp(tokstr, "\xC4\xA0the") == 0 && len == 5);
  CHECK_STATUS(ftq_tokenizer_token_to_id(sm, "no such token", 13, &id), FTQ_ERR_NOT_FOUND);
  CHECK_STATUS(ftq_tokenizer_token_to_piece(sm, 49152, &piece, &len), FTQ_ERR_NOT_FOUND);
  CHECK_STATUS(ftq_tokenizer_id_to_token(sm, -1, &tokstr, NULL), FTQ_ERR_NOT_FOUND);
  int32_t bad[] = {5, 999999};
  char *text;
  CHECK_STATUS(ftq_tokenizer_decode(sm, bad, 2, 0, &text, &len), FTQ_ERR_NOT_FOUND);
  CHECK_ERROR_MENTIONS("999999");
  /* ADD_BOS / ADD_EOS explicitly; empty text */
  int32_t *ids;
  size_t n;
  CHECK_OK(ftq_tokenizer_encode(sm, "hi", 2, FTQ_ENCODE_ADD_BOS | FTQ_ENCODE_ADD_EOS, &ids, &n));
  CHECK(n >= 3 && ids[0] == 1 && ids[n - 1] == 2);
  ftq_free(ids);
  CHECK_OK(ftq_tokenizer_encode(sm, NULL, 0, 0, &ids, &n));
  CHECK(n == 0 && ids != NULL);
  ftq_free(ids);
  CHECK_OK(ftq_tokenizer_decode(sm, NULL, 0, 0, &text, &len));
  CHECK(len == 0 && text && text[0] == 0);
  ftq_free(text);
  ftq_tokenizer_destroy(sm);

  /* SentencePiece pieces: ▁ -> space, <0x0A> -> newline */
  ftq_tokenizer *sp = load("tests/ref/tok/sp_legacy/tokenizer.json");
  CHECK_OK(ftq_tokenizer_token_to_id(sp, "<0x0A>", 6, &id));
  CHECK_OK(ftq_tokenizer_token_to_piece(sp, id, &piece, &len));
  CHECK(len == 1 && piece[0] == '\n');
  CHECK_OK(ftq_tokenizer_token_to_id(sp, "\xE2\x96\x81the", 6, &id));
  CHECK_OK(ftq_tokenizer_token_to_piece(sp, id, &piece, &len));
  CHECK(len == 4 && memcmp(piece, " the", 4) == 0);
  CHECK(ftq_tokenizer_special_id(sp, FTQ_TOKEN_PAD) == 2); /* no pad token: falls back to EOS, as TRL */
  ftq_tokenizer_destroy(sp);

  /* the qwen2 reference has no BOS */
  ftq_tokenizer *qw = load("tests/ref/tok/qwen2/tokenizer.json");
  CHECK(ftq_tokenizer_special_id(qw, FTQ_TOKEN_BOS) == -1);
  CHECK_STATUS(ftq_tokenizer_encode(qw, "x", 1, FTQ_ENCODE_ADD_BOS, &ids, &n), FTQ_ERR_STATE);
  ftq_tokenizer_destroy(qw);
}

static void test_options(void) {
  ftq_options *o;
  REQUIRE_OK(ftq_options_create(&o));
  REQUIRE_OK(ftq_options_set_string(o, "eos_token", "<|endoftext|>"));
  REQUIRE_OK(ftq_options_set_string(o, "pad_token", "<|im_start|>"));
  ftq_tokenizer *t;
  REQUIRE_OK(ftq_tokenizer_load("tests/ref/tok/smollm2/tokenizer.json.gz", o, &t));
  CHECK(ftq_tokenizer_special_id(t, FTQ_TOKEN_EOS) == 0 && ftq_tokenizer_special_id(t, FTQ_TOKEN_PAD) == 1);
  ftq_tokenizer_destroy(t);
  REQUIRE_OK(ftq_options_set_string(o, "eos_token", "<|nope|>"));
  CHECK_STATUS(ftq_tokenizer_load("tests/ref/tok/smollm2/tokenizer.json.gz", o, &t), FTQ_ERR_NOT_FOUND);
  CHECK_ERROR_MENTIONS("eos_token");
  CHECK_STATUS(ftq_options_set_string(o, "chat_template", "vicuna"), FTQ_ERR_OPTION_RANGE);
  ftq_options_destroy(o);
}

/* replaces the first occurrence of `from` in json with `to` */
static char *edit(const char *json, const char *from, const char *to) {
  const char *p = strstr(json, from);
  if (!p) return NULL;
  size_t a = (size_t)(p - json), fl = strlen(from), tl = strlen(to), n = strlen(json);
  char *r = malloc(n - fl + tl + 1);
  memcpy(r, json, a);
  memcpy(r + a, to, tl);
  memcpy(r + a + tl, p + fl, n - a - fl + 1);
  return r;
}

static void expect_refusal(const char *json, const char *from, const char *to, ftq_status st, const char *mention) {
  char *j = edit(json, from, to);
  CHECK_MSG(j != NULL, "test setup: \"%s\" not found", from);
  if (!j) return;
  ftq_tokenizer *t = NULL;
  CHECK_STATUS(ftq_tokenizer_load_json(j, strlen(j), NULL, &t), st);
  CHECK_ERROR_MENTIONS(mention);
  CHECK(t == NULL);
  free(j);
}

static void test_refusals(void) {
  size_t n;
  char *sp = tt_slurp("tests/ref/tok/sp_legacy/tokenizer.json", &n);
  char *l3 = tt_slurp("tests/ref/tok/llama3/tokenizer.json", &n);
  REQUIRE_OK(sp && l3 ? FTQ_OK : FTQ_ERR_IO);
  ftq_tokenizer *t;
  REQUIRE_OK(ftq_tokenizer_load_json(sp, strlen(sp), NULL, &t));
  ftq_tokenizer_destroy(t);
  expect_refusal(sp, "\"type\":\"BPE\"", "\"type\":\"Unigram\"", FTQ_ERR_UNSUPPORTED, "Unigram");
  expect_refusal(sp, "\"type\":\"Prepend\"", "\"type\":\"NFKC\"", FTQ_ERR_UNSUPPORTED, "NFKC");
  expect_refusal(sp, "\"type\":\"Fuse\"", "\"type\":\"WordPiece\"", FTQ_ERR_UNSUPPORTED, "WordPiece");
  expect_refusal(sp, "\"pattern\":{\"String\":\" \"}", "\"pattern\":{\"Regex\":\" +\"}", FTQ_ERR_UNSUPPORTED, "regex");
  expect_refusal(sp, "\"dropout\":null", "\"dropout\":0.1", FTQ_ERR_UNSUPPORTED, "dropout");
  expect_refusal(sp, "\"continuing_subword_prefix\":null", "\"continuing_subword_prefix\":\"##\"", FTQ_ERR_UNSUPPORTED,
                 "continuing_subword_prefix");
  expect_refusal(l3, "\"type\":\"Split\"", "\"type\":\"Whitespace\"", FTQ_ERR_UNSUPPORTED, "Whitespace");
  expect_refusal(l3, "\\\\p{N}{1,3}", "\\\\p{N}{1,4}", FTQ_ERR_UNSUPPORTED, "\\p{N}{1,4}");
  expect_refusal(l3, "\"behavior\":\"Isolated\"", "\"behavior\":\"Removed\"", FTQ_ERR_UNSUPPORTED, "Removed");
  expect_refusal(l3, "\"type\":\"TemplateProcessing\"", "\"type\":\"BertProcessing\"", FTQ_ERR_UNSUPPORTED,
                 "BertProcessing");
  /* malformed */
  CHECK_STATUS(ftq_tokenizer_load_json("{\"model\": ", 10, NULL, &t), FTQ_ERR_FORMAT);
  CHECK_ERROR_MENTIONS("line 1");
  CHECK_STATUS(ftq_tokenizer_load_json("[]", 2, NULL, &t), FTQ_ERR_FORMAT);
  expect_refusal(sp, "\"merges\":[", "\"merges\":[\"zzzq qqqz\",", FTQ_ERR_FORMAT, "merge 0");
  expect_refusal(sp, "\"merges\":[", "\"merges\":[7,", FTQ_ERR_FORMAT, "merge 0");
  expect_refusal(sp, "\"<unk>\":0", "\"<unk>\":-5", FTQ_ERR_FORMAT, "-5");
  /* files */
  CHECK_STATUS(ftq_tokenizer_load("/nonexistent/tokenizer.json", NULL, &t), FTQ_ERR_IO);
  CHECK_ERROR_MENTIONS("/nonexistent/tokenizer.json");
  CHECK_STATUS(ftq_tokenizer_load("tests/ref", NULL, &t), FTQ_ERR_NOT_FOUND);
  CHECK_STATUS(ftq_tokenizer_load("tests/ref/tok/corpus.json", NULL, &t), FTQ_ERR_FORMAT);
  free(sp);
  free(l3);
}

/* tokenizer.json merges in the older "a b" string form load to the same
 * tokenizer as the [a, b] pair form */
static void test_merge_forms(void) {
  size_t n;
  char *text = tt_slurp("tests/ref/tok/llama3/tokenizer.json", &n);
  REQUIRE_OK(text ? FTQ_OK : FTQ_ERR_IO);
  json_error_t err;
  json_t *root = json_loads(text, 0, &err);
  json_t *merges = json_object_get(json_object_get(root, "model"), "merges");
  size_t i;
  json_t *m;
  int pairs = 0;
  json_array_foreach(merges, i, m) {
    if (!json_is_array(m)) continue;
    pairs++;
    char buf[512];
    snprintf(buf, sizeof buf, "%s %s", json_string_value(json_array_get(m, 0)), json_string_value(json_array_get(m, 1)));
    json_array_set_new(merges, i, json_string(buf));
  }
  CHECK(pairs > 1000);
  char *strings = json_dumps(root, 0);
  ftq_tokenizer *a, *b;
  REQUIRE_OK(ftq_tokenizer_load_json(text, n, NULL, &a));
  REQUIRE_OK(ftq_tokenizer_load_json(strings, strlen(strings), NULL, &b));
  json_t *corpus = tt_load_json("tests/ref/tok/corpus.json");
  json_t *texts = json_object_get(corpus, "texts_b64");
  int same = 1;
  for (size_t k = 0; k < json_array_size(texts); k++) {
    size_t len;
    unsigned char *t = tt_b64(json_string_value(json_array_get(texts, k)), &len);
    int32_t *ia, *ib;
    size_t na, nb;
    CHECK_OK(ftq_tokenizer_encode(a, (const char *)t, len, 0, &ia, &na));
    CHECK_OK(ftq_tokenizer_encode(b, (const char *)t, len, 0, &ib, &nb));
    same &= na == nb && memcmp(ia, ib, na * sizeof *ia) == 0;
    ftq_free(ia);
    ftq_free(ib);
    free(t);
  }
  CHECK_MSG(same, "string-form merges encode differently from pair-form merges");
  json_decref(corpus);
  ftq_tokenizer_destroy(a);
  ftq_tokenizer_destroy(b);
  free(strings);
  json_decref(root);
  free(text);
}

static void test_folder(void) {
  /* a model folder: tokenizer.json + tokenizer_config.json */
  char dir[] = "/tmp/ftq_tok_XXXXXX";
  REQUIRE_OK(mkdtemp(dir) ? FTQ_OK : FTQ_ERR_IO);
  char p1[600], p2[600];
  snprintf(p1, sizeof p1, "%s/tokenizer.json", dir);
  snprintf(p2, sizeof p2, "%s/tokenizer_config.json", dir);
  size_t n;
  char *j = tt_slurp("tests/ref/tok/llama3/tokenizer.json", &n);
  FILE *f = fopen(p1, "wb");
  fwrite(j, 1, n, f);
  fclose(f);
  f = fopen(p2, "wb");
  fputs("{\"bos_token\": {\"content\": \"<|begin_of_text|>\"}, \"eos_token\": \"<|end_of_text|>\", "
        "\"chat_template\": [{\"name\": \"tool_use\", \"template\": \"x\"}, {\"name\": \"default\", \"template\": "
        "\"{{ '<|start_header_id|>' }}\"}]}", f);
  fclose(f);
  ftq_tokenizer *t = load(dir);
  int32_t eot;
  CHECK_OK(ftq_tokenizer_token_to_id(t, "<|end_of_text|>", 15, &eot));
  CHECK(ftq_tokenizer_special_id(t, FTQ_TOKEN_EOS) == eot);
  CHECK(ftq_tokenizer_chat_template(t) && strcmp(ftq_tokenizer_chat_template(t), "llama-3") == 0);
  ftq_tokenizer_destroy(t);
  remove(p1);
  remove(p2);
  rmdir(dir);
  free(j);
}

int main(void) {
  json_t *corpus = tt_load_json("tests/ref/tok/corpus.json");
  (void)corpus;
  test_specials_and_lookups();
  test_options();
  test_refusals();
  test_folder();
  test_merge_forms();
  json_decref(corpus);
  return test_finish("test_tokenizer_api");
}

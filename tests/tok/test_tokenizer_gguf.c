/* Tokenizers from GGUF vocabularies (tokenizer.ggml.*): vocabulary-only
 * files written by make_ref.py from two reference tokenizers must give the
 * ids and decodes of their tokenizer.json (a "llama" SentencePiece model
 * whose merges come from the scores, and a "gpt2" byte-level model with the
 * llama-bpe split); and, when it is present (scripts/get-model.sh), the real
 * SmolLM2-135M-Instruct GGUF must equal the smollm2 reference. */
#include "test_util.h"
#include "tok_test_util.h"

/* GGUF vocabularies: the same ids and decodes as the tokenizer.json they
 * were written from (make_ref.py). */
static void test_gguf(json_t *texts) {
  /* the real model, where scripts/get-model.sh put it */
  char real[1024] = "";
  const char *env = getenv("FTQ_SMOLLM2_GGUF"), *home = getenv("HOME");
  if (env && *env) snprintf(real, sizeof real, "%s", env);
  else if (home) snprintf(real, sizeof real, "%s/.cache/libftq/SmolLM2-135M-Instruct.Q4_1.gguf", home);
  FILE *rf = fopen(real, "rb");
  if (rf) fclose(rf);
  else {
    const char *req = getenv("FTQ_REQUIRE_MODEL");
    /* CI fetches the model and sets FTQ_REQUIRE_MODEL: then it must be there */
    CHECK_MSG(!(req && *req && strcmp(req, "0") != 0), "the SmolLM2 GGUF is required (FTQ_REQUIRE_MODEL) but missing at '%s'",
              real);
    printf("test_tokenizer_gguf: no SmolLM2 GGUF at '%s' (scripts/get-model.sh fetches it): that part is left out\n",
           real);
  }
  const char *pairs[][2] = {{"tests/ref/tok/sp_legacy.gguf", "sp_legacy"}, {"tests/ref/tok/llama3.gguf", "llama3"},
                            {real, "smollm2"}};
  for (int k = 0; k < (rf ? 3 : 2); k++) {
    ftq_tokenizer *t = NULL;
    CHECK_OK(ftq_tokenizer_load(pairs[k][0], NULL, &t));
    if (!t) continue;
    char epath[256];
    snprintf(epath, sizeof epath, "tests/ref/tok/%s/expected.json", pairs[k][1]);
    json_t *exp = tt_load_json(epath);
    json_t *cases = json_object_get(exp, "cases");
    size_t bad = 0;
    for (size_t i = 0; i < json_array_size(cases); i++) {
      size_t len, nw, nws;
      unsigned char *text = tt_b64(json_string_value(json_array_get(texts, i)), &len);
      int32_t *want = tt_ids(json_object_get(json_array_get(cases, i), "ids"), &nw);
      int32_t *wants = tt_ids(json_object_get(json_array_get(cases, i), "ids_special"), &nws);
      int32_t *ids;
      size_t n;
      if (ftq_tokenizer_encode(t, (const char *)text, len, 0, &ids, &n) != FTQ_OK || n != nw ||
          memcmp(ids, want, n * 4) != 0)
        bad++;
      if (ids) ftq_free(ids);
      if (ftq_tokenizer_encode(t, (const char *)text, len, FTQ_ENCODE_ADD_SPECIAL, &ids, &n) != FTQ_OK || n != nws ||
          memcmp(ids, wants, n * 4) != 0)
        bad++;
      if (ids) ftq_free(ids);
      char *dec;
      size_t dl;
      const char *wd = json_string_value(json_object_get(json_array_get(cases, i), "decoded"));
      if (ftq_tokenizer_decode(t, want, nw, 0, &dec, &dl) != FTQ_OK || dl != strlen(wd) || memcmp(dec, wd, dl) != 0)
        bad++;
      ftq_free(dec);
      free(want);
      free(wants);
      free(text);
    }
    CHECK_MSG(bad == 0, "%s: %zu mismatches against the tokenizer.json reference", pairs[k][0], bad);
    CHECK(ftq_tokenizer_chat_template(t) != NULL);
    json_decref(exp);
    ftq_tokenizer_destroy(t);
  }
}

int main(void) {
  json_t *corpus = tt_load_json("tests/ref/tok/corpus.json");
  test_gguf(json_object_get(corpus, "texts_b64"));
  json_decref(corpus);
  return test_finish("test_tokenizer_gguf");
}

/* Batches and the data set around them: collation against TRL's
 * DataCollatorForLanguageModeling (tests/ref/tok/data/collator.json); the
 * end-of-answer EOS is trained although padding uses the same token; the
 * training cursor resumes exactly; epochs, splits, truncation, packing,
 * errors naming file and line, parallel loading, and the exact-match
 * evaluator against its Python twin's cases. */
#include "../tok/tok_test_util.h"
#include <unistd.h>

#include "core/context.h"
#include "test_util.h"
#include "train/dataset.h"

static const char *CATALOG = "examples/data/catalog_train_messages.jsonl";
static const char *CATALOG_TEXT = "examples/data/catalog_train_text.jsonl";

static ftq_tokenizer *load_tok(const char *name) { return tt_load_ref_tokenizer(name); }

/* ---- collation against TRL ---------------------------------------------------- */
static void test_collator(void) {
  json_t *ref = tt_load_json("tests/ref/tok/data/collator.json");
  json_t *cases = json_object_get(ref, "cases");
  for (size_t c = 0; c < json_array_size(cases); c++) {
    json_t *k = json_array_get(cases, c);
    ftq_dataset ds;
    memset(&ds, 0, sizeof ds);
    ds.pad_id = 2;
    ds.padding_free = json_is_true(json_object_get(k, "padding_free"));
    ds.pad_to_multiple_of = json_integer_value(json_object_get(k, "pad_to_multiple_of"));
    json_t *exs = json_object_get(k, "examples");
    int64_t idx[16];
    for (size_t e = 0; e < json_array_size(exs); e++) {
      json_t *x = json_array_get(exs, e);
      size_t n, nl;
      int32_t *ids = tt_ids(json_object_get(x, "input_ids"), &n);
      int32_t *lab = tt_ids(json_object_get(x, "labels"), &nl);
      uint8_t *mask = malloc(n + 1);
      for (size_t t = 0; t < n; t++) mask[t] = lab[t] != -100;
      int32_t segs[8] = {(int32_t)n};
      size_t ns = 1;
      json_t *sl = json_object_get(x, "seq_lengths");
      if (sl) {
        ns = json_array_size(sl);
        for (size_t g = 0; g < ns; g++) segs[g] = (int32_t)json_integer_value(json_array_get(sl, g));
      }
      REQUIRE_OK(ftq_examples_append(&ds.split[0].ex, ids, mask, (int64_t)n, segs, (int64_t)ns, (int64_t)e + 1));
      idx[e] = (int64_t)e;
      free(ids);
      free(lab);
      free(mask);
    }
    ftq_batch *b;
    REQUIRE_OK(ftq_batch_create(&b));
    REQUIRE_OK(ftq_collate(&ds, FTQ_SPLIT_TRAIN, idx, (int64_t)json_array_size(exs), b));
    json_t *wid = json_object_get(k, "input_ids"), *wlab = json_object_get(k, "labels"),
           *wpos = json_object_get(k, "position_ids"), *watt = json_object_get(k, "attention_mask");
    int64_t rows = (int64_t)json_array_size(wid), seq = (int64_t)json_array_size(json_array_get(wid, 0));
    CHECK_MSG(b->rows == rows && b->seq_len == seq, "collator case %zu: shape %lldx%lld, TRL %lldx%lld", c,
              (long long)b->rows, (long long)b->seq_len, (long long)rows, (long long)seq);
    int ok = 1;
    for (int64_t r = 0; ok && r < rows && r < b->rows; r++)
      for (int64_t t = 0; t < seq && t < b->seq_len; t++) {
        int64_t p = r * b->seq_len + t;
        int pad = b->attention_mask[p] == 0;
        ok &= b->input_ids[p] == json_integer_value(json_array_get(json_array_get(wid, (size_t)r), (size_t)t));
        /* the first token of a row: TRL keeps its label without padding-free, libftq masks it (the
         * shifted loss never reads it) */
        int first = t == 0 && !ds.padding_free;
        if (!first)
          ok &= b->labels[p] == json_integer_value(json_array_get(json_array_get(wlab, (size_t)r), (size_t)t));
        if (!pad) ok &= b->position_ids[p] == json_integer_value(json_array_get(json_array_get(wpos, (size_t)r), (size_t)t));
        if (watt && !json_is_null(watt))
          ok &= b->attention_mask[p] == json_integer_value(json_array_get(json_array_get(watt, (size_t)r), (size_t)t));
        else
          ok &= !pad || t >= b->n_tokens; /* padding-free: padding only at the end */
      }
    CHECK_MSG(ok, "collator case %zu (padding_free %d, multiple %lld) differs from TRL", c, ds.padding_free,
              (long long)ds.pad_to_multiple_of);
    /* spans of sequences match sequence ids and positions */
    int64_t tok = 0;
    for (int64_t s = 0; s < b->n_seqs; s++) {
      int32_t st = b->seq_starts[s];
      CHECK(b->position_ids[st] == 0);
      for (int32_t q = 0; q < b->seq_lens[s]; q++)
        CHECK(b->sequence_ids[st + q] == b->sequence_ids[st] && b->position_ids[st + q] == q);
      tok += b->seq_lens[s];
    }
    CHECK(tok == b->n_tokens);
    ftq_batch_destroy(b);
    ftq_examples_free(&ds.split[0].ex);
  }
  json_decref(ref);
}

/* ---- EOS is trained although pad == eos ----------------------------------------- */
/* Every answer ends with the EOS token and it is trained, although padding
 * uses the same id: with completion-only labels the last trained token of
 * each example is the EOS, and with full-sequence labels every EOS is. */
static void check_eos_trained(ftq_tokenizer *tok, const char *path, const char *what, int completion_only) {
  int32_t eos = ftq_tokenizer_special_id(tok, FTQ_TOKEN_EOS), pad = ftq_tokenizer_special_id(tok, FTQ_TOKEN_PAD);
  CHECK_MSG(eos >= 0 && pad == eos, "%s: expected pad == eos (the TRL trap), got pad %d eos %d", what, pad, eos);
  ftq_options *o;
  REQUIRE_OK(ftq_options_create(&o));
  REQUIRE_OK(ftq_options_set_int(o, "per_device_train_batch_size", 4));
  REQUIRE_OK(ftq_options_set_bool(o, "assistant_only_loss", completion_only));
  if (completion_only) REQUIRE_OK(ftq_options_set_string(o, "response_template", "[/INST]"));
  ftq_dataset *ds;
  REQUIRE_OK(ftq_dataset_load(NULL, tok, path, o, &ds));
  ftq_batch *b;
  REQUIRE_OK(ftq_batch_create(&b));
  int64_t eos_seen = 0, eos_trained = 0, pad_trained = 0, answers = 0, answers_eos = 0;
  for (int64_t i = 0; i < ftq_dataset_num_batches(ds, FTQ_SPLIT_TRAIN); i++) {
    REQUIRE_OK(ftq_dataset_get_batch(ds, FTQ_SPLIT_TRAIN, 0, i, b));
    for (int64_t r = 0; r < b->rows; r++) {
      int64_t last_trained = -1;
      for (int64_t t = 0; t < b->seq_len; t++) {
        int64_t p = r * b->seq_len + t;
        if (!b->attention_mask[p]) {
          pad_trained += b->labels[p] != FTQ_IGNORE_INDEX;
          CHECK(b->input_ids[p] == pad);
          continue;
        }
        if (b->labels[p] != FTQ_IGNORE_INDEX) last_trained = p;
        if (b->input_ids[p] == eos) {
          eos_seen++;
          eos_trained += b->labels[p] == eos;
        }
      }
      answers++;
      answers_eos += last_trained >= 0 && b->input_ids[last_trained] == eos && b->labels[last_trained] == eos;
    }
  }
  if (completion_only)
    CHECK_MSG(answers > 0 && answers_eos == answers, "%s: %lld of %lld answers end with a trained EOS", what,
              (long long)answers_eos, (long long)answers);
  if (!completion_only)
    CHECK_MSG(eos_seen > 0 && eos_trained == eos_seen, "%s: %lld of %lld EOS tokens trained", what,
              (long long)eos_trained, (long long)eos_seen);
  CHECK(pad_trained == 0);
  ftq_batch_destroy(b);
  ftq_dataset_destroy(ds);
  ftq_options_destroy(o);
}

/* ---- cursor, epochs, order --------------------------------------------------------- */
static int same_batch(const ftq_batch *a, const ftq_batch *b) {
  size_t n = (size_t)(a->rows * a->seq_len);
  return a->rows == b->rows && a->seq_len == b->seq_len && memcmp(a->input_ids, b->input_ids, n * 4) == 0 &&
         memcmp(a->labels, b->labels, n * 4) == 0 && memcmp(a->position_ids, b->position_ids, n * 4) == 0 &&
         a->epoch == b->epoch && a->index == b->index;
}

static void test_cursor(ftq_tokenizer *tok, int group) {
  ftq_options *o;
  REQUIRE_OK(ftq_options_create(&o));
  REQUIRE_OK(ftq_options_set_int(o, "per_device_train_batch_size", 8));
  REQUIRE_OK(ftq_options_set_int(o, "gradient_accumulation_steps", 2));
  REQUIRE_OK(ftq_options_set_bool(o, "group_by_length", group));
  REQUIRE_OK(ftq_options_set_float(o, "test_size", 0.1));
  ftq_dataset *ds;
  REQUIRE_OK(ftq_dataset_load(NULL, tok, CATALOG, o, &ds));
  int64_t n = ftq_dataset_num_examples(ds, FTQ_SPLIT_TRAIN), ne = ftq_dataset_num_examples(ds, FTQ_SPLIT_EVAL);
  CHECK(n + ne == 1000 && ne == 100);
  int64_t nb = ftq_dataset_num_batches(ds, FTQ_SPLIT_TRAIN);
  CHECK(nb == (n + 7) / 8);
  ftq_batch *b, *c;
  REQUIRE_OK(ftq_batch_create(&b));
  REQUIRE_OK(ftq_batch_create(&c));
  /* one epoch covers every example once; next_batch == get_batch */
  char *seen = calloc((size_t)n, 1);
  for (int64_t i = 0; i < nb; i++) {
    REQUIRE_OK(ftq_dataset_next_batch(ds, b));
    REQUIRE_OK(ftq_dataset_get_batch(ds, FTQ_SPLIT_TRAIN, 0, i, c));
    CHECK(same_batch(b, c));
    for (int64_t k = 0; k < b->n_examples; k++) seen[b->examples[k]]++;
    if (group && i == 0) { /* the longest example comes first */
      int32_t longest = 0;
      for (int64_t k = 0; k < n; k++) longest = ds->split[0].lengths[k] > longest ? ds->split[0].lengths[k] : longest;
      CHECK(ds->split[0].lengths[b->examples[0]] == longest);
    }
  }
  int all = 1;
  for (int64_t k = 0; k < n; k++) all &= seen[k] == 1;
  CHECK_MSG(all, "an epoch must draw every example exactly once");
  free(seen);
  int64_t e, i;
  CHECK_OK(ftq_dataset_cursor(ds, &e, &i));
  CHECK(e == 1 && i == 0);
  /* a different order in epoch 1 */
  REQUIRE_OK(ftq_dataset_get_batch(ds, FTQ_SPLIT_TRAIN, 0, 0, c));
  REQUIRE_OK(ftq_dataset_next_batch(ds, b));
  CHECK(b->epoch == 1 && memcmp(b->examples, c->examples, (size_t)b->n_examples * 8) != 0);
  /* save, draw 5, seek back, draw again: identical */
  CHECK_OK(ftq_dataset_cursor(ds, &e, &i));
  ftq_batch *saved[5];
  for (int k = 0; k < 5; k++) {
    REQUIRE_OK(ftq_batch_create(&saved[k]));
    REQUIRE_OK(ftq_dataset_next_batch(ds, saved[k]));
  }
  /* a fresh data set (as after a restart) resumes at the saved cursor */
  ftq_dataset *ds2;
  REQUIRE_OK(ftq_dataset_load(NULL, tok, CATALOG, o, &ds2));
  CHECK(ftq_dataset_fingerprint(ds2) == ftq_dataset_fingerprint(ds));
  CHECK_OK(ftq_dataset_seek(ds2, e, i));
  for (int k = 0; k < 5; k++) {
    REQUIRE_OK(ftq_dataset_next_batch(ds2, b));
    CHECK_MSG(same_batch(b, saved[k]), "resumed batch %d differs", k);
    ftq_batch_destroy(saved[k]);
  }
  /* seek to the end of an epoch means the start of the next */
  CHECK_OK(ftq_dataset_seek(ds2, 3, nb));
  CHECK_OK(ftq_dataset_cursor(ds2, &e, &i));
  CHECK(e == 4 && i == 0);
  CHECK_STATUS(ftq_dataset_seek(ds2, 0, nb + 1), FTQ_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(ftq_dataset_get_batch(ds2, FTQ_SPLIT_TRAIN, 0, nb, b), FTQ_ERR_INVALID_ARGUMENT);
  /* eval: file order */
  int64_t prev = 0;
  for (int64_t k = 0; k < ne; k++) {
    const int32_t *ids;
    int64_t len, line;
    CHECK_OK(ftq_dataset_example(ds, FTQ_SPLIT_EVAL, k, &ids, NULL, &len, &line));
    CHECK(line > prev);
    prev = line;
  }
  REQUIRE_OK(ftq_dataset_get_batch(ds, FTQ_SPLIT_EVAL, 7, 0, b));
  CHECK(b->examples[0] == 0 && b->examples[7] == 7);
  /* another seed: another order and fingerprint */
  REQUIRE_OK(ftq_options_set_int(o, "data_seed", 1));
  ftq_dataset *ds3;
  REQUIRE_OK(ftq_dataset_load(NULL, tok, CATALOG, o, &ds3));
  CHECK(ftq_dataset_fingerprint(ds3) != ftq_dataset_fingerprint(ds));
  ftq_dataset_destroy(ds3);
  /* drop_last */
  REQUIRE_OK(ftq_options_set_bool(o, "dataloader_drop_last", 1));
  REQUIRE_OK(ftq_dataset_load(NULL, tok, CATALOG, o, &ds3));
  CHECK(ftq_dataset_num_batches(ds3, FTQ_SPLIT_TRAIN) == n / 8);
  ftq_dataset_destroy(ds3);
  ftq_batch_destroy(b);
  ftq_batch_destroy(c);
  ftq_dataset_destroy(ds2);
  ftq_dataset_destroy(ds);
  ftq_options_destroy(o);
}

/* ---- truncation, packing, parallel loading ---------------------------------------- */
static void test_shapes(ftq_tokenizer *tok) {
  ftq_options *o;
  REQUIRE_OK(ftq_options_create(&o));
  ftq_dataset *full, *ds;
  REQUIRE_OK(ftq_dataset_load(NULL, tok, CATALOG, o, &full));
  REQUIRE_OK(ftq_options_set_int(o, "max_seq_length", 40));
  REQUIRE_OK(ftq_dataset_load(NULL, tok, CATALOG, o, &ds));
  CHECK(ftq_dataset_stat(ds, FTQ_DATA_TRUNCATED) == 1000);
  const int32_t *a, *b;
  int64_t la, lb;
  CHECK_OK(ftq_dataset_example(full, FTQ_SPLIT_TRAIN, 3, &a, NULL, &la, NULL));
  CHECK_OK(ftq_dataset_example(ds, FTQ_SPLIT_TRAIN, 3, &b, NULL, &lb, NULL));
  CHECK(lb == 40 && la > 40 && memcmp(a, b, 40 * 4) == 0);
  ftq_dataset_destroy(ds);
  REQUIRE_OK(ftq_options_set_string(o, "truncation_mode", "keep_end"));
  REQUIRE_OK(ftq_dataset_load(NULL, tok, CATALOG, o, &ds));
  CHECK_OK(ftq_dataset_example(ds, FTQ_SPLIT_TRAIN, 3, &b, NULL, &lb, NULL));
  CHECK(lb == 40 && memcmp(a + la - 40, b, 40 * 4) == 0);
  ftq_dataset_destroy(ds);
  /* packing: full sequences of at most 512 tokens, padding-free batches */
  REQUIRE_OK(ftq_options_set_int(o, "max_seq_length", 512));
  REQUIRE_OK(ftq_options_set_bool(o, "packing", 1));
  REQUIRE_OK(ftq_options_set_int(o, "per_device_train_batch_size", 2));
  REQUIRE_OK(ftq_dataset_load(NULL, tok, CATALOG, o, &ds));
  int64_t n = ftq_dataset_num_examples(ds, FTQ_SPLIT_TRAIN), tokens = 0;
  for (int64_t k = 0; k < n; k++) {
    CHECK_OK(ftq_dataset_example(ds, FTQ_SPLIT_TRAIN, k, &b, NULL, &lb, NULL));
    CHECK(lb <= 512);
    tokens += lb;
  }
  CHECK(tokens == ftq_dataset_stat(full, FTQ_DATA_TOKENS));
  CHECK_MSG(tokens > n * 512 * 9 / 10, "packed sequences are only %.0f%% full", 100.0 * tokens / (n * 512.0));
  ftq_batch *bt;
  REQUIRE_OK(ftq_batch_create(&bt));
  REQUIRE_OK(ftq_dataset_get_batch(ds, FTQ_SPLIT_TRAIN, 0, 0, bt));
  CHECK(ftq_batch_rows(bt) == 1 && ftq_batch_num_examples(bt) == 2 && ftq_batch_num_tokens(bt) == ftq_batch_seq_len(bt));
  int64_t ns;
  const int32_t *st, *ln;
  CHECK_OK(ftq_batch_sequences(bt, &ns, &st, &ln));
  CHECK(ns > 4);
  for (int64_t s = 0; s < ns; s++) {
    CHECK(ftq_batch_position_ids(bt)[st[s]] == 0 && ftq_batch_labels(bt)[st[s]] == FTQ_IGNORE_INDEX);
    if (s) CHECK(ftq_batch_sequence_ids(bt)[st[s]] == ftq_batch_sequence_ids(bt)[st[s] - 1] + 1);
  }
  ftq_batch_destroy(bt);
  ftq_dataset_destroy(ds);
  /* loading on a thread pool gives the same data set */
  ftq_options *co;
  REQUIRE_OK(ftq_options_create(&co));
  REQUIRE_OK(ftq_options_set_int(co, "num_threads", 3));
  ftq_context *ctx;
  REQUIRE_OK(ftq_context_create("cpu", co, &ctx));
  ftq_options_destroy(o);
  REQUIRE_OK(ftq_options_create(&o));
  REQUIRE_OK(ftq_dataset_load(ctx, tok, CATALOG, o, &ds));
  CHECK(ftq_dataset_fingerprint(ds) == ftq_dataset_fingerprint(full));
  ftq_dataset_destroy(ds);
  ftq_context_destroy(ctx);
  ftq_options_destroy(co);
  ftq_dataset_destroy(full);
  ftq_options_destroy(o);
}

/* ---- malformed input ------------------------------------------------------------ */
static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  fputs(text, f);
  fclose(f);
}

static void test_errors(ftq_tokenizer *tok) {
  char dir[] = "/tmp/ftq_data_XXXXXX";
  if (!mkdtemp(dir)) {
    CHECK(0);
    return;
  }
  char bad[600], odd[600];
  snprintf(bad, sizeof bad, "%s/bad.jsonl", dir);
  snprintf(odd, sizeof odd, "%s/odd.jsonl", dir);
  write_file(bad, "{\"text\": \"ok\"}\n\n{\"text\": \"broken\"\n{\"text\": \"ok too\"}\r\n[1, 2]\n{\"text\": \"last, no newline\"}");
  write_file(odd, "{\"text\": \"ok\"}\n{\"question\": \"no known field\"}\n");
  ftq_options *o;
  REQUIRE_OK(ftq_options_create(&o));
  ftq_dataset *ds = NULL;
  CHECK_STATUS(ftq_dataset_load(NULL, tok, bad, o, &ds), FTQ_ERR_FORMAT);
  CHECK_ERROR_MENTIONS("bad.jsonl:3:");
  CHECK(ds == NULL);
  CHECK_STATUS(ftq_dataset_load(NULL, tok, odd, o, &ds), FTQ_ERR_FORMAT);
  CHECK_ERROR_MENTIONS("odd.jsonl:2:");
  CHECK_ERROR_MENTIONS("messages");
  REQUIRE_OK(ftq_options_set_bool(o, "skip_malformed_rows", 1));
  REQUIRE_OK(ftq_dataset_load(NULL, tok, bad, o, &ds));
  CHECK(ftq_dataset_stat(ds, FTQ_DATA_SKIPPED) == 2 && ftq_dataset_num_examples(ds, FTQ_SPLIT_TRAIN) == 3);
  int64_t line;
  const int32_t *ids;
  int64_t len;
  CHECK_OK(ftq_dataset_example(ds, FTQ_SPLIT_TRAIN, 2, &ids, NULL, &len, &line));
  CHECK(line == 6);
  ftq_dataset_destroy(ds);
  CHECK_STATUS(ftq_dataset_load(NULL, tok, "/nonexistent/data.jsonl", o, &ds), FTQ_ERR_IO);
  CHECK_ERROR_MENTIONS("/nonexistent/data.jsonl");
  /* messages without a chat template */
  REQUIRE_OK(ftq_options_set_bool(o, "skip_malformed_rows", 0));
  REQUIRE_OK(ftq_options_set_string(o, "chat_template", "none"));
  CHECK_STATUS(ftq_dataset_load(NULL, tok, CATALOG, o, &ds), FTQ_ERR_STATE);
  CHECK_ERROR_MENTIONS("catalog_train_messages.jsonl:1:");
  CHECK_ERROR_MENTIONS("chat_template");
  /* option checks */
  REQUIRE_OK(ftq_options_unset(o, "chat_template"));
  REQUIRE_OK(ftq_options_set_bool(o, "packing", 1));
  REQUIRE_OK(ftq_options_set_int(o, "max_seq_length", 0));
  CHECK_STATUS(ftq_dataset_load(NULL, tok, CATALOG, o, &ds), FTQ_ERR_OPTION_RANGE);
  CHECK_STATUS(ftq_options_set_float(o, "test_size", 1.5), FTQ_ERR_OPTION_RANGE);
  CHECK_STATUS(ftq_options_set_string(o, "packing_strategy", "ffd"), FTQ_ERR_OPTION_RANGE);
  ftq_options_destroy(o);
  remove(bad);
  remove(odd);
  rmdir(dir);
}

static void test_exact_match(void) {
  json_t *cases = tt_load_json("examples/data/exact_match_cases.json");
  for (size_t i = 0; i < json_array_size(cases); i++) {
    json_t *c = json_array_get(cases, i);
    json_t *p = json_object_get(c, "prediction"), *r = json_object_get(c, "reference");
    int want = json_is_true(json_object_get(c, "match"));
    CHECK_MSG(ftq_dataset_exact_match(json_string_value(p), json_string_length(p), json_string_value(r),
                                      json_string_length(r)) == want, "exact match case %zu", i);
  }
  json_decref(cases);
  CHECK(ftq_dataset_exact_match(NULL, 0, "", 0) == 1);
  CHECK(ftq_dataset_exact_match(NULL, 3, "abc", 3) == 0);
}

int main(void) {
  test_collator();
  ftq_tokenizer *smol = load_tok("smollm2"), *sp = load_tok("sp_legacy");
  check_eos_trained(smol, CATALOG, "SmolLM2 messages, assistant only", 1);
  check_eos_trained(smol, CATALOG, "SmolLM2 messages, full sequence", 0);
  check_eos_trained(sp, CATALOG_TEXT, "Llama-2 text, after [/INST]", 1);
  check_eos_trained(sp, CATALOG_TEXT, "Llama-2 text, full sequence", 0);
  test_cursor(smol, 0);
  test_cursor(smol, 1);
  test_shapes(smol);
  test_errors(smol);
  test_exact_match();
  ftq_tokenizer_destroy(smol);
  ftq_tokenizer_destroy(sp);
  return test_finish("test_batches");
}

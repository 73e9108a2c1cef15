/* Row formats, chat templates and loss masks of ftq_dataset against the
 * reference built with transformers following TRL's SFTTrainer preparation
 * (tests/ref/tok/data/rows_expected.json, from make_data_ref.py). */
#include "../tok/tok_test_util.h"
#include "test_util.h"

static void run_config(json_t *cfg, const char *data_path) {
  const char *name = json_string_value(json_object_get(cfg, "tokenizer"));
  ftq_tokenizer *tok = tt_load_ref_tokenizer(name);
  ftq_options *o;
  REQUIRE_OK(ftq_options_create(&o));
  json_t *jo = json_object_get(cfg, "options");
  const char *key;
  json_t *v;
  json_object_foreach(jo, key, v) {
    if (json_is_boolean(v)) REQUIRE_OK(ftq_options_set_bool(o, key, json_is_true(v)));
    else REQUIRE_OK(ftq_options_set_string(o, key, json_string_value(v)));
  }
  REQUIRE_OK(ftq_options_set_int(o, "max_seq_length", 0));
  ftq_dataset *ds;
  REQUIRE_OK(ftq_dataset_load(NULL, tok, data_path, o, &ds));
  json_t *rows = json_object_get(cfg, "rows");
  CHECK(ftq_dataset_num_examples(ds, FTQ_SPLIT_TRAIN) == (int64_t)json_array_size(rows));
  CHECK(ftq_dataset_num_examples(ds, FTQ_SPLIT_EVAL) == 0);
  for (size_t i = 0; i < json_array_size(rows) && (int64_t)i < ftq_dataset_num_examples(ds, FTQ_SPLIT_TRAIN); i++) {
    json_t *r = json_array_get(rows, i);
    size_t nw, nm;
    int32_t *want = tt_ids(json_object_get(r, "ids"), &nw);
    int32_t *wmask = tt_ids(json_object_get(r, "mask"), &nm);
    const int32_t *ids;
    const uint8_t *mask;
    int64_t len, line;
    CHECK_OK(ftq_dataset_example(ds, FTQ_SPLIT_TRAIN, (int64_t)i, &ids, &mask, &len, &line));
    int ok = (size_t)len == nw && memcmp(ids, want, nw * sizeof *ids) == 0;
    CHECK_MSG(ok, "%s %s row %zu: token ids differ", name, json_dumps(jo, JSON_COMPACT), i);
    if (!ok) {
      tt_print_ids("libftq", ids, (size_t)len);
      tt_print_ids("reference", want, nw);
    }
    int mok = ok;
    for (size_t k = 0; ok && k < nw; k++) mok &= mask[k] == (wmask[k] != 0);
    CHECK_MSG(mok, "%s %s row %zu: loss mask differs", name, json_dumps(jo, JSON_COMPACT), i);
    if (ok && !mok) {
      fprintf(stderr, "  libftq:   ");
      for (size_t k = 0; k < nw; k++) fprintf(stderr, "%d", mask[k]);
      fprintf(stderr, "\n  reference: ");
      for (size_t k = 0; k < nw; k++) fprintf(stderr, "%d", wmask[k]);
      fprintf(stderr, "\n");
    }
    CHECK(line == (int64_t)i + 1);
    free(want);
    free(wmask);
  }
  ftq_dataset_destroy(ds);
  ftq_options_destroy(o);
  ftq_tokenizer_destroy(tok);
}

int main(void) {
  json_t *ref = tt_load_json("tests/ref/tok/data/rows_expected.json");
  json_t *cfgs = json_object_get(ref, "configs");
  for (size_t i = 0; i < json_array_size(cfgs); i++) {
    run_config(json_array_get(cfgs, i), "tests/ref/tok/data/rows.jsonl");
    run_config(json_array_get(cfgs, i), "tests/ref/tok/data/rows.jsonl.gz"); /* same through zlib */
  }
  json_decref(ref);
  return test_finish("test_dataset_rows");
}

/* Packing against TRL's pack_dataset on the same sequence lengths
 * (tests/ref/tok/data/packing.json): the same rows with the same pieces of
 * the same sequences for bfd and bfd_split, and the same tokens per row for
 * wrapped (where libftq also keeps sequence boundaries). */
#include "../tok/tok_test_util.h"
#include "test_util.h"
#include "train/dataset.h"

int main(void) {
  json_t *ref = tt_load_json("tests/ref/tok/data/packing.json");
  json_t *cases = json_object_get(ref, "cases");
  for (size_t c = 0; c < json_array_size(cases); c++) {
    json_t *k = json_array_get(cases, c);
    size_t n;
    int32_t *lengths = tt_ids(json_object_get(k, "lengths"), &n);
    int64_t seq = json_integer_value(json_object_get(k, "seq_length"));
    const char *strategy = json_string_value(json_object_get(k, "strategy"));
    ftq_pack_strategy ps = strcmp(strategy, "bfd") == 0 ? FTQ_PACK_BFD
                           : strcmp(strategy, "bfd_split") == 0 ? FTQ_PACK_BFD_SPLIT : FTQ_PACK_WRAPPED;
    /* token t of example i has id i * 100000 + t, as in the reference */
    ftq_examples in = {0}, out = {0};
    for (size_t i = 0; i < n; i++) {
      int32_t *ids = malloc(((size_t)lengths[i] + 1) * sizeof *ids);
      uint8_t *m = malloc((size_t)lengths[i] + 1);
      for (int32_t t = 0; t < lengths[i]; t++) ids[t] = (int32_t)i * 100000 + t, m[t] = (uint8_t)(t & 1);
      REQUIRE_OK(ftq_examples_append(&in, ids, m, lengths[i], &lengths[i], 1, (int64_t)i + 1));
      free(ids);
      free(m);
    }
    REQUIRE_OK(ftq_pack(&in, seq, ps, &out));
    json_t *rows = json_object_get(k, "rows");
    int ok = out.n == (int64_t)json_array_size(rows);
    for (int64_t r = 0; ok && r < out.n; r++) {
      json_t *segs = json_object_get(json_array_get(rows, r), "segments");
      /* tokens in order */
      int64_t t = out.start[r];
      size_t si;
      json_t *sg;
      json_array_foreach(segs, si, sg) {
        int64_t ex = json_integer_value(json_array_get(sg, 0)), off = json_integer_value(json_array_get(sg, 1)),
                len = json_integer_value(json_array_get(sg, 2));
        for (int64_t q = 0; q < len && ok; q++, t++) {
          ok = t < out.start[r + 1] && out.ids[t] == (int32_t)(ex * 100000 + off + q) &&
               out.mask[t] == (uint8_t)((off + q) & 1);
        }
      }
      ok = ok && t == out.start[r + 1];
      if (ps != FTQ_PACK_WRAPPED) {
        /* the sequence lengths are TRL's seq_lengths */
        json_t *sl = json_object_get(json_array_get(rows, r), "seq_lengths");
        ok = ok && (int64_t)json_array_size(sl) == out.seg_first[r + 1] - out.seg_first[r];
        for (int64_t g = out.seg_first[r]; ok && g < out.seg_first[r + 1]; g++)
          ok = out.seg_len[g] == json_integer_value(json_array_get(sl, (size_t)(g - out.seg_first[r])));
      } else {
        /* wrapped: a new sequence wherever the source example changes */
        int64_t g = out.seg_first[r], p = out.start[r];
        for (; ok && g < out.seg_first[r + 1]; g++) {
          int32_t ex = out.ids[p] / 100000;
          for (int32_t q = 0; q < out.seg_len[g]; q++) ok = ok && out.ids[p + q] / 100000 == ex;
          p += out.seg_len[g];
          if (ok && g + 1 < out.seg_first[r + 1]) ok = out.ids[p] / 100000 != ex;
        }
      }
    }
    CHECK_MSG(ok, "packing case %zu (%s, %zu rows, length %lld) differs from TRL (%lld rows vs %zu)", c, strategy, n,
              (long long)seq, (long long)out.n, json_array_size(rows));
    for (int64_t r = 0; r < out.n; r++) CHECK(ftq_example_len(&out, r) <= seq);
    ftq_examples_free(&in);
    ftq_examples_free(&out);
    free(lengths);
  }
  json_decref(ref);
  return test_finish("test_packing");
}

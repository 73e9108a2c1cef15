/* Samplers: group_by_length against transformers' get_length_grouped_indices
 * run on the same permutations (tests/ref/tok/data/group_by_length.json),
 * and the seeded permutation: a permutation, reproducible, different per
 * epoch and seed, and uniform (positions checked with a chi-square test). */
#include "../tok/tok_test_util.h"
#include "test_util.h"
#include "train/sampler.h"

static void test_group_by_length(void) {
  json_t *ref = tt_load_json("tests/ref/tok/data/group_by_length.json");
  json_t *cases = json_object_get(ref, "cases");
  for (size_t c = 0; c < json_array_size(cases); c++) {
    json_t *k = json_array_get(cases, c);
    size_t n, np, ne;
    int32_t *lengths = tt_ids(json_object_get(k, "lengths"), &n);
    int32_t *perm32 = tt_ids(json_object_get(k, "perm"), &np);
    int32_t *want = tt_ids(json_object_get(k, "expected"), &ne);
    int64_t *perm = malloc((n + 1) * sizeof *perm), *out = malloc((n + 1) * sizeof *out);
    for (size_t i = 0; i < n; i++) perm[i] = perm32[i];
    int64_t bs = json_integer_value(json_object_get(k, "batch_size"));
    CHECK_OK(ftq_length_grouped_indices(lengths, (int64_t)n, bs, perm, out));
    int ok = ne == n;
    for (size_t i = 0; ok && i < n; i++) ok = out[i] == want[i];
    CHECK_MSG(ok, "group_by_length case %zu (n=%zu, batch %lld) differs from transformers", c, n, (long long)bs);
    free(lengths);
    free(perm32);
    free(want);
    free(perm);
    free(out);
  }
  json_decref(ref);
}

static void test_permutation(void) {
  enum { N = 1000 };
  int64_t a[N], b[N], c[N];
  ftq_random_permutation(42, FTQ_RNG_STREAM_DATA_ORDER, N, a);
  ftq_random_permutation(42, FTQ_RNG_STREAM_DATA_ORDER, N, b);
  CHECK(memcmp(a, b, sizeof a) == 0);
  char seen[N] = {0};
  int ok = 1;
  for (int i = 0; i < N; i++) {
    if (a[i] < 0 || a[i] >= N || seen[a[i]]) ok = 0;
    else seen[a[i]] = 1;
  }
  CHECK_MSG(ok, "not a permutation");
  ftq_random_permutation(42, FTQ_RNG_STREAM_DATA_ORDER + 1, N, b);
  ftq_random_permutation(43, FTQ_RNG_STREAM_DATA_ORDER, N, c);
  CHECK(memcmp(a, b, sizeof a) != 0);
  CHECK(memcmp(a, c, sizeof a) != 0);
  /* uniformity: where element 0 .. 7 of n = 8 land, over many seeds */
  enum { M = 8, T = 16000 };
  long cnt[M][M] = {{0}};
  for (int s = 0; s < T; s++) {
    int64_t p[M];
    ftq_random_permutation((uint64_t)s, FTQ_RNG_STREAM_DATA_ORDER, M, p);
    for (int i = 0; i < M; i++) cnt[p[i]][i]++;
  }
  double chi = 0, e = (double)T / M;
  for (int i = 0; i < M; i++)
    for (int j = 0; j < M; j++) chi += (cnt[i][j] - e) * (cnt[i][j] - e) / e;
  /* 64 cells, 49 degrees of freedom: p = 0.001 at about 85 */
  CHECK_MSG(chi < 85, "position distribution not uniform: chi^2 = %.1f", chi);
  int64_t one[1];
  ftq_random_permutation(1, 2, 1, one);
  CHECK(one[0] == 0);
  ftq_random_permutation(1, 2, 0, one);
}

int main(void) {
  test_group_by_length();
  test_permutation();
  return test_finish("test_sampler");
}

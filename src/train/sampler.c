/* Samplers: seeded permutations and group_by_length (see sampler.h). */
#include "train/sampler.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/rng.h"

void ftq_random_permutation(uint64_t seed, uint64_t stream, int64_t n, int64_t *perm) {
  for (int64_t i = 0; i < n; i++) perm[i] = i;
  uint64_t ctr = 0;
  for (int64_t i = n - 1; i > 0; i--) {
    /* j uniform in [0, i]: 64-bit draws, rejecting the biased tail */
    uint64_t range = (uint64_t)i + 1, limit = UINT64_MAX - UINT64_MAX % range, r;
    do {
      r = ((uint64_t)ftq_rng_u32(seed, stream, ctr) << 32) | ftq_rng_u32(seed, stream, ctr + 1);
      ctr += 2;
    } while (r >= limit);
    int64_t j = (int64_t)(r % range);
    int64_t t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
}

/* Stable sort of a megabatch by length, descending (Python's sorted with
 * reverse=True keeps equal elements in their original order). */
static void sort_desc(int64_t *a, int64_t n, const int32_t *len, int64_t *tmp) {
  if (n < 2) return;
  int64_t h = n / 2;
  sort_desc(a, h, len, tmp);
  sort_desc(a + h, n - h, len, tmp);
  int64_t i = 0, j = h, k = 0;
  while (i < h && j < n) tmp[k++] = len[a[j]] > len[a[i]] ? a[j++] : a[i++];
  while (i < h) tmp[k++] = a[i++];
  while (j < n) tmp[k++] = a[j++];
  memcpy(a, tmp, (size_t)n * sizeof *a);
}

ftq_status ftq_length_grouped_indices(const int32_t *lengths, int64_t n, int64_t batch_size, const int64_t *perm,
                                      int64_t *out) {
  if (n <= 0) return FTQ_OK;
  if (batch_size < 1) batch_size = 1;
  int64_t mult = n / (batch_size * 4);
  if (mult > 50) mult = 50;
  if (mult == 0) mult = 1;
  int64_t mb = mult * batch_size;
  memcpy(out, perm, (size_t)n * sizeof *out);
  int64_t *tmp = ftq_malloc((size_t)(mb < n ? mb : n) * sizeof *tmp, "length-grouped sampler");
  if (!tmp) return FTQ_ERR_OUT_OF_MEMORY;
  int64_t best_mb = 0;
  int32_t best_len = -1;
  for (int64_t s = 0; s < n; s += mb) {
    int64_t cnt = n - s < mb ? n - s : mb;
    sort_desc(out + s, cnt, lengths, tmp);
    /* torch.argmax over the megabatch maxima: the first maximum */
    if (lengths[out[s]] > best_len) {
      best_len = lengths[out[s]];
      best_mb = s;
    }
  }
  free(tmp);
  int64_t t = out[0];
  out[0] = out[best_mb];
  out[best_mb] = t;
  return FTQ_OK;
}

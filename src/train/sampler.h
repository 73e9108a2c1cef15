/* Order of examples: a seeded shuffle per epoch (Philox, so any epoch's
 * order is a pure function of (seed, epoch)) and Hugging Face's
 * group_by_length megabatches (transformers' get_length_grouped_indices)
 * applied to such a permutation. */
#ifndef FTQ_TRAIN_SAMPLER_H
#define FTQ_TRAIN_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "libftq/ftq_status.h"

/* Philox streams of the data pipeline ("DATA", "SPLT" in the high word):
 * distinct from every other use of the generator. */
#define FTQ_RNG_STREAM_DATA_ORDER 0x4441544100000000ull /* + epoch */
#define FTQ_RNG_STREAM_DATA_SPLIT 0x53504C5400000000ull

/* A uniformly random permutation of 0..n-1 (Fisher-Yates from the top, each
 * draw unbiased by rejection) from Philox stream `stream` under `seed`. */
void ftq_random_permutation(uint64_t seed, uint64_t stream, int64_t n, int64_t *perm);

/* transformers' get_length_grouped_indices with the random permutation
 * given: megabatches of mega_batch_mult * batch_size consecutive entries of
 * `perm` (mega_batch_mult = min(n / (4 * batch_size), 50), at least 1),
 * each sorted by length, longest first (stable); then the first element of
 * the megabatch holding the longest example (the first such megabatch) is
 * swapped with the first element of megabatch 0. Writes n indices to out. */
ftq_status ftq_length_grouped_indices(const int32_t *lengths, int64_t n, int64_t batch_size, const int64_t *perm,
                                      int64_t *out);

#endif /* FTQ_TRAIN_SAMPLER_H */

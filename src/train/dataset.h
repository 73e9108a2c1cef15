/* Internal view of ftq_dataset: tokenized examples of each split stored
 * back to back (ids, loss mask, and the lengths of the sequences an example
 * is made of: one, or several when packed), the settings that shape batches,
 * and the training cursor. */
#ifndef FTQ_TRAIN_DATASET_H
#define FTQ_TRAIN_DATASET_H

#include <stdint.h>

#include "libftq/ftq_dataset.h"
#include "train/batch.h"

/* Examples stored back to back. */
typedef struct ftq_examples {
  int32_t *ids;
  uint8_t *mask;       /* 1 = trained */
  int64_t n_tokens, cap_tokens;
  int64_t *start;      /* [n + 1]: token offset of each example */
  int64_t *seg_first;  /* [n + 1]: index of its first sequence in seg_len */
  int32_t *seg_len;    /* lengths of the sequences examples are made of */
  int64_t n_segs, cap_segs;
  int64_t *line;       /* [n]: JSONL line of the (first) row */
  int64_t n, cap;
} ftq_examples;

ftq_status ftq_examples_append(ftq_examples *e, const int32_t *ids, const uint8_t *mask, int64_t len,
                               const int32_t *seg_len, int64_t n_segs, int64_t line);
void ftq_examples_free(ftq_examples *e);
static inline int64_t ftq_example_len(const ftq_examples *e, int64_t i) { return e->start[i + 1] - e->start[i]; }

#define FTQ_PACK_BLOCK 1000 /* rows packed together, as TRL's batched map */

typedef enum ftq_pack_strategy { FTQ_PACK_BFD = 0, FTQ_PACK_BFD_SPLIT = 1, FTQ_PACK_WRAPPED = 2 } ftq_pack_strategy;

/* Packs `in` (one sequence per example) into examples of at most max_len
 * tokens: TRL's best-fit-decreasing (sequences longer than max_len cut to
 * it, or split into max_len pieces for BFD_SPLIT) or "wrapped"
 * (concatenated and cut every max_len tokens; a sequence cut in two
 * continues as a new sequence). Empty sequences are dropped. Rows are
 * packed in blocks of FTQ_PACK_BLOCK. */
ftq_status ftq_pack(const ftq_examples *in, int64_t max_len, ftq_pack_strategy strategy, ftq_examples *out);

typedef struct ftq_split_state {
  ftq_examples ex;
  int32_t *lengths;   /* tokens per example, for group_by_length */
  int64_t batch_size;
  int64_t cached_epoch; /* epoch whose order is in `order`, -1 none */
  int64_t *order;
} ftq_split_state;

struct ftq_dataset {
  ftq_split_state split[2];
  int64_t stats[7];
  int32_t pad_id;
  int group_by_length, drop_last, padding_free, packed;
  int64_t grouping_batch_size; /* per_device_train_batch_size * gradient_accumulation_steps */
  int64_t pad_to_multiple_of;
  uint64_t order_seed;
  int64_t cur_epoch, cur_index;
  uint64_t fingerprint;
};

/* The order of split `s` in `epoch` (train: shuffled or length-grouped;
 * eval: file order), cached. */
ftq_status ftq_dataset_order(ftq_dataset *ds, ftq_split s, int64_t epoch, const int64_t **order);

/* Collates examples (indices into split `s`) into b. */
ftq_status ftq_collate(const ftq_dataset *ds, ftq_split s, const int64_t *idx, int64_t n, ftq_batch *b);

/* Regroups group_by_length for a global batch of this many examples (data
 * parallel: per-device batch x ranks x accumulation); the fingerprint
 * changes with it. */
ftq_status ftq_dataset_set_grouping(ftq_dataset *ds, int64_t grouping_batch_size);

#endif /* FTQ_TRAIN_DATASET_H */

/* Internal view of ftq_batch: host arrays in the layout the model takes,
 * row-major [rows, seq_len], grown as needed and reused. The trainer reads
 * the fields directly. */
#ifndef FTQ_TRAIN_BATCH_H
#define FTQ_TRAIN_BATCH_H

#include <stdint.h>

#include "libftq/ftq_dataset.h"

struct ftq_batch {
  int64_t rows, seq_len;
  int32_t *input_ids;      /* [rows * seq_len] */
  int32_t *labels;         /* [rows * seq_len], FTQ_IGNORE_INDEX where untrained */
  int32_t *position_ids;   /* [rows * seq_len] */
  int32_t *sequence_ids;   /* [rows * seq_len], -1 on padding */
  int32_t *attention_mask; /* [rows * seq_len] */
  size_t cap;              /* elements allocated per array */
  int32_t *seq_starts, *seq_lens; /* [n_seqs]: spans of the flattened arrays */
  int64_t n_seqs;
  size_t cap_seqs;
  int64_t *examples;       /* [n_examples] indices into the split */
  int64_t n_examples;
  size_t cap_examples;
  int64_t n_tokens, n_loss_tokens;
  int64_t epoch, index;
};

/* Sizes the arrays for rows x seq_len (contents undefined). */
ftq_status ftq_batch_reserve(ftq_batch *b, int64_t rows, int64_t seq_len, int64_t n_seqs, int64_t n_examples);

#endif /* FTQ_TRAIN_BATCH_H */

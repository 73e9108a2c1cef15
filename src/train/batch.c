/* Batches: collation of examples into padded (or padding-free) arrays, as
 * transformers' / TRL's DataCollatorForLanguageModeling lays them out:
 * right padding with the pad token, labels FTQ_IGNORE_INDEX on padding (by
 * position, never by token id), position ids restarting at every sequence. */
#include "train/batch.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "train/dataset.h"

ftq_status ftq_batch_create(ftq_batch **out) {
  FTQ_CHECK_ARG(out, "ftq_batch_create: out must not be NULL");
  *out = ftq_calloc(1, sizeof **out, "batch");
  return *out ? FTQ_OK : FTQ_ERR_OUT_OF_MEMORY;
}

void ftq_batch_destroy(ftq_batch *b) {
  if (!b) return;
  free(b->input_ids);
  free(b->labels);
  free(b->position_ids);
  free(b->sequence_ids);
  free(b->attention_mask);
  free(b->seq_starts);
  free(b->seq_lens);
  free(b->examples);
  free(b);
}

static ftq_status grow32(int32_t **p, size_t n) {
  int32_t *q = realloc(*p, n * sizeof *q);
  if (!q) return ftq_error(FTQ_ERR_OUT_OF_MEMORY, "out of host memory for a batch of %zu tokens", n);
  *p = q;
  return FTQ_OK;
}

ftq_status ftq_batch_reserve(ftq_batch *b, int64_t rows, int64_t seq_len, int64_t n_seqs, int64_t n_examples) {
  size_t n = (size_t)(rows * seq_len);
  if (n > b->cap) {
    FTQ_TRY(grow32(&b->input_ids, n));
    FTQ_TRY(grow32(&b->labels, n));
    FTQ_TRY(grow32(&b->position_ids, n));
    FTQ_TRY(grow32(&b->sequence_ids, n));
    FTQ_TRY(grow32(&b->attention_mask, n));
    b->cap = n;
  }
  if ((size_t)n_seqs > b->cap_seqs) {
    FTQ_TRY(grow32(&b->seq_starts, (size_t)n_seqs));
    FTQ_TRY(grow32(&b->seq_lens, (size_t)n_seqs));
    b->cap_seqs = (size_t)n_seqs;
  }
  if ((size_t)n_examples > b->cap_examples) {
    int64_t *q = realloc(b->examples, (size_t)n_examples * sizeof *q);
    if (!q) return ftq_error(FTQ_ERR_OUT_OF_MEMORY, "out of host memory for a batch");
    b->examples = q;
    b->cap_examples = (size_t)n_examples;
  }
  b->rows = rows;
  b->seq_len = seq_len;
  return FTQ_OK;
}

ftq_status ftq_collate(const ftq_dataset *ds, ftq_split s, const int64_t *idx, int64_t n, ftq_batch *b) {
  const ftq_examples *e = &ds->split[s].ex;
  int64_t longest = 0, total = 0, n_seqs = 0;
  for (int64_t i = 0; i < n; i++) {
    int64_t len = ftq_example_len(e, idx[i]);
    longest = len > longest ? len : longest;
    total += len;
    n_seqs += e->seg_first[idx[i] + 1] - e->seg_first[idx[i]];
  }
  int64_t rows = ds->padding_free ? 1 : n, seq = ds->padding_free ? total : longest;
  int64_t m = ds->pad_to_multiple_of;
  if (m > 1) seq = (seq + m - 1) / m * m;
  if (rows > 0 && seq > INT32_MAX / rows)
    return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "batch of %lld x %lld tokens is too large", (long long)rows,
                     (long long)seq);
  FTQ_TRY(ftq_batch_reserve(b, rows, seq, n_seqs, n));
  size_t cells = (size_t)(rows * seq);
  for (size_t k = 0; k < cells; k++) {
    b->input_ids[k] = ds->pad_id;
    b->labels[k] = FTQ_IGNORE_INDEX;
    b->sequence_ids[k] = -1;
    b->attention_mask[k] = 0;
  }
  int64_t pos = 0, sq = 0, in_row = 0; /* pos: flat write position; in_row: sequence index within the row */
  b->n_tokens = b->n_loss_tokens = 0;
  for (int64_t i = 0; i < n; i++) {
    int64_t ex = idx[i];
    if (!ds->padding_free) {
      pos = i * seq;
      in_row = 0;
    }
    const int32_t *ids = e->ids + e->start[ex];
    const uint8_t *mask = e->mask + e->start[ex];
    int64_t t = 0;
    for (int64_t g = e->seg_first[ex]; g < e->seg_first[ex + 1]; g++) {
      int32_t len = e->seg_len[g];
      b->seq_starts[sq] = (int32_t)pos;
      b->seq_lens[sq++] = len;
      for (int32_t p = 0; p < len; p++, t++, pos++) {
        b->input_ids[pos] = ids[t];
        b->labels[pos] = (mask[t] && p > 0) ? ids[t] : FTQ_IGNORE_INDEX;
        b->position_ids[pos] = p;
        b->sequence_ids[pos] = (int32_t)in_row;
        b->attention_mask[pos] = 1;
        b->n_loss_tokens += b->labels[pos] != FTQ_IGNORE_INDEX;
      }
      in_row++;
    }
    b->n_tokens += t;
    b->examples[i] = ex;
    /* padding continues the last position count */
    if (!ds->padding_free) {
      int32_t next = e->seg_first[ex + 1] > e->seg_first[ex] ? e->seg_len[e->seg_first[ex + 1] - 1] : 0;
      for (int64_t k = pos; k < (i + 1) * seq; k++) b->position_ids[k] = next++;
    }
  }
  if (ds->padding_free) {
    int32_t next = n_seqs ? b->seq_lens[n_seqs - 1] : 0;
    for (int64_t k = pos; k < seq; k++) b->position_ids[k] = next++;
  }
  b->n_seqs = n_seqs;
  b->n_examples = n;
  return FTQ_OK;
}

int64_t ftq_batch_rows(const ftq_batch *b) { return b ? b->rows : -1; }
int64_t ftq_batch_seq_len(const ftq_batch *b) { return b ? b->seq_len : -1; }
const int32_t *ftq_batch_input_ids(const ftq_batch *b) { return b ? b->input_ids : NULL; }
const int32_t *ftq_batch_labels(const ftq_batch *b) { return b ? b->labels : NULL; }
const int32_t *ftq_batch_position_ids(const ftq_batch *b) { return b ? b->position_ids : NULL; }
const int32_t *ftq_batch_sequence_ids(const ftq_batch *b) { return b ? b->sequence_ids : NULL; }
const int32_t *ftq_batch_attention_mask(const ftq_batch *b) { return b ? b->attention_mask : NULL; }
int64_t ftq_batch_num_tokens(const ftq_batch *b) { return b ? b->n_tokens : -1; }
int64_t ftq_batch_num_loss_tokens(const ftq_batch *b) { return b ? b->n_loss_tokens : -1; }
const int64_t *ftq_batch_example_indices(const ftq_batch *b) { return b ? b->examples : NULL; }
int64_t ftq_batch_num_examples(const ftq_batch *b) { return b ? b->n_examples : -1; }

ftq_status ftq_batch_sequences(const ftq_batch *b, int64_t *n, const int32_t **starts, const int32_t **lengths) {
  FTQ_CHECK_ARG(b && n && starts && lengths, "ftq_batch_sequences: NULL argument");
  *n = b->n_seqs;
  *starts = b->seq_starts;
  *lengths = b->seq_lens;
  return FTQ_OK;
}

ftq_status ftq_batch_position(const ftq_batch *b, int64_t *epoch, int64_t *index) {
  FTQ_CHECK_ARG(b, "ftq_batch_position: NULL batch");
  if (epoch) *epoch = b->epoch;
  if (index) *index = b->index;
  return FTQ_OK;
}

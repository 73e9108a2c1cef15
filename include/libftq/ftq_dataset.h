/**
 * @file ftq_dataset.h
 * @brief Data sets for supervised fine-tuning: JSONL rows to batches of token ids.
 *
 * An ::ftq_dataset reads a JSON Lines file (plain or gzip-compressed),
 * formats and tokenizes every row as TRL's SFTTrainer does, splits off an
 * evaluation part, optionally packs rows into full-length sequences, and
 * hands out batches in the order the Hugging Face Trainer would draw them
 * (seeded shuffle, or `group_by_length`'s megabatches), across epochs, with
 * a cursor a training checkpoint saves and restores exactly.
 *
 * Row formats (the first that applies):
 * - `text` (or the field named by `dataset_text_field`): already formatted
 *   text, e.g. guanaco's `<s>[INST] ... [/INST] ... </s>`; the EOS token is
 *   appended when the text does not end with it; the tokenizer's default
 *   special tokens (BOS) are added when `add_special_tokens` is true;
 * - `messages` (or `conversations`): a list of {"role", "content"} (or
 *   {"from", "value"}) rendered with the chat template;
 * - `prompt` / `completion`: strings (plain concatenation, EOS appended to
 *   the completion) or message lists (chat template);
 * - `instruction` / `input` / `output` (Alpaca): the Stanford Alpaca prompt
 *   followed by the output, as a prompt/completion pair.
 *
 * Labels: every token is trained unless a completion-only rule applies:
 * `completion_only_loss` (prompt/completion and Alpaca rows: prompt tokens
 * get -100), `assistant_only_loss` (messages: only assistant turns and their
 * end-of-turn token are trained), `response_template` (text rows: only what
 * follows the template is trained). Padding is masked by position, never by
 * token id, so the EOS that ends an answer is always trained, even when the
 * padding token is the EOS token.
 *
 * Options (group "data"): `dataset_text_field`, `max_seq_length`,
 * `truncation_mode`, `packing`, `packing_strategy`, `padding_free`,
 * `completion_only_loss`, `assistant_only_loss`, `response_template`,
 * `instruction_template`, `add_special_tokens`, `skip_malformed_rows`,
 * `test_size`, `per_device_train_batch_size`, `per_device_eval_batch_size`,
 * `gradient_accumulation_steps`, `group_by_length`, `dataloader_drop_last`,
 * `pad_to_multiple_of`, `seed`, `data_seed`. `ftq-info --options` lists
 * them with their defaults.
 *
 * A dataset is not thread-safe (batches reuse a per-epoch order cache).
 */
#ifndef LIBFTQ_FTQ_DATASET_H
#define LIBFTQ_FTQ_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "ftq_context.h"
#include "ftq_export.h"
#include "ftq_options.h"
#include "ftq_status.h"
#include "ftq_tokenizer.h"

FTQ_EXTERN_C_BEGIN

/** A tokenized data set with its train and eval splits (opaque). */
typedef struct ftq_dataset ftq_dataset;
/** A batch of token arrays, reused from call to call (opaque). */
typedef struct ftq_batch ftq_batch;

/** The label of positions that take no part in the loss (PyTorch's ignore_index). */
#define FTQ_IGNORE_INDEX (-100)

/** The two parts of a data set. Values are pinned. */
typedef enum ftq_split {
  FTQ_SPLIT_TRAIN = 0, /**< Training examples: shuffled (or length-grouped) per epoch. */
  FTQ_SPLIT_EVAL = 1   /**< Held-out examples (`test_size`): in file order. */
} ftq_split;

/** Counters of ftq_dataset_stat(). Values are pinned. */
typedef enum ftq_dataset_stat_id {
  FTQ_DATA_ROWS = 0,          /**< Rows tokenized (both splits, before packing). */
  FTQ_DATA_SKIPPED = 1,       /**< Malformed lines skipped (with `skip_malformed_rows`). */
  FTQ_DATA_TRUNCATED = 2,     /**< Rows cut to `max_seq_length`. */
  FTQ_DATA_TOKENS = 3,        /**< Tokens kept (both splits). */
  FTQ_DATA_LOSS_TOKENS = 4,   /**< Tokens with a label (both splits). */
  FTQ_DATA_NO_COMPLETION = 5, /**< Rows with no trained token (e.g. response_template not found). */
  FTQ_DATA_EMPTY = 6          /**< Rows that gave no tokens at all and were dropped. */
} ftq_dataset_stat_id;

/**
 * Reads, formats and tokenizes a JSONL or JSONL.gz file (streamed: the
 * text is not kept, only token ids and label masks).
 * @param ctx a context whose thread pool tokenizes in parallel and whose log
 *        receives progress and warnings; NULL works serially and silently
 * @param tok the tokenizer (must outlive nothing: it is not kept)
 * @param path the data file
 * @param opts options of group "data" and "tokenizer" (`chat_template` is
 *        the tokenizer's), or NULL for defaults
 * @param out receives the data set; destroy it with ftq_dataset_destroy()
 * @return FTQ_OK; FTQ_ERR_IO if the file cannot be read; FTQ_ERR_FORMAT for a
 *         malformed line (the message names the file and line; with
 *         `skip_malformed_rows` such lines are counted instead) or a row in
 *         none of the known formats; FTQ_ERR_STATE for messages without a
 *         chat template; option errors
 */
FTQ_API ftq_status ftq_dataset_load(ftq_context *ctx, const ftq_tokenizer *tok, const char *path,
                                    const ftq_options *opts, ftq_dataset **out);

/** Destroys a data set.
 *  @param ds the data set; NULL is a no-op */
FTQ_API void ftq_dataset_destroy(ftq_dataset *ds);

/** @param ds the data set
 *  @param split which part
 *  @return the number of examples in the part (packed sequences when
 *          packing), or -1 for a bad argument */
FTQ_API int64_t ftq_dataset_num_examples(const ftq_dataset *ds, ftq_split split);

/** @param ds the data set
 *  @param which the counter
 *  @return its value, or -1 for a bad argument */
FTQ_API int64_t ftq_dataset_stat(const ftq_dataset *ds, ftq_dataset_stat_id which);

/**
 * One example (a packed sequence when packing) as stored.
 * @param ds the data set
 * @param split which part
 * @param index 0 .. ftq_dataset_num_examples()-1
 * @param ids receives a pointer to its token ids (valid while @p ds lives)
 * @param loss_mask receives a pointer to one byte per token: 1 if the token
 *        is trained (has a label), 0 if not (may be NULL)
 * @param length receives the number of tokens
 * @param line receives the JSONL line number (1-based) of its (first) row
 *        (may be NULL)
 * @return FTQ_OK or FTQ_ERR_INVALID_ARGUMENT
 */
FTQ_API ftq_status ftq_dataset_example(const ftq_dataset *ds, ftq_split split, int64_t index, const int32_t **ids,
                                       const uint8_t **loss_mask, int64_t *length, int64_t *line);

/** @param ds the data set
 *  @param split which part
 *  @return batches per epoch of the part (train: of
 *          `per_device_train_batch_size`, eval: of
 *          `per_device_eval_batch_size`; the last one smaller unless
 *          `dataloader_drop_last`), or -1 for a bad argument */
FTQ_API int64_t ftq_dataset_num_batches(const ftq_dataset *ds, ftq_split split);

/**
 * Fills a batch by its position: batch @p index of epoch @p epoch of a part.
 * The train order of an epoch is a function of (seed, epoch) only, so any
 * batch can be recomputed; eval batches ignore @p epoch.
 * @param ds the data set
 * @param split which part
 * @param epoch epoch number (0-based)
 * @param index batch number within the epoch, 0 .. ftq_dataset_num_batches()-1
 * @param batch the batch to fill (from ftq_batch_create())
 * @return FTQ_OK, FTQ_ERR_INVALID_ARGUMENT (out of range),
 *         FTQ_ERR_OUT_OF_MEMORY
 */
FTQ_API ftq_status ftq_dataset_get_batch(ftq_dataset *ds, ftq_split split, int64_t epoch, int64_t index,
                                         ftq_batch *batch);

/**
 * Fills the next training batch at the cursor and advances the cursor,
 * moving to the next epoch after its last batch.
 * @param ds the data set
 * @param batch the batch to fill
 * @return as ftq_dataset_get_batch(); FTQ_ERR_STATE if the train part is empty
 */
FTQ_API ftq_status ftq_dataset_next_batch(ftq_dataset *ds, ftq_batch *batch);

/**
 * Reads the training cursor: the position of the batch ftq_dataset_next_batch()
 * returns next. Save it with ftq_dataset_fingerprint() in a checkpoint.
 * @param ds the data set
 * @param epoch receives the epoch
 * @param index receives the batch number within the epoch
 * @return FTQ_OK or FTQ_ERR_INVALID_ARGUMENT
 */
FTQ_API ftq_status ftq_dataset_cursor(const ftq_dataset *ds, int64_t *epoch, int64_t *index);

/**
 * Moves the training cursor (to resume from a checkpoint).
 * @param ds the data set
 * @param epoch the epoch (>= 0)
 * @param index the batch number, 0 .. ftq_dataset_num_batches(ds, FTQ_SPLIT_TRAIN)
 *        (the count itself means "start of the next epoch")
 * @return FTQ_OK or FTQ_ERR_INVALID_ARGUMENT
 */
FTQ_API ftq_status ftq_dataset_seek(ftq_dataset *ds, int64_t epoch, int64_t index);

/** @param ds the data set
 *  @return a 64-bit hash of everything that decides the batches (token ids,
 *          labels, packing, batch sizes, seeds, sampler), so a checkpoint can
 *          refuse to resume on different data; 0 for NULL */
FTQ_API uint64_t ftq_dataset_fingerprint(const ftq_dataset *ds);

/**
 * Exact-match comparison of a generated answer with the reference, as the
 * example data set's evaluator does: both are compared after removing
 * leading and trailing ASCII white space (space, \\t, \\n, \\r, \\v, \\f).
 * examples/data/evaluate.py is the Python twin.
 * @param prediction the generated text
 * @param prediction_len its length in bytes
 * @param reference the reference answer
 * @param reference_len its length in bytes
 * @return 1 if they match, 0 if not (or an argument is NULL with a non-zero length)
 */
FTQ_API int ftq_dataset_exact_match(const char *prediction, size_t prediction_len, const char *reference,
                                    size_t reference_len);

/* ---------------------------------------------------------------------- */
/** @name Batches: the arrays the model takes, row-major [rows, seq_len]   */
/** @{ */

/** Creates an empty batch.
 *  @param out receives the batch; destroy it with ftq_batch_destroy()
 *  @return FTQ_OK, FTQ_ERR_INVALID_ARGUMENT or FTQ_ERR_OUT_OF_MEMORY */
FTQ_API ftq_status ftq_batch_create(ftq_batch **out);

/** Destroys a batch.
 *  @param batch the batch; NULL is a no-op */
FTQ_API void ftq_batch_destroy(ftq_batch *batch);

/** @param batch the batch
 *  @return the number of rows (1 when padding-free), or -1 for NULL */
FTQ_API int64_t ftq_batch_rows(const ftq_batch *batch);

/** @param batch the batch
 *  @return the padded length of every row (the longest row, rounded up to
 *          `pad_to_multiple_of`), or -1 for NULL */
FTQ_API int64_t ftq_batch_seq_len(const ftq_batch *batch);

/** @param batch the batch
 *  @return token ids [rows * seq_len], padding = the pad token (NULL for NULL) */
FTQ_API const int32_t *ftq_batch_input_ids(const ftq_batch *batch);

/** @param batch the batch
 *  @return labels [rows * seq_len], aligned with the input ids as in
 *          transformers (not shifted: the loss at position t-1 predicts
 *          labels[t]); FTQ_IGNORE_INDEX on padding, on untrained tokens and
 *          on the first token of every sequence (nothing in the same
 *          sequence predicts it) (NULL for NULL) */
FTQ_API const int32_t *ftq_batch_labels(const ftq_batch *batch);

/** @param batch the batch
 *  @return position ids [rows * seq_len]: 0, 1, ... restarting at every
 *          sequence start (padding continues the count) (NULL for NULL) */
FTQ_API const int32_t *ftq_batch_position_ids(const ftq_batch *batch);

/** @param batch the batch
 *  @return sequence ids [rows * seq_len]: the index (0, 1, ...) of the
 *          sequence a token belongs to within its row, -1 on padding.
 *          Attention must stay within one sequence id (NULL for NULL) */
FTQ_API const int32_t *ftq_batch_sequence_ids(const ftq_batch *batch);

/** @param batch the batch
 *  @return attention mask [rows * seq_len]: 1 on tokens, 0 on padding (NULL for NULL) */
FTQ_API const int32_t *ftq_batch_attention_mask(const ftq_batch *batch);

/**
 * The sequences of the batch as spans of the flattened [rows * seq_len]
 * arrays (for variable-length attention kernels): sequence k covers
 * positions starts[k] .. starts[k] + lengths[k] - 1; padding belongs to none.
 * @param batch the batch
 * @param n receives the number of sequences
 * @param starts receives a pointer to @p n start offsets (valid until the batch is refilled)
 * @param lengths receives a pointer to @p n lengths
 * @return FTQ_OK or FTQ_ERR_INVALID_ARGUMENT
 */
FTQ_API ftq_status ftq_batch_sequences(const ftq_batch *batch, int64_t *n, const int32_t **starts,
                                       const int32_t **lengths);

/** @param batch the batch
 *  @return the number of non-padding tokens, or -1 for NULL */
FTQ_API int64_t ftq_batch_num_tokens(const ftq_batch *batch);

/** @param batch the batch
 *  @return the number of tokens the shifted loss counts: positions t >= 1 of
 *          a row whose label is not FTQ_IGNORE_INDEX (transformers'
 *          num_items_in_batch), or -1 for NULL */
FTQ_API int64_t ftq_batch_num_loss_tokens(const ftq_batch *batch);

/** @param batch the batch
 *  @return the examples in the batch, in row order (padding-free: all rows
 *          were joined), as indices into the split (NULL for NULL) */
FTQ_API const int64_t *ftq_batch_example_indices(const ftq_batch *batch);

/** @param batch the batch
 *  @return the number of examples in the batch (the length of
 *          ftq_batch_example_indices()), or -1 for NULL */
FTQ_API int64_t ftq_batch_num_examples(const ftq_batch *batch);

/** @param batch the batch
 *  @param epoch receives the epoch it was drawn from (may be NULL)
 *  @param index receives its batch number within the epoch (may be NULL)
 *  @return FTQ_OK or FTQ_ERR_INVALID_ARGUMENT */
FTQ_API ftq_status ftq_batch_position(const ftq_batch *batch, int64_t *epoch, int64_t *index);

/** @} */

FTQ_EXTERN_C_END

#endif /* LIBFTQ_FTQ_DATASET_H */

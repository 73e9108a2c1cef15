/* The Llama graph: forward, backward (LoRA gradients only, activation
 * gradients through the frozen base), per-layer recomputation, and the
 * KV-cache decoder used by generation. Written once; every operation goes
 * through the context's backend table (src/backend.h). Internal: the trainer
 * and generation call it; tests use it directly. */
#ifndef FTQ_MODEL_GRAPH_H
#define FTQ_MODEL_GRAPH_H

#include <stddef.h>
#include <stdint.h>

#include "libftq/ftq_options.h"
#include "model/model.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FTQ_IGNORE_INDEX (-100)

/* Philox stream namespaces (top byte) the graph uses; docs/model.md lists
 * every namespace. Dropout: stream = NS | step << 16 | (layer * 8 + proj). */
#define FTQ_RNG_NS_DROPOUT (2ull << 56)
#define FTQ_RNG_NS_SAMPLING (3ull << 56)

/* A batch as the graph takes it: host arrays of n_rows x seq_len, row-major.
 * Labels follow Hugging Face (not shifted: position t is predicted from
 * positions < t; -100 is ignored); the graph shifts them. */
typedef struct ftq_graph_batch {
  int64_t n_rows, seq_len;
  const int32_t *input_ids;      /* required */
  const int32_t *labels;         /* NULL: no loss */
  const int32_t *attention_mask; /* 1 = token, 0 = padding; NULL: all tokens */
  const int32_t *position_ids;   /* NULL: 0, 1, ... per row, restarting at each new seq_id */
  const int32_t *seq_ids;        /* packed sequences: tokens attend only within their id; NULL: one per row */
} ftq_graph_batch;

typedef struct ftq_graph_settings {
  int training;               /* LoRA dropout active */
  int gradient_checkpointing; /* keep only each layer's input; recompute the layer in backward */
  uint64_t seed;              /* dropout masks: Philox key */
  uint64_t step;              /* micro-batch counter (< 2^40): masks differ per micro-batch */
  double num_items;           /* loss normaliser: counted tokens of the whole accumulated
                                 batch; <= 0: those of this batch */
  int64_t vocab_chunk;        /* LM-head vocabulary chunk; 0: automatic */
  int fp16;                   /* GPU backends: fp16 instead of bf16 matrix products (option `fp16`) */
  /* Called once the backward pass has added layer `layer`'s LoRA gradients
   * (layers come in reverse order); later work no longer touches them, so
   * data-parallel training starts reducing them here. NULL: none. */
  ftq_status (*layer_grads_done)(void *user, int64_t layer);
  void *hook_user;
} ftq_graph_settings;

/* Training settings from options: training on, `gradient_checkpointing`
 * and `fp16` (group "train") read; seed, step and num_items left 0 for the
 * caller. */
ftq_status ftq_graph_settings_init(const ftq_options *opts, ftq_graph_settings *s);

typedef struct ftq_graph_result {
  double loss_sum;  /* sum of per-token cross-entropies over counted targets */
  int64_t n_items;  /* counted targets in this batch */
  double loss;      /* loss_sum / normaliser (NaN when nothing is counted) */
} ftq_graph_result;

/* Forward and backward on a batch with labels: the loss, and the gradients
 * of the active adapter's A/B added (+=) to its gradient tensors. The
 * optional host outputs: token_loss [rows*seq] (loss of the target predicted
 * at each position, 0 where none), d_embeddings [rows*seq*hidden] (gradient
 * of the loss w.r.t. the token embeddings). Works without an adapter too. */
ftq_status ftq_graph_forward_backward(struct ftq_model *m, const ftq_graph_batch *batch, const ftq_graph_settings *s,
                                      ftq_graph_result *res, float *token_loss, float *d_embeddings);

/* Forward only: logits [rows*seq*vocab] (host, may be NULL) and, with
 * labels, the loss (res, token_loss may be NULL). */
ftq_status ftq_graph_forward(struct ftq_model *m, const ftq_graph_batch *batch, const ftq_graph_settings *s,
                             ftq_graph_result *res, float *token_loss, float *logits);

/* Device bytes the forward(+backward) of a rows x seq_len batch takes:
 * activations kept for the backward, and workspace. */
ftq_status ftq_graph_plan(const struct ftq_model *m, int64_t rows, int64_t seq_len, const ftq_graph_settings *s,
                          int backward, size_t *activation_bytes, size_t *workspace_bytes);

/* Frees the activation and workspace arenas the model keeps between graph
 * calls (the next call allocates them again). ftq_model_free calls it. */
void ftq_graph_cache_release(struct ftq_model *m);

/* ---- KV cache and incremental decoding (one sequence) ---- */
typedef struct ftq_kv_cache ftq_kv_cache;

/* A cache for up to `capacity` positions of one sequence, accounted as
 * activations. */
ftq_status ftq_kv_cache_create(struct ftq_model *m, int64_t capacity, ftq_kv_cache **out);
void ftq_kv_cache_destroy(ftq_kv_cache *c);
int64_t ftq_kv_cache_length(const ftq_kv_cache *c);
void ftq_kv_cache_reset(ftq_kv_cache *c);

/* Runs n new tokens at positions length .. length+n-1 through the model
 * (the active adapter applied, no dropout), appends their keys/values and
 * writes the logits of the last token (host [vocab], may be NULL) and/or of
 * every new token (host [n*vocab], may be NULL). */
ftq_status ftq_graph_decode(struct ftq_model *m, ftq_kv_cache *c, const int32_t *ids, int64_t n, float *logits_last,
                            float *logits_all);

/* The rotary inverse frequencies of the configuration (HF's computation in
 * f32 for the default, "linear" and "llama3" types): head_dim / 2 floats. */
void ftq_rope_inv_freq(const ftq_model_config *c, float *inv_freq);

#ifdef __cplusplus
}
#endif

#endif /* FTQ_MODEL_GRAPH_H */

/**
 * @file ftq_generate.h
 * @brief Text generation from token ids: greedy or sampled, with a KV cache.
 *
 * ftq_model_generate() continues a prompt of token ids the way transformers'
 * `generate()` does: the model (with its active LoRA adapter, if any; see
 * ftq_lora_set_active()) runs the prompt once, then one token at a time over
 * a key/value cache. The next token is the arg-max (greedy, the default) or
 * is sampled after the logits processors transformers applies, in its
 * order: repetition penalty, then (sampling only) temperature, top-k and
 * top-p. Generation stops after `max_new_tokens`, at an end-of-sequence id
 * of the model's configuration, at a stop sequence, or when the streaming
 * callback asks to; the token that ends it is part of the output.
 *
 * Options read (group "generate", transformers' GenerationConfig names):
 * `max_new_tokens`, `do_sample`, `temperature`, `top_k`, `top_p`,
 * `repetition_penalty`.
 *
 * Token ids in, token ids out: text goes through a tokenizer.
 */
#ifndef LIBFTQ_FTQ_GENERATE_H
#define LIBFTQ_FTQ_GENERATE_H

#include <stddef.h>
#include <stdint.h>

#include "ftq_export.h"
#include "ftq_options.h"
#include "ftq_status.h"

FTQ_EXTERN_C_BEGIN

/** A model: base weights and configuration (opaque; see ftq_model.h). */
typedef struct ftq_model ftq_model;

/**
 * Receives each generated token as soon as it is chosen.
 * @param user the pointer given to ftq_model_generate()
 * @param token the new token id
 * @param index its position among the generated tokens (0, 1, ...)
 * @return 0 to continue, non-zero to stop after this token
 */
typedef int (*ftq_token_callback)(void *user, int32_t token, size_t index);

/** Why generation stopped. Values are pinned. */
typedef enum ftq_finish_reason {
  FTQ_FINISH_LENGTH = 0,        /**< max_new_tokens were generated. */
  FTQ_FINISH_EOS = 1,           /**< An end-of-sequence id of the model was generated. */
  FTQ_FINISH_STOP_SEQUENCE = 2, /**< The sequence ended with one of the stop sequences. */
  FTQ_FINISH_CALLBACK = 3       /**< The token callback returned non-zero. */
} ftq_finish_reason;

/**
 * Generates a continuation of @p prompt.
 *
 * Sampling draws from the counter-based generator keyed by @p seed: the
 * same seed, prompt, model and options give the same tokens on every run
 * (but not PyTorch's tokens: its generator differs). Greedy decoding matches
 * transformers' `generate(do_sample=False)` token for token.
 *
 * @param model the model (the active adapter, if any, is applied)
 * @param prompt token ids of the prompt
 * @param n_prompt number of prompt tokens (at least 1)
 * @param opts generation options (group "generate"), or NULL for defaults
 *        (greedy, 20 new tokens)
 * @param seed seed of the sampling generator (unused when greedy)
 * @param stop_sequences token ids of stop sequences, each one ended by -1
 *        (e.g. {13, 13, -1, 2277, -1}); NULL for none. Generation stops when
 *        the prompt plus the generated tokens end with one of them.
 * @param stop_len number of entries in @p stop_sequences (0 for none)
 * @param callback called with every new token (may be NULL)
 * @param user passed to @p callback unchanged
 * @param out receives the generated token ids (not the prompt)
 * @param out_capacity room in @p out; must be at least max_new_tokens
 * @param n_out receives the number of generated tokens
 * @param finish_reason receives an ::ftq_finish_reason (may be NULL)
 * @return FTQ_OK (also when the callback stopped it); FTQ_ERR_INVALID_ARGUMENT
 *         for NULL pointers, an empty prompt, token ids outside the
 *         vocabulary, a malformed stop-sequence list or too small an output
 *         buffer; option errors naming the option; FTQ_ERR_UNSUPPORTED when
 *         the model's device cannot run the model yet; memory errors
 */
FTQ_API ftq_status ftq_model_generate(ftq_model *model, const int32_t *prompt, size_t n_prompt,
                                      const ftq_options *opts, uint64_t seed, const int32_t *stop_sequences,
                                      size_t stop_len, ftq_token_callback callback, void *user, int32_t *out,
                                      size_t out_capacity, size_t *n_out, int *finish_reason);

FTQ_EXTERN_C_END

#endif /* LIBFTQ_FTQ_GENERATE_H */

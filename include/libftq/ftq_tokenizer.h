/**
 * @file ftq_tokenizer.h
 * @brief Tokenizer: text to token ids and back, special tokens, chat templates.
 *
 * An ::ftq_tokenizer is loaded from a Hugging Face `tokenizer.json` (a model
 * folder, the file itself, or a gzip-compressed copy) or from the vocabulary
 * embedded in a GGUF model file. It reproduces the `tokenizers` package
 * exactly for the tokenizers Llama-family models use:
 * - SentencePiece-style BPE with byte fallback (Llama 2, Mistral): Prepend /
 *   Replace normalizers or the Metaspace pre-tokenizer, and the matching
 *   decoders;
 * - byte-level BPE (GPT-2 style: SmolLM2, Llama 3, Qwen2) with the GPT-2,
 *   Llama-3 and Qwen2 split patterns, Digits, and the NFC normalizer;
 * - added and special tokens, which are recognised inside text.
 * Anything else (other models, normalizers, pre-tokenizers, decoders) is
 * refused at load with FTQ_ERR_UNSUPPORTED naming the feature.
 *
 * Text is UTF-8. Ill-formed UTF-8 given to the encoder is replaced by U+FFFD
 * (one per maximal ill-formed subsequence, as Python's
 * `bytes.decode("utf-8", "replace")` does) and then encoded; token offsets
 * still refer to the caller's bytes.
 *
 * A tokenizer is immutable after loading: it may be used from several
 * threads at once.
 */
#ifndef LIBFTQ_FTQ_TOKENIZER_H
#define LIBFTQ_FTQ_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "ftq_export.h"
#include "ftq_options.h"
#include "ftq_status.h"

FTQ_EXTERN_C_BEGIN

/** A tokenizer (opaque). */
typedef struct ftq_tokenizer ftq_tokenizer;

/** The special tokens a tokenizer may name. Values are pinned. */
typedef enum ftq_special_token {
  FTQ_TOKEN_BOS = 0, /**< Beginning of sequence. */
  FTQ_TOKEN_EOS = 1, /**< End of sequence (end of an answer). */
  FTQ_TOKEN_PAD = 2, /**< Padding. */
  FTQ_TOKEN_UNK = 3  /**< Unknown. */
} ftq_special_token;

/** Flags of ftq_tokenizer_encode(); combine with `|`. Values are pinned. */
typedef enum ftq_encode_flag {
  /** Add what the tokenizer adds by default (its post-processor template,
   *  e.g. BOS for Llama 2; `tokenizers`' add_special_tokens=True). */
  FTQ_ENCODE_ADD_SPECIAL = 1,
  /** Prepend the BOS token (FTQ_ERR_STATE if the tokenizer has none). */
  FTQ_ENCODE_ADD_BOS = 2,
  /** Append the EOS token (FTQ_ERR_STATE if the tokenizer has none). */
  FTQ_ENCODE_ADD_EOS = 4,
  /** Encode special tokens that appear in the text as plain text instead of
   *  as their ids (for untrusted text). */
  FTQ_ENCODE_SPECIAL_AS_TEXT = 8
} ftq_encode_flag;

/** Flags of ftq_tokenizer_decode(). Values are pinned. */
typedef enum ftq_decode_flag {
  FTQ_DECODE_SKIP_SPECIAL = 1 /**< Leave special tokens out of the text. */
} ftq_decode_flag;

/**
 * Loads a tokenizer.
 *
 * Options read (group "tokenizer"): `bos_token`, `eos_token`, `pad_token`,
 * `unk_token` (override the special tokens by their text), `chat_template`
 * ("auto": the model's own template when it is one of the supported
 * formats; or "llama-2", "chatml", "llama-3", "none").
 *
 * @param path one of: a model folder holding tokenizer.json (or
 *        tokenizer.json.gz, and optionally
 *        tokenizer_config.json, which supplies the special tokens,
 *        add_bos_token/add_eos_token and the chat template); a
 *        tokenizer.json file, plain or gzip-compressed (a
 *        tokenizer_config.json beside a file named tokenizer.json* is read
 *        too); a GGUF model file (its tokenizer.ggml.* metadata)
 * @param opts options, or NULL for defaults
 * @param out receives the tokenizer; destroy it with ftq_tokenizer_destroy()
 * @return FTQ_OK; FTQ_ERR_IO if a file cannot be read; FTQ_ERR_FORMAT for
 *         malformed files (the message names the file and entry);
 *         FTQ_ERR_UNSUPPORTED for a feature libftq does not implement (named);
 *         FTQ_ERR_NOT_FOUND if a token named by an option does not exist
 */
FTQ_API ftq_status ftq_tokenizer_load(const char *path, const ftq_options *opts, ftq_tokenizer **out);

/**
 * Loads a tokenizer from tokenizer.json text in memory.
 * @param json the JSON text (need not be NUL-terminated)
 * @param len its length in bytes
 * @param opts options as for ftq_tokenizer_load(), or NULL
 * @param out receives the tokenizer
 * @return as ftq_tokenizer_load()
 */
FTQ_API ftq_status ftq_tokenizer_load_json(const char *json, size_t len, const ftq_options *opts,
                                           ftq_tokenizer **out);

/** Destroys a tokenizer.
 *  @param tok the tokenizer; NULL is a no-op */
FTQ_API void ftq_tokenizer_destroy(ftq_tokenizer *tok);

/**
 * Encodes text into token ids.
 * @param tok the tokenizer
 * @param text UTF-8 text (NULL allowed when @p len is 0)
 * @param len its length in bytes
 * @param flags a combination of ::ftq_encode_flag (0: the text's tokens only,
 *        with special tokens in the text recognised)
 * @param ids receives a new array of the ids; free it with ftq_free()
 * @param n_ids receives the number of ids
 * @return FTQ_OK, FTQ_ERR_INVALID_ARGUMENT, FTQ_ERR_STATE (BOS/EOS asked for
 *         but absent) or FTQ_ERR_OUT_OF_MEMORY
 */
FTQ_API ftq_status ftq_tokenizer_encode(const ftq_tokenizer *tok, const char *text, size_t len, unsigned flags,
                                        int32_t **ids, size_t *n_ids);

/**
 * As ftq_tokenizer_encode(), also reporting where each token starts.
 * @param tok the tokenizer
 * @param text UTF-8 text
 * @param len its length in bytes
 * @param flags a combination of ::ftq_encode_flag
 * @param ids receives a new array of the ids; free it with ftq_free()
 * @param offsets receives a new array: for each token the byte offset in
 *        @p text of the first character it covers (tokens added by @p flags
 *        report 0 before the text and @p len after it); free it with ftq_free()
 * @param n_ids receives the number of ids (and offsets)
 * @return as ftq_tokenizer_encode()
 */
FTQ_API ftq_status ftq_tokenizer_encode_offsets(const ftq_tokenizer *tok, const char *text, size_t len,
                                                unsigned flags, int32_t **ids, int32_t **offsets, size_t *n_ids);

/**
 * Decodes token ids into text, through the tokenizer's decoder chain exactly
 * as `tokenizers`' decode() does (so for valid UTF-8 input,
 * decode(encode(text)) == text, and bytes that do not form valid UTF-8 come
 * out as U+FFFD).
 * @param tok the tokenizer
 * @param ids the ids
 * @param n number of ids
 * @param flags a combination of ::ftq_decode_flag
 * @param text receives a new NUL-terminated UTF-8 text; free it with ftq_free()
 * @param len receives its length in bytes (may be NULL)
 * @return FTQ_OK; FTQ_ERR_NOT_FOUND for an id that is not in the vocabulary
 *         (the message names it and its position); FTQ_ERR_OUT_OF_MEMORY
 */
FTQ_API ftq_status ftq_tokenizer_decode(const ftq_tokenizer *tok, const int32_t *ids, size_t n, unsigned flags,
                                        char **text, size_t *len);

/**
 * The bytes one token stands for in text, for streaming output: byte-level
 * tokens give their bytes, SentencePiece tokens give '▁' as a space and
 * `<0xXX>` as the byte. A UTF-8 character may be split across tokens.
 * @param tok the tokenizer
 * @param id the token id
 * @param piece receives a pointer to the bytes, valid while @p tok lives
 * @param len receives their number
 * @return FTQ_OK or FTQ_ERR_NOT_FOUND
 */
FTQ_API ftq_status ftq_tokenizer_token_to_piece(const ftq_tokenizer *tok, int32_t id, const char **piece,
                                                size_t *len);

/**
 * The vocabulary entry of a token as written in the tokenizer file (e.g.
 * "Ġthe", "▁the", "<0x0A>", "<|im_end|>").
 * @param tok the tokenizer
 * @param id the token id
 * @param token receives a NUL-terminated string, valid while @p tok lives
 * @param len receives its length (may be NULL)
 * @return FTQ_OK or FTQ_ERR_NOT_FOUND
 */
FTQ_API ftq_status ftq_tokenizer_id_to_token(const ftq_tokenizer *tok, int32_t id, const char **token, size_t *len);

/**
 * Looks a vocabulary entry up by its text as written in the tokenizer file.
 * @param tok the tokenizer
 * @param token the entry, e.g. "<|im_end|>"
 * @param len its length in bytes
 * @param id receives the id
 * @return FTQ_OK or FTQ_ERR_NOT_FOUND
 */
FTQ_API ftq_status ftq_tokenizer_token_to_id(const ftq_tokenizer *tok, const char *token, size_t len, int32_t *id);

/** @param tok the tokenizer
 *  @return one more than the largest token id (the embedding rows a model
 *          needs at least), or -1 if @p tok is NULL */
FTQ_API int64_t ftq_tokenizer_vocab_size(const ftq_tokenizer *tok);

/** @param tok the tokenizer
 *  @param which the special token
 *  @return its id, or -1 if the tokenizer has none */
FTQ_API int32_t ftq_tokenizer_special_id(const ftq_tokenizer *tok, ftq_special_token which);

/** @param tok the tokenizer
 *  @param id a token id
 *  @return 1 if @p id is a special token (left out by FTQ_DECODE_SKIP_SPECIAL), else 0 */
FTQ_API int ftq_tokenizer_is_special(const ftq_tokenizer *tok, int32_t id);

/** @param tok the tokenizer
 *  @return the chat template in use: "llama-2", "chatml", "llama-3", or NULL
 *          if there is none (then ftq_tokenizer_apply_chat_template() fails
 *          and says why) */
FTQ_API const char *ftq_tokenizer_chat_template(const ftq_tokenizer *tok);

/**
 * Renders a conversation with the tokenizer's chat template, as
 * transformers' `apply_chat_template(messages, tokenize=False)` does with the
 * model's template. Encode the result with flags 0: the text carries its own
 * BOS where the format has one.
 * @param tok the tokenizer
 * @param messages_json a JSON array of objects with string fields "role"
 *        and "content", e.g. `[{"role": "user", "content": "Hi"}]`
 * @param add_generation_prompt non-zero to end with the header of an
 *        assistant turn (ChatML, Llama 3)
 * @param text receives a new NUL-terminated text; free it with ftq_free()
 * @param len receives its length in bytes (may be NULL)
 * @return FTQ_OK; FTQ_ERR_FORMAT for malformed messages (named by index) or
 *         roles the format does not allow; FTQ_ERR_STATE if there is no chat
 *         template (the message says why)
 */
FTQ_API ftq_status ftq_tokenizer_apply_chat_template(const ftq_tokenizer *tok, const char *messages_json,
                                                     int add_generation_prompt, char **text, size_t *len);

FTQ_EXTERN_C_END

#endif /* LIBFTQ_FTQ_TOKENIZER_H */

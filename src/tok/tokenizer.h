/* Internal view of ftq_tokenizer: a Hugging Face-style pipeline (added
 * tokens, normalizers, pre-tokenizers, BPE model, post-processor, decoders)
 * built from tokenizer.json or from a GGUF vocabulary. */
#ifndef FTQ_TOK_TOKENIZER_H
#define FTQ_TOK_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "libftq/ftq_tokenizer.h"
#include "tok/chat.h"
#include "tok/hashmap.h"

/* ---- pipeline steps ---- */
typedef enum tok_norm_type { TOK_NORM_PREPEND, TOK_NORM_REPLACE, TOK_NORM_NFC } tok_norm_type;
typedef struct tok_norm {
  tok_norm_type type;
  char *a, *b; /* prepend: a; replace: a -> b */
  size_t alen, blen;
} tok_norm;

typedef enum tok_pre_type {
  TOK_PRE_BYTELEVEL,   /* add_prefix_space, and use_regex (GPT-2 pattern) */
  TOK_PRE_SPLIT,       /* one of the known regexes, behaviour Isolated */
  TOK_PRE_DIGITS,      /* individual_digits */
  TOK_PRE_METASPACE    /* replacement, prepend_scheme, split */
} tok_pre_type;
typedef enum tok_regex { TOK_RE_GPT2, TOK_RE_LLAMA3, TOK_RE_QWEN2 } tok_regex;
typedef enum tok_prepend { TOK_PREPEND_ALWAYS, TOK_PREPEND_FIRST, TOK_PREPEND_NEVER } tok_prepend;
typedef struct tok_pre {
  tok_pre_type type;
  tok_regex regex;
  int add_prefix_space, use_regex, individual_digits, split;
  tok_prepend prepend_scheme;
  char rep[8]; /* metaspace replacement character, UTF-8 */
  size_t rep_len;
} tok_pre;

typedef enum tok_dec_type {
  TOK_DEC_BYTELEVEL, TOK_DEC_METASPACE, TOK_DEC_REPLACE, TOK_DEC_BYTEFALLBACK, TOK_DEC_FUSE, TOK_DEC_STRIP
} tok_dec_type;
typedef struct tok_dec {
  tok_dec_type type;
  char *a, *b; /* replace a -> b; metaspace: a = replacement */
  size_t alen, blen;
  uint32_t content; /* strip: the character */
  int start, stop;  /* strip counts */
  tok_prepend prepend_scheme;
} tok_dec;

typedef struct tok_added {
  const char *content;
  size_t len;
  int32_t id;
  uint8_t special, lstrip, rstrip, single_word, normalized;
} tok_added;

/* Per-id flags. */
#define TOK_ID_PRESENT 1u
#define TOK_ID_ADDED 2u
#define TOK_ID_SPECIAL 4u

#define TOK_MAX_STEPS 16

struct ftq_tokenizer {
  char source[512];      /* file the tokenizer came from, for messages */
  int byte_level;        /* model symbols are bytes (vocabulary in GPT-2's byte alphabet) */
  int byte_fallback, fuse_unk, ignore_merges;
  int32_t n_ids;         /* id tables cover 0..n_ids-1 */
  int64_t model_vocab;   /* entries of the model vocabulary */
  const char **id_token; /* vocabulary string as in the file (NULL for holes) */
  uint32_t *id_token_len;
  const char **id_piece; /* the bytes the token stands for in text */
  uint32_t *id_piece_len;
  uint8_t *id_flags;
  ftq_strmap vocab;      /* model vocabulary: symbol bytes -> id */
  ftq_strmap tokens;     /* every vocabulary string (file form) -> id, added tokens included */
  ftq_pairmap merges;    /* (left, right) -> (rank, merged id) */
  int32_t byte_id[256];  /* byte-level: id of each byte; SentencePiece: id of <0xXX>; -1 if none */
  int32_t unk_model;     /* the model's unk token id, -1 if none */

  tok_added *added;      /* sorted by first byte, then length descending */
  size_t n_added;
  size_t added_first[257]; /* added[added_first[b] .. added_first[b+1]) start with byte b */
  int has_normalized_added;

  tok_norm norms[TOK_MAX_STEPS];
  int n_norms;
  tok_pre pres[TOK_MAX_STEPS];
  int n_pres;
  tok_dec decs[TOK_MAX_STEPS];
  int n_decs;
  int has_decoder;

  int32_t prefix_ids[8], suffix_ids[8]; /* post-processor template around $A */
  int n_prefix, n_suffix;

  int32_t bos_id, eos_id, pad_id, unk_id; /* -1 when absent */
  int add_bos, add_eos;                   /* what FTQ_ENCODE_ADD_SPECIAL adds */

  ftq_chat_template chat;
  char *chat_template_text; /* the model's own Jinja template, or NULL */

  ftq_pool pool;
};

/* ---- building (tokenizer.c) ---- */
ftq_status tok_create_empty(const char *source, ftq_tokenizer **out);
/* Ensures the id tables cover id. */
ftq_status tok_reserve_ids(ftq_tokenizer *tok, int32_t id);
/* Sets the file-form string of an id and adds it to the token map. */
ftq_status tok_set_token(ftq_tokenizer *tok, int32_t id, const char *s, size_t len, unsigned flags);
/* Adds a model vocabulary entry (string in file form; converted to bytes
 * for byte-level models). */
ftq_status tok_add_vocab(ftq_tokenizer *tok, const char *s, size_t len, int32_t id);
ftq_status tok_add_merge(ftq_tokenizer *tok, const char *a, size_t alen, const char *b, size_t blen, int32_t rank);
ftq_status tok_add_added(ftq_tokenizer *tok, const char *content, size_t len, int32_t id, int special, int lstrip,
                         int rstrip, int single_word, int normalized);
/* After everything is added: byte tables, added-token index, pieces,
 * special-id defaults. */
ftq_status tok_finish(ftq_tokenizer *tok);
/* Converts a byte-level alphabet string to bytes; returns 0 if a character
 * is outside the alphabet. out needs len bytes. */
int tok_bytelevel_to_bytes(const char *s, size_t len, char *out, size_t *out_len);

/* ---- loaders ---- */
ftq_status tok_load_hf_json(const char *text, size_t len, const char *source, ftq_tokenizer **out);
ftq_status tok_load_gguf(const char *path, ftq_tokenizer **out);
/* tokenizer_config.json (special tokens, chat template, add_bos/eos). */
ftq_status tok_apply_hf_config(ftq_tokenizer *tok, const char *path);
/* Options: bos_token, eos_token, pad_token, unk_token, chat_template. */
ftq_status tok_apply_options(ftq_tokenizer *tok, const ftq_options *opts);

/* ---- encoding with offsets (encode.c) ---- */
/* Encodes text; *offsets (optional) receives the byte offset in `text`
 * where each token starts. Arrays are malloc'ed; free() them. */
ftq_status tok_encode(const ftq_tokenizer *tok, const char *text, size_t len, unsigned flags, int32_t **ids,
                      int32_t **offsets, size_t *n);

/* The hand-written pre-tokenizer regexes (pretok.c): splits s[0..n) into
 * consecutive matches; calls emit(user, start, end) for each. */
typedef void (*tok_emit_fn)(void *user, size_t start, size_t end);
void tok_regex_split(tok_regex re, const unsigned char *s, size_t n, tok_emit_fn emit, void *user);

#endif /* FTQ_TOK_TOKENIZER_H */

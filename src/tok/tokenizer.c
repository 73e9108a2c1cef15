/* ftq_tokenizer: construction shared by the loaders (vocabulary, merges,
 * added tokens, per-id tables) and the small public queries. */
#include "tok/tokenizer.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "tok/unicode.h"

/* GPT-2's byte <-> character alphabet: printable Latin-1 bytes stand for
 * themselves, the other 68 bytes map to U+0100.. in byte order. */
static uint32_t byte_to_cp[256];
static int16_t cp_to_byte[324]; /* code points 0..323 */
static pthread_once_t bytelevel_once = PTHREAD_ONCE_INIT;
static void bytelevel_build(void) {
  int next = 256;
  for (int b = 0; b < 324; b++) cp_to_byte[b] = -1;
  for (int b = 0; b < 256; b++) {
    int keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
    byte_to_cp[b] = keep ? (uint32_t)b : (uint32_t)next++;
  }
  for (int b = 0; b < 256; b++) cp_to_byte[byte_to_cp[b]] = (int16_t)b;
}
static void bytelevel_init(void) { pthread_once(&bytelevel_once, bytelevel_build); }

int tok_bytelevel_to_bytes(const char *s, size_t len, char *out, size_t *out_len) {
  bytelevel_init();
  size_t o = 0;
  for (size_t i = 0; i < len;) {
    size_t l;
    int ok;
    uint32_t cp = ftq_utf8_decode((const unsigned char *)s + i, len - i, &l, &ok);
    if (!ok || cp >= 324 || cp_to_byte[cp] < 0) return 0;
    out[o++] = (char)cp_to_byte[cp];
    i += l;
  }
  *out_len = o;
  return 1;
}

ftq_status tok_create_empty(const char *source, ftq_tokenizer **out) {
  bytelevel_init();
  ftq_tokenizer *t = ftq_calloc(1, sizeof *t, "tokenizer");
  if (!t) return FTQ_ERR_OUT_OF_MEMORY;
  snprintf(t->source, sizeof t->source, "%s", source ? source : "tokenizer");
  t->bos_id = t->eos_id = t->pad_id = t->unk_id = t->unk_model = -1;
  for (int b = 0; b < 256; b++) t->byte_id[b] = -1;
  *out = t;
  return FTQ_OK;
}

ftq_status tok_reserve_ids(ftq_tokenizer *t, int32_t id) {
  if (id < 0 || id >= (1 << 30)) return ftq_error(FTQ_ERR_FORMAT, "%s: token id %d is out of range", t->source, id);
  if (id < t->n_ids) return FTQ_OK;
  int32_t n = t->n_ids ? t->n_ids : 1024;
  while (n <= id) n *= 2;
  const char **tok = realloc(t->id_token, (size_t)n * sizeof *tok);
  if (tok) t->id_token = tok;
  uint32_t *tl = realloc(t->id_token_len, (size_t)n * sizeof *tl);
  if (tl) t->id_token_len = tl;
  uint8_t *fl = realloc(t->id_flags, (size_t)n);
  if (fl) t->id_flags = fl;
  if (!tok || !tl || !fl) return ftq_error(FTQ_ERR_OUT_OF_MEMORY, "%s: out of memory for %d token ids", t->source, n);
  for (int32_t i = t->n_ids; i < n; i++) {
    t->id_token[i] = NULL;
    t->id_token_len[i] = 0;
    t->id_flags[i] = 0;
  }
  t->n_ids = n;
  return FTQ_OK;
}

ftq_status tok_set_token(ftq_tokenizer *t, int32_t id, const char *s, size_t len, unsigned flags) {
  FTQ_TRY(tok_reserve_ids(t, id));
  if (!(t->id_flags[id] & TOK_ID_PRESENT) || (flags & TOK_ID_ADDED)) {
    char *copy = ftq_pool_strdup(&t->pool, s, len);
    if (!copy) return FTQ_ERR_OUT_OF_MEMORY;
    t->id_token[id] = copy;
    t->id_token_len[id] = (uint32_t)len;
    FTQ_TRY(ftq_strmap_put(&t->tokens, copy, len, id));
  }
  t->id_flags[id] |= (uint8_t)(flags | TOK_ID_PRESENT);
  return FTQ_OK;
}

ftq_status tok_add_vocab(ftq_tokenizer *t, const char *s, size_t len, int32_t id) {
  FTQ_TRY(tok_set_token(t, id, s, len, 0));
  t->model_vocab++;
  const char *key = t->id_token[id];
  size_t klen = len;
  if (t->byte_level) {
    char *buf = ftq_pool_strdup(&t->pool, s, len); /* conversion only shrinks */
    if (!buf) return FTQ_ERR_OUT_OF_MEMORY;
    if (!tok_bytelevel_to_bytes(s, len, buf, &klen)) return FTQ_OK; /* unreachable from byte input */
    key = buf;
  }
  return ftq_strmap_put(&t->vocab, key, klen, id);
}

/* Looks up a file-form string in the model vocabulary. */
static int vocab_lookup(const ftq_tokenizer *t, const char *s, size_t len, int32_t *id, char *scratch) {
  if (t->byte_level) {
    size_t blen;
    if (!tok_bytelevel_to_bytes(s, len, scratch, &blen)) return 0;
    return ftq_strmap_get(&t->vocab, scratch, blen, id);
  }
  return ftq_strmap_get(&t->vocab, s, len, id);
}

ftq_status tok_add_merge(ftq_tokenizer *t, const char *a, size_t alen, const char *b, size_t blen, int32_t rank) {
  char stack[512];
  size_t cat = alen + blen;
  char *buf = cat * 2 <= sizeof stack ? stack : ftq_malloc(cat * 2, "merge");
  if (!buf) return FTQ_ERR_OUT_OF_MEMORY;
  int32_t ia, ib, ic;
  ftq_status st = FTQ_OK;
  memcpy(buf, a, alen);
  memcpy(buf + alen, b, blen);
  if (!vocab_lookup(t, a, alen, &ia, buf + cat) || !vocab_lookup(t, b, blen, &ib, buf + cat)) {
    /* a merge of a token that byte input can never produce (outside the
     * byte alphabet) can never apply; anything else is an error, as in
     * `tokenizers` */
    int32_t any;
    if (!ftq_strmap_get(&t->tokens, a, alen, &any) || !ftq_strmap_get(&t->tokens, b, blen, &any))
      st = ftq_error(FTQ_ERR_FORMAT, "%s: merge %d (\"%.*s\" \"%.*s\") uses a token that is not in the vocabulary",
                     t->source, rank, (int)alen, a, (int)blen, b);
  } else if (!vocab_lookup(t, buf, cat, &ic, buf + cat)) {
    st = ftq_error(FTQ_ERR_FORMAT, "%s: merge %d (\"%.*s\" \"%.*s\"): the merged token is not in the vocabulary",
                   t->source, rank, (int)alen, a, (int)blen, b);
  } else {
    st = ftq_pairmap_put(&t->merges, ia, ib, rank, ic);
  }
  if (buf != stack) free(buf);
  return st;
}

ftq_status tok_add_added(ftq_tokenizer *t, const char *content, size_t len, int32_t id, int special, int lstrip,
                         int rstrip, int single_word, int normalized) {
  if (len == 0) return ftq_error(FTQ_ERR_FORMAT, "%s: added token %d has empty content", t->source, id);
  FTQ_TRY(tok_set_token(t, id, content, len, TOK_ID_ADDED | (special ? TOK_ID_SPECIAL : 0)));
  if (!special) t->id_flags[id] &= (uint8_t)~TOK_ID_SPECIAL;
  /* the same content twice: the later entry wins, as in `tokenizers` */
  for (size_t i = 0; i < t->n_added; i++) {
    if (t->added[i].len == len && memcmp(t->added[i].content, content, len) == 0) {
      t->added[i] = (tok_added){t->id_token[id], len, id, (uint8_t)special, (uint8_t)lstrip, (uint8_t)rstrip,
                                (uint8_t)single_word, (uint8_t)normalized};
      return FTQ_OK;
    }
  }
  tok_added *a = realloc(t->added, (t->n_added + 1) * sizeof *a);
  if (!a) return ftq_error(FTQ_ERR_OUT_OF_MEMORY, "%s: out of memory for added tokens", t->source);
  t->added = a;
  t->added[t->n_added++] = (tok_added){t->id_token[id], len, id, (uint8_t)special, (uint8_t)lstrip,
                                       (uint8_t)rstrip, (uint8_t)single_word, (uint8_t)normalized};
  return FTQ_OK;
}

static int added_cmp(const void *pa, const void *pb) {
  const tok_added *a = pa, *b = pb;
  unsigned char ca = (unsigned char)a->content[0], cb = (unsigned char)b->content[0];
  if (ca != cb) return ca < cb ? -1 : 1;
  if (a->len != b->len) return a->len > b->len ? -1 : 1; /* longest first */
  return memcmp(a->content, b->content, a->len);
}

/* The bytes a token stands for in text, decoded on its own: byte-level
 * characters to bytes, the metaspace to a space, <0xXX> to the byte. */
static ftq_status make_piece(ftq_tokenizer *t, int32_t id) {
  const char *s = t->id_token[id];
  size_t len = t->id_token_len[id], plen = 0;
  char stack[256];
  char *buf = len * 3 + 4 <= sizeof stack ? stack : ftq_malloc(len * 3 + 4, "token piece");
  if (!buf) return FTQ_ERR_OUT_OF_MEMORY;
  if (t->id_flags[id] & TOK_ID_ADDED) {
    memcpy(buf, s, len);
    plen = len;
  } else if (t->byte_level) {
    if (!tok_bytelevel_to_bytes(s, len, buf, &plen)) {
      memcpy(buf, s, len);
      plen = len;
    }
  } else if (len == 6 && s[0] == '<' && s[1] == '0' && s[2] == 'x' && s[5] == '>' && t->byte_fallback) {
    buf[0] = (char)strtol((char[]){s[3], s[4], 0}, NULL, 16);
    plen = 1;
  } else {
    /* replace U+2581 (the SentencePiece space) with ' ' */
    for (size_t i = 0; i < len;) {
      if (i + 3 <= len && (unsigned char)s[i] == 0xE2 && (unsigned char)s[i + 1] == 0x96 &&
          (unsigned char)s[i + 2] == 0x81) {
        buf[plen++] = ' ';
        i += 3;
      } else {
        buf[plen++] = s[i++];
      }
    }
  }
  char *copy = ftq_pool_strdup(&t->pool, buf, plen);
  if (buf != stack) free(buf);
  if (!copy) return FTQ_ERR_OUT_OF_MEMORY;
  t->id_piece[id] = copy;
  t->id_piece_len[id] = (uint32_t)plen;
  return FTQ_OK;
}

static int32_t find_token(const ftq_tokenizer *t, const char *s) {
  int32_t id;
  return ftq_strmap_get(&t->tokens, s, strlen(s), &id) ? id : -1;
}

ftq_status tok_finish(ftq_tokenizer *t) {
  /* byte tables */
  for (int b = 0; b < 256; b++) {
    char key[8];
    int32_t id;
    if (t->byte_level) {
      key[0] = (char)b;
      if (ftq_strmap_get(&t->vocab, key, 1, &id)) t->byte_id[b] = id;
    } else if (t->byte_fallback) {
      snprintf(key, sizeof key, "<0x%02X>", b);
      if (ftq_strmap_get(&t->vocab, key, 6, &id)) t->byte_id[b] = id;
    }
  }
  /* added tokens: index by first byte, longest first (leftmost-longest) */
  if (t->n_added) qsort(t->added, t->n_added, sizeof *t->added, added_cmp);
  size_t k = 0;
  for (int b = 0; b < 256; b++) {
    t->added_first[b] = k;
    while (k < t->n_added && (unsigned char)t->added[k].content[0] == b) k++;
  }
  t->added_first[256] = t->n_added;
  t->has_normalized_added = 0;
  for (size_t i = 0; i < t->n_added; i++)
    if (t->added[i].normalized) t->has_normalized_added = 1;
  /* pieces */
  t->id_piece = ftq_calloc((size_t)t->n_ids, sizeof *t->id_piece, "token pieces");
  t->id_piece_len = ftq_calloc((size_t)t->n_ids, sizeof *t->id_piece_len, "token pieces");
  if (!t->id_piece || !t->id_piece_len) return FTQ_ERR_OUT_OF_MEMORY;
  for (int32_t id = 0; id < t->n_ids; id++)
    if (t->id_flags[id] & TOK_ID_PRESENT) FTQ_TRY(make_piece(t, id));
  /* specials the files did not name: well-known spellings */
  static const char *bos_names[] = {"<s>", "<|begin_of_text|>", "<|startoftext|>", "<bos>", NULL};
  static const char *eos_names[] = {"</s>", "<|end_of_text|>", "<|endoftext|>", "<eos>", NULL};
  if (t->bos_id < 0 && t->n_prefix > 0) t->bos_id = t->prefix_ids[0];
  if (t->eos_id < 0 && t->n_suffix > 0) t->eos_id = t->suffix_ids[t->n_suffix - 1];
  for (int i = 0; t->bos_id < 0 && bos_names[i]; i++) t->bos_id = find_token(t, bos_names[i]);
  for (int i = 0; t->eos_id < 0 && eos_names[i]; i++) t->eos_id = find_token(t, eos_names[i]);
  if (t->unk_id < 0) t->unk_id = t->unk_model;
  return FTQ_OK;
}

/* ---- public queries ---------------------------------------------------------- */

void ftq_tokenizer_destroy(ftq_tokenizer *t) {
  if (!t) return;
  free(t->id_token);
  free(t->id_token_len);
  free(t->id_piece);
  free(t->id_piece_len);
  free(t->id_flags);
  ftq_strmap_free(&t->vocab);
  ftq_strmap_free(&t->tokens);
  ftq_pairmap_free(&t->merges);
  free(t->added);
  for (int i = 0; i < t->n_norms; i++) {
    free(t->norms[i].a);
    free(t->norms[i].b);
  }
  for (int i = 0; i < t->n_decs; i++) {
    free(t->decs[i].a);
    free(t->decs[i].b);
  }
  ftq_chat_template_clear(&t->chat);
  free(t->chat_template_text);
  ftq_pool_free(&t->pool);
  free(t);
}

int64_t ftq_tokenizer_vocab_size(const ftq_tokenizer *t) {
  if (!t) return -1;
  int32_t n = t->n_ids;
  while (n > 0 && !(t->id_flags[n - 1] & TOK_ID_PRESENT)) n--;
  return n;
}

int32_t ftq_tokenizer_special_id(const ftq_tokenizer *t, ftq_special_token which) {
  if (!t) return -1;
  switch (which) {
    case FTQ_TOKEN_BOS: return t->bos_id;
    case FTQ_TOKEN_EOS: return t->eos_id;
    case FTQ_TOKEN_PAD: return t->pad_id;
    case FTQ_TOKEN_UNK: return t->unk_id;
  }
  return -1;
}

int ftq_tokenizer_is_special(const ftq_tokenizer *t, int32_t id) {
  if (!t || id < 0 || id >= t->n_ids) return 0;
  return (t->id_flags[id] & TOK_ID_SPECIAL) != 0;
}

static ftq_status check_id(const ftq_tokenizer *t, int32_t id) {
  if (id < 0 || id >= t->n_ids || !(t->id_flags[id] & TOK_ID_PRESENT))
    return ftq_error(FTQ_ERR_NOT_FOUND, "%s: no token with id %d", t->source, id);
  return FTQ_OK;
}

ftq_status ftq_tokenizer_token_to_piece(const ftq_tokenizer *t, int32_t id, const char **piece, size_t *len) {
  FTQ_CHECK_ARG(t && piece && len, "ftq_tokenizer_token_to_piece: NULL argument");
  FTQ_TRY(check_id(t, id));
  *piece = t->id_piece[id];
  *len = t->id_piece_len[id];
  return FTQ_OK;
}

ftq_status ftq_tokenizer_id_to_token(const ftq_tokenizer *t, int32_t id, const char **token, size_t *len) {
  FTQ_CHECK_ARG(t && token, "ftq_tokenizer_id_to_token: NULL argument");
  FTQ_TRY(check_id(t, id));
  *token = t->id_token[id];
  if (len) *len = t->id_token_len[id];
  return FTQ_OK;
}

ftq_status ftq_tokenizer_token_to_id(const ftq_tokenizer *t, const char *token, size_t len, int32_t *id) {
  FTQ_CHECK_ARG(t && token && id, "ftq_tokenizer_token_to_id: NULL argument");
  if (!ftq_strmap_get(&t->tokens, token, len, id))
    return ftq_error(FTQ_ERR_NOT_FOUND, "%s: no token \"%.*s\" in the vocabulary", t->source, (int)(len > 200 ? 200 : len),
                     token);
  return FTQ_OK;
}

/* Tokenizers from GGUF metadata (tokenizer.ggml.*), read through
 * io/gguf.h. Two models exist in GGUF files:
 *  - "gpt2": byte-level BPE with explicit merges; tokenizer.ggml.pre names
 *    the split pattern (llama.cpp's names: "default"/"gpt-2", "smollm",
 *    "llama-bpe", "qwen2"), which maps onto the same pipeline as the model's
 *    Hugging Face tokenizer.json;
 *  - "llama": SentencePiece BPE with byte fallback, merges implied by the
 *    scores. The merge list is derived as transformers' SentencePiece
 *    conversion (SentencePieceExtractor) does: every split of a piece into
 *    two pieces of the vocabulary, ordered by the piece's score (higher
 *    first), then by piece id, then by the ids of the two halves. */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "io/gguf.h"
#include "tok/tokenizer.h"
#include "tok/unicode.h"

enum { GG_NORMAL = 1, GG_UNKNOWN = 2, GG_CONTROL = 3, GG_USER_DEFINED = 4, GG_UNUSED = 5, GG_BYTE = 6 };

static int has_key(const ftq_gguf *g, const char *key) {
  ftq_gguf_type ty;
  return ftq_gguf_key_type(g, key, &ty, NULL, NULL) == FTQ_OK;
}

static ftq_status opt_int(const ftq_gguf *g, const char *key, int64_t *v) {
  if (!has_key(g, key)) return FTQ_OK;
  return ftq_gguf_get_int(g, key, v);
}
static ftq_status opt_bool(const ftq_gguf *g, const char *key, int *v) {
  if (!has_key(g, key)) return FTQ_OK;
  return ftq_gguf_get_bool(g, key, v);
}

static ftq_status set_dup(char **dst, size_t *dlen, const char *s) {
  *dlen = strlen(s);
  *dst = ftq_strdup(s, "tokenizer");
  return *dst ? FTQ_OK : FTQ_ERR_OUT_OF_MEMORY;
}

typedef struct spm_merge {
  float score;
  int32_t piece, left, right;
} spm_merge;

static int spm_cmp(const void *pa, const void *pb) {
  const spm_merge *a = pa, *b = pb;
  if (a->score != b->score) return a->score > b->score ? -1 : 1;
  if (a->piece != b->piece) return a->piece < b->piece ? -1 : 1;
  if (a->left != b->left) return a->left < b->left ? -1 : 1;
  return a->right < b->right ? -1 : (a->right > b->right);
}

static ftq_status spm_merges(ftq_tokenizer *t, const float *scores, int64_t n) {
  size_t cap = 1024, cnt = 0;
  spm_merge *m = ftq_malloc(cap * sizeof *m, "tokenizer merges");
  if (!m) return FTQ_ERR_OUT_OF_MEMORY;
  for (int32_t id = 0; id < n; id++) {
    const char *s = t->id_token[id];
    size_t len = t->id_token_len[id];
    if (!s) continue;
    /* split at character boundaries (the converter splits Python strings) */
    for (size_t k = ftq_utf8_seq_len((unsigned char)s[0]); k < len; k += ftq_utf8_seq_len((unsigned char)s[k])) {
      int32_t l, r;
      if (!ftq_strmap_get(&t->vocab, s, k, &l) || !ftq_strmap_get(&t->vocab, s + k, len - k, &r)) continue;
      if (cnt == cap) {
        spm_merge *nm = ftq_realloc(m, cap * 2 * sizeof *m, "tokenizer merges");
        if (!nm) {
          free(m);
          return FTQ_ERR_OUT_OF_MEMORY;
        }
        m = nm;
        cap *= 2;
      }
      m[cnt++] = (spm_merge){scores ? scores[id] : -(float)id, id, l, r};
    }
  }
  qsort(m, cnt, sizeof *m, spm_cmp);
  ftq_status st = ftq_pairmap_init(&t->merges, cnt);
  /* a pair appears once (its concatenation is one piece): ranks are unique */
  for (size_t i = 0; i < cnt && st == FTQ_OK; i++) st = ftq_pairmap_put(&t->merges, m[i].left, m[i].right, (int32_t)i, m[i].piece);
  free(m);
  return st;
}

static ftq_status load(ftq_gguf *g, const char *path, ftq_tokenizer **out) {
  const char *model;
  size_t model_len;
  FTQ_TRY(ftq_gguf_get_string(g, "tokenizer.ggml.model", &model, &model_len));
  int gpt2 = model_len == 4 && memcmp(model, "gpt2", 4) == 0;
  int llama = model_len == 5 && memcmp(model, "llama", 5) == 0;
  if (!gpt2 && !llama)
    return ftq_error(FTQ_ERR_UNSUPPORTED, "%s: tokenizer model '%.*s' is not supported (supported: gpt2, llama)", path,
                     (int)model_len, model);
  ftq_tokenizer *t;
  FTQ_TRY(tok_create_empty(path, &t));
  *out = t;

  ftq_gguf_type ty, et;
  uint64_t n_tok;
  FTQ_TRY(ftq_gguf_key_type(g, "tokenizer.ggml.tokens", &ty, &et, &n_tok));
  if (ty != FTQ_GGUF_ARRAY || et != FTQ_GGUF_STRING || n_tok == 0 || n_tok >= (1u << 30))
    return ftq_error(FTQ_ERR_FORMAT, "%s: tokenizer.ggml.tokens is not a non-empty string array", path);
  const void *types = NULL, *scores = NULL;
  uint64_t cnt;
  if (has_key(g, "tokenizer.ggml.token_type")) {
    FTQ_TRY(ftq_gguf_get_array(g, "tokenizer.ggml.token_type", &et, &cnt, &types));
    if (et != FTQ_GGUF_INT32 || cnt != n_tok)
      return ftq_error(FTQ_ERR_FORMAT, "%s: tokenizer.ggml.token_type must be %llu int32 values", path,
                       (unsigned long long)n_tok);
  }
  if (llama && has_key(g, "tokenizer.ggml.scores")) {
    FTQ_TRY(ftq_gguf_get_array(g, "tokenizer.ggml.scores", &et, &cnt, &scores));
    if (et != FTQ_GGUF_FLOAT32 || cnt != n_tok)
      return ftq_error(FTQ_ERR_FORMAT, "%s: tokenizer.ggml.scores must be %llu float32 values", path,
                       (unsigned long long)n_tok);
  }

  /* pipeline */
  int add_space_prefix = llama;
  FTQ_TRY(opt_bool(g, "tokenizer.ggml.add_space_prefix", &add_space_prefix));
  if (gpt2) {
    t->byte_level = 1;
    const char *pre = "default";
    size_t pre_len = 7;
    if (has_key(g, "tokenizer.ggml.pre")) FTQ_TRY(ftq_gguf_get_string(g, "tokenizer.ggml.pre", &pre, &pre_len));
#define PRE_IS(s) (pre_len == strlen(s) && memcmp(pre, s, pre_len) == 0)
    tok_pre bl = {.type = TOK_PRE_BYTELEVEL, .add_prefix_space = 0, .use_regex = 1, .regex = TOK_RE_GPT2};
    if (PRE_IS("default") || PRE_IS("gpt-2") || PRE_IS("gpt2")) {
      t->pres[t->n_pres++] = bl;
    } else if (PRE_IS("smollm")) {
      t->pres[t->n_pres++] = (tok_pre){.type = TOK_PRE_DIGITS, .individual_digits = 1};
      t->pres[t->n_pres++] = bl;
    } else if (PRE_IS("llama-bpe") || PRE_IS("llama3") || PRE_IS("qwen2")) {
      int qwen = PRE_IS("qwen2");
      if (qwen) t->norms[t->n_norms++] = (tok_norm){.type = TOK_NORM_NFC};
      t->pres[t->n_pres++] = (tok_pre){.type = TOK_PRE_SPLIT, .regex = qwen ? TOK_RE_QWEN2 : TOK_RE_LLAMA3};
      bl.use_regex = 0;
      t->pres[t->n_pres++] = bl;
      t->ignore_merges = !qwen;
    } else {
      return ftq_error(FTQ_ERR_UNSUPPORTED,
                       "%s: tokenizer.ggml.pre '%.*s' is not supported (supported: default, gpt-2, smollm, llama-bpe, "
                       "qwen2)", path, (int)pre_len, pre);
    }
#undef PRE_IS
    t->decs[t->n_decs++] = (tok_dec){.type = TOK_DEC_BYTELEVEL};
    t->has_decoder = 1;
  } else {
    t->byte_fallback = 1;
    t->fuse_unk = 1;
    static const char SP[] = "\xE2\x96\x81";
    if (add_space_prefix) {
      tok_norm *p = &t->norms[t->n_norms++];
      p->type = TOK_NORM_PREPEND;
      FTQ_TRY(set_dup(&p->a, &p->alen, SP));
    }
    tok_norm *r = &t->norms[t->n_norms++];
    r->type = TOK_NORM_REPLACE;
    FTQ_TRY(set_dup(&r->a, &r->alen, " "));
    FTQ_TRY(set_dup(&r->b, &r->blen, SP));
    tok_dec *d = &t->decs[t->n_decs++];
    d->type = TOK_DEC_REPLACE;
    FTQ_TRY(set_dup(&d->a, &d->alen, SP));
    FTQ_TRY(set_dup(&d->b, &d->blen, " "));
    t->decs[t->n_decs++] = (tok_dec){.type = TOK_DEC_BYTEFALLBACK};
    t->decs[t->n_decs++] = (tok_dec){.type = TOK_DEC_FUSE};
    if (add_space_prefix) t->decs[t->n_decs++] = (tok_dec){.type = TOK_DEC_STRIP, .content = ' ', .start = 1, .stop = 0};
    t->has_decoder = 1;
  }

  /* vocabulary */
  FTQ_TRY(ftq_strmap_init(&t->vocab, n_tok));
  FTQ_TRY(ftq_strmap_init(&t->tokens, n_tok));
  FTQ_TRY(tok_reserve_ids(t, (int32_t)n_tok - 1));
  for (uint64_t i = 0; i < n_tok; i++) {
    const char *s;
    size_t len;
    FTQ_TRY(ftq_gguf_get_array_string(g, "tokenizer.ggml.tokens", i, &s, &len));
    int32_t type = GG_NORMAL;
    if (types) memcpy(&type, (const char *)types + 4 * i, 4);
    FTQ_TRY(tok_add_vocab(t, s, len, (int32_t)i));
    /* control, unknown and user-defined tokens are matched in text (as
     * llama.cpp does, and as their tokenizer.json lists them in added_tokens) */
    if (type == GG_CONTROL || type == GG_UNKNOWN || type == GG_USER_DEFINED)
      FTQ_TRY(tok_add_added(t, s, len, (int32_t)i, type != GG_USER_DEFINED, 0, 0, 0, 0));
    if (type == GG_UNKNOWN && t->unk_model < 0) t->unk_model = (int32_t)i;
  }

  /* merges */
  if (gpt2) {
    uint64_t n_merges = 0;
    if (has_key(g, "tokenizer.ggml.merges")) FTQ_TRY(ftq_gguf_key_type(g, "tokenizer.ggml.merges", &ty, &et, &n_merges));
    FTQ_TRY(ftq_pairmap_init(&t->merges, n_merges));
    for (uint64_t i = 0; i < n_merges; i++) {
      const char *s;
      size_t len;
      FTQ_TRY(ftq_gguf_get_array_string(g, "tokenizer.ggml.merges", i, &s, &len));
      const char *sp = memchr(s, ' ', len);
      if (!sp || sp == s || sp + 1 == s + len)
        return ftq_error(FTQ_ERR_FORMAT, "%s: tokenizer.ggml.merges[%llu] is not \"a b\"", path, (unsigned long long)i);
      FTQ_TRY(tok_add_merge(t, s, (size_t)(sp - s), sp + 1, len - (size_t)(sp + 1 - s), (int32_t)i));
    }
  } else {
    float *sc = NULL;
    if (scores) {
      sc = ftq_malloc(n_tok * sizeof *sc, "tokenizer scores");
      if (!sc) return FTQ_ERR_OUT_OF_MEMORY;
      memcpy(sc, scores, n_tok * sizeof *sc);
    }
    ftq_status st = spm_merges(t, sc, (int64_t)n_tok);
    free(sc);
    FTQ_TRY(st);
  }

  /* special ids and what ADD_SPECIAL adds */
  int64_t bos = llama ? 1 : -1, eos = llama ? 2 : -1, unk = llama ? 0 : -1, pad = -1;
  FTQ_TRY(opt_int(g, "tokenizer.ggml.bos_token_id", &bos));
  FTQ_TRY(opt_int(g, "tokenizer.ggml.eos_token_id", &eos));
  FTQ_TRY(opt_int(g, "tokenizer.ggml.unknown_token_id", &unk));
  FTQ_TRY(opt_int(g, "tokenizer.ggml.padding_token_id", &pad));
  int64_t ids[4] = {bos, eos, unk, pad};
  static const char *names[4] = {"bos_token_id", "eos_token_id", "unknown_token_id", "padding_token_id"};
  for (int k = 0; k < 4; k++)
    if (ids[k] >= (int64_t)n_tok || ids[k] < -1)
      return ftq_error(FTQ_ERR_FORMAT, "%s: tokenizer.ggml.%s %lld is not a token", path, names[k], (long long)ids[k]);
  t->bos_id = (int32_t)bos;
  t->eos_id = (int32_t)eos;
  t->pad_id = (int32_t)pad;
  if (llama && t->unk_model < 0) t->unk_model = (int32_t)unk;
  t->unk_id = (int32_t)unk;
  int add_bos = llama, add_eos = 0;
  FTQ_TRY(opt_bool(g, "tokenizer.ggml.add_bos_token", &add_bos));
  FTQ_TRY(opt_bool(g, "tokenizer.ggml.add_eos_token", &add_eos));
  if (add_bos && t->bos_id >= 0) t->prefix_ids[t->n_prefix++] = t->bos_id;
  if (add_eos && t->eos_id >= 0) t->suffix_ids[t->n_suffix++] = t->eos_id;

  if (has_key(g, "tokenizer.chat_template")) {
    const char *s;
    size_t len;
    FTQ_TRY(ftq_gguf_get_string(g, "tokenizer.chat_template", &s, &len));
    t->chat_template_text = ftq_malloc(len + 1, "chat template");
    if (!t->chat_template_text) return FTQ_ERR_OUT_OF_MEMORY;
    memcpy(t->chat_template_text, s, len);
    t->chat_template_text[len] = '\0';
  }
  return tok_finish(t);
}

ftq_status tok_load_gguf(const char *path, ftq_tokenizer **out) {
  *out = NULL;
  ftq_gguf *g;
  FTQ_TRY(ftq_gguf_open(path, &g));
  ftq_tokenizer *t = NULL;
  ftq_status st = load(g, path, &t);
  ftq_gguf_close(g);
  if (st != FTQ_OK) {
    ftq_tokenizer_destroy(t);
    return st;
  }
  *out = t;
  return FTQ_OK;
}

/* Encoding: text -> token ids with the byte offset each token starts at.
 *
 * The steps follow `tokenizers` (TokenizerImpl::encode_single_sequence):
 * 1. ill-formed UTF-8 is replaced by U+FFFD (maximal subparts);
 * 2. added tokens are split out (leftmost-longest; lstrip / rstrip /
 *    single_word; special ones kept as text on request), first those matched
 *    on raw text, then the `normalized` ones on normalized text;
 * 3. each remaining piece is normalized, pre-tokenized and given to BPE;
 * 4. the post-processor's template (BOS/EOS) is applied on request.
 * Text lives in one growing buffer; every byte carries the offset of the
 * input byte it came from, so tokens report where they start. */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "tok/tokenizer.h"
#include "tok/unicode.h"

typedef struct span {
  uint32_t off, len; /* in ws.buf */
} span;

typedef struct sym {
  int32_t id;
  uint32_t start, len; /* bytes of the word; len 0 = merged away */
  int32_t prev, next;
} sym;

typedef struct hmerge {
  int32_t rank;
  uint32_t pos;
  int32_t id;
} hmerge;

typedef struct ws {
  const ftq_tokenizer *t;
  unsigned char *buf;
  int32_t *orig; /* per byte of buf: offset in the cleaned input */
  size_t len, cap;
  span *sp[2];
  size_t nsp[2], capsp[2];
  sym *syms;
  size_t capsyms;
  hmerge *heap;
  size_t capheap;
  int32_t *ids, *offs;
  size_t n, capids;
  unsigned char *tmp; /* NFC output */
  int32_t *tmpal;
  size_t captmp;
} ws;

static ftq_status grow(void **p, size_t *cap, size_t need, size_t elem) {
  if (need <= *cap) return FTQ_OK;
  size_t c = *cap ? *cap : 64;
  while (c < need) c *= 2;
  void *q = realloc(*p, c * elem);
  if (!q) return ftq_error(FTQ_ERR_OUT_OF_MEMORY, "tokenizer: out of memory encoding text");
  *p = q;
  *cap = c;
  return FTQ_OK;
}

static ftq_status buf_reserve(ws *w, size_t extra) {
  if (w->len + extra <= w->cap) return FTQ_OK;
  size_t c1 = w->cap, c2 = w->cap;
  FTQ_TRY(grow((void **)&w->buf, &c1, w->len + extra, 1));
  FTQ_TRY(grow((void **)&w->orig, &c2, w->len + extra, sizeof(int32_t)));
  w->cap = c1 < c2 ? c1 : c2;
  return FTQ_OK;
}

static ftq_status emit(ws *w, int32_t id, int32_t off) {
  if (w->n == w->capids) {
    size_t c1 = w->capids, c2 = w->capids;
    FTQ_TRY(grow((void **)&w->ids, &c1, w->n + 1, sizeof(int32_t)));
    FTQ_TRY(grow((void **)&w->offs, &c2, w->n + 1, sizeof(int32_t)));
    w->capids = c1 < c2 ? c1 : c2;
  }
  w->ids[w->n] = id;
  w->offs[w->n++] = off;
  return FTQ_OK;
}

static ftq_status push_span(ws *w, int list, uint32_t off, uint32_t len) {
  if (len == 0) return FTQ_OK; /* empty splits are dropped */
  FTQ_TRY(grow((void **)&w->sp[list], &w->capsp[list], w->nsp[list] + 1, sizeof(span)));
  w->sp[list][w->nsp[list]++] = (span){off, len};
  return FTQ_OK;
}

/* ---- BPE ------------------------------------------------------------------------ */

static inline int heap_less(const hmerge *a, const hmerge *b) {
  return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}
static void heap_push(hmerge *h, size_t *n, hmerge m) {
  size_t i = (*n)++;
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (!heap_less(&m, &h[p])) break;
    h[i] = h[p];
    i = p;
  }
  h[i] = m;
}
static hmerge heap_pop(hmerge *h, size_t *n) {
  hmerge top = h[0], last = h[--*n];
  size_t i = 0;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= *n) break;
    if (c + 1 < *n && heap_less(&h[c + 1], &h[c])) c++;
    if (!heap_less(&h[c], &last)) break;
    h[i] = h[c];
    i = c;
  }
  if (*n) h[i] = last;
  return top;
}

static ftq_status add_sym(ws *w, size_t *ns, int32_t id, uint32_t start, uint32_t len) {
  FTQ_TRY(grow((void **)&w->syms, &w->capsyms, *ns + 1, sizeof(sym)));
  w->syms[*ns] = (sym){id, start, len, (int32_t)*ns - 1, (int32_t)*ns + 1};
  (*ns)++;
  return FTQ_OK;
}

/* Unknown character: the unk token (consecutive ones fused with fuse_unk),
 * or nothing when the model has none (as `tokenizers`). */
static ftq_status add_unk(ws *w, size_t *ns, uint32_t start, uint32_t len) {
  const ftq_tokenizer *t = w->t;
  if (t->unk_model < 0) return FTQ_OK;
  if (t->fuse_unk && *ns > 0 && w->syms[*ns - 1].id == t->unk_model) {
    w->syms[*ns - 1].len += len;
    return FTQ_OK;
  }
  return add_sym(w, ns, t->unk_model, start, len);
}

/* BPE on one pre-token word at w->buf[off..off+len). */
static ftq_status bpe_word(ws *w, uint32_t off, uint32_t len) {
  const ftq_tokenizer *t = w->t;
  const unsigned char *s = w->buf + off;
  int32_t id;
  if (t->ignore_merges && ftq_strmap_get(&t->vocab, (const char *)s, len, &id)) return emit(w, id, w->orig[off]);
  size_t ns = 0;
  if (t->byte_level) {
    for (uint32_t i = 0; i < len; i++) {
      int32_t b = t->byte_id[s[i]];
      if (b >= 0) FTQ_TRY(add_sym(w, &ns, b, i, 1));
      else FTQ_TRY(add_unk(w, &ns, i, 1));
    }
  } else {
    for (uint32_t i = 0; i < len;) {
      uint32_t cl = (uint32_t)ftq_utf8_seq_len(s[i]);
      if (cl > len - i) cl = len - i;
      if (ftq_strmap_get(&t->vocab, (const char *)s + i, cl, &id)) {
        FTQ_TRY(add_sym(w, &ns, id, i, cl));
      } else {
        int all = t->byte_fallback;
        for (uint32_t k = 0; all && k < cl; k++) all = t->byte_id[s[i + k]] >= 0;
        if (all) {
          for (uint32_t k = 0; k < cl; k++) FTQ_TRY(add_sym(w, &ns, t->byte_id[s[i + k]], i + k, 1));
        } else {
          FTQ_TRY(add_unk(w, &ns, i, cl));
        }
      }
      i += cl;
    }
  }
  if (ns == 0) return FTQ_OK;
  sym *sy = w->syms;
  sy[ns - 1].next = -1;
  if (ns > 1) {
    FTQ_TRY(grow((void **)&w->heap, &w->capheap, 2 * ns + 4, sizeof(hmerge)));
    size_t nh = 0;
    int32_t rank, nid;
    for (size_t i = 0; i + 1 < ns; i++)
      if (ftq_pairmap_get(&t->merges, sy[i].id, sy[i + 1].id, &rank, &nid))
        heap_push(w->heap, &nh, (hmerge){rank, (uint32_t)i, nid});
    while (nh) {
      hmerge top = heap_pop(w->heap, &nh);
      sym *cur = &sy[top.pos];
      if (cur->len == 0 || cur->next < 0) continue;
      sym *right = &sy[cur->next];
      /* a stale entry: the pair changed since it was queued (same test as
       * `tokenizers`: the pair must still merge into the queued id) */
      if (!ftq_pairmap_get(&t->merges, cur->id, right->id, &rank, &nid) || nid != top.id) continue;
      cur->id = top.id;
      cur->len += right->len;
      cur->next = right->next;
      right->len = 0;
      if (cur->next >= 0) sy[cur->next].prev = (int32_t)top.pos;
      /* growth bound: each merge queues at most two entries */
      FTQ_TRY(grow((void **)&w->heap, &w->capheap, nh + 2, sizeof(hmerge)));
      sy = w->syms;
      cur = &sy[top.pos];
      if (cur->prev >= 0 && ftq_pairmap_get(&t->merges, sy[cur->prev].id, cur->id, &rank, &nid))
        heap_push(w->heap, &nh, (hmerge){rank, (uint32_t)cur->prev, nid});
      if (cur->next >= 0 && ftq_pairmap_get(&t->merges, cur->id, sy[cur->next].id, &rank, &nid))
        heap_push(w->heap, &nh, (hmerge){rank, top.pos, nid});
    }
  }
  for (int32_t i = 0; i >= 0; i = sy[i].next) FTQ_TRY(emit(w, sy[i].id, w->orig[off + sy[i].start]));
  return FTQ_OK;
}

/* ---- text transformations (each writes a new region of buf) ------------------ */

/* Copies a span to the end of buf with `pre` prepended (its bytes take the
 * offset of the span's first byte). */
static ftq_status prepend(ws *w, span *s, const char *pre, size_t plen) {
  FTQ_TRY(buf_reserve(w, plen + s->len));
  uint32_t off = (uint32_t)w->len;
  int32_t o0 = w->orig[s->off];
  memcpy(w->buf + w->len, pre, plen);
  for (size_t i = 0; i < plen; i++) w->orig[w->len + i] = o0;
  memmove(w->buf + w->len + plen, w->buf + s->off, s->len);
  memmove(w->orig + w->len + plen, w->orig + s->off, s->len * sizeof(int32_t));
  w->len += plen + s->len;
  *s = (span){off, (uint32_t)(plen + s->len)};
  return FTQ_OK;
}

/* Replaces every occurrence of pat by rep (rep's bytes take the offset of
 * the match's first byte). */
static ftq_status replace(ws *w, span *s, const char *pat, size_t plen, const char *rep, size_t rlen) {
  size_t count = 0;
  for (size_t i = 0; i + plen <= s->len;) {
    if (memcmp(w->buf + s->off + i, pat, plen) == 0) count++, i += plen;
    else i++;
  }
  if (!count) return FTQ_OK;
  size_t nlen = s->len + count * rlen - count * plen;
  FTQ_TRY(buf_reserve(w, nlen));
  uint32_t off = (uint32_t)w->len;
  size_t o = w->len;
  for (size_t i = 0; i < s->len;) {
    if (i + plen <= s->len && memcmp(w->buf + s->off + i, pat, plen) == 0) {
      memcpy(w->buf + o, rep, rlen);
      for (size_t k = 0; k < rlen; k++) w->orig[o + k] = w->orig[s->off + i];
      o += rlen;
      i += plen;
    } else {
      w->buf[o] = w->buf[s->off + i];
      w->orig[o++] = w->orig[s->off + i];
      i++;
    }
  }
  w->len = o;
  *s = (span){off, (uint32_t)nlen};
  return FTQ_OK;
}

static ftq_status nfc(ws *w, span *s) {
  size_t bound = ftq_nfc_bound(s->len);
  size_t c1 = w->captmp, c2 = w->captmp;
  FTQ_TRY(grow((void **)&w->tmp, &c1, bound, 1));
  FTQ_TRY(grow((void **)&w->tmpal, &c2, bound, sizeof(int32_t)));
  w->captmp = c1 < c2 ? c1 : c2;
  size_t n = ftq_nfc(w->buf + s->off, s->len, w->tmp, w->tmpal);
  if (n == (size_t)-1) return ftq_error(FTQ_ERR_OUT_OF_MEMORY, "tokenizer: out of memory in NFC normalization");
  FTQ_TRY(buf_reserve(w, n));
  uint32_t off = (uint32_t)w->len;
  memcpy(w->buf + w->len, w->tmp, n);
  for (size_t i = 0; i < n; i++) w->orig[w->len + i] = w->orig[s->off + (size_t)w->tmpal[i]];
  w->len += n;
  *s = (span){off, (uint32_t)n};
  return FTQ_OK;
}

static ftq_status normalize(ws *w, span *s) {
  const ftq_tokenizer *t = w->t;
  for (int k = 0; k < t->n_norms && s->len; k++) {
    const tok_norm *nm = &t->norms[k];
    switch (nm->type) {
      case TOK_NORM_PREPEND: FTQ_TRY(prepend(w, s, nm->a, nm->alen)); break;
      case TOK_NORM_REPLACE: FTQ_TRY(replace(w, s, nm->a, nm->alen, nm->b, nm->blen)); break;
      case TOK_NORM_NFC: FTQ_TRY(nfc(w, s)); break;
    }
  }
  return FTQ_OK;
}

/* ---- pre-tokenizers ------------------------------------------------------------ */

typedef struct split_ctx {
  ws *w;
  int list;
  uint32_t base;
  ftq_status st;
} split_ctx;

static void split_emit(void *user, size_t start, size_t end) {
  split_ctx *c = user;
  if (c->st == FTQ_OK) c->st = push_span(c->w, c->list, c->base + (uint32_t)start, (uint32_t)(end - start));
}

static ftq_status pre_step(ws *w, const tok_pre *p, span s, int out) {
  switch (p->type) {
    case TOK_PRE_BYTELEVEL:
    case TOK_PRE_SPLIT: {
      if (p->type == TOK_PRE_BYTELEVEL) {
        if (p->add_prefix_space && w->buf[s.off] != ' ') FTQ_TRY(prepend(w, &s, " ", 1));
        if (!p->use_regex) return push_span(w, out, s.off, s.len);
      }
      split_ctx c = {w, out, s.off, FTQ_OK};
      tok_regex_split(p->type == TOK_PRE_SPLIT ? p->regex : TOK_RE_GPT2, w->buf + s.off, s.len, split_emit, &c);
      return c.st;
    }
    case TOK_PRE_DIGITS: {
      const unsigned char *b = w->buf + s.off;
      size_t i = 0, start = 0;
      int prev_digit = -1;
      while (i < s.len) {
        size_t cl;
        uint32_t cp = b[i] < 0x80 ? b[i] : ftq_utf8_decode(b + i, s.len - i, &cl, NULL);
        if (b[i] < 0x80) cl = 1;
        int d = (ftq_uflags(cp) & FTQ_U_NUMBER) != 0;
        if (i > start && (d != prev_digit || (d && p->individual_digits))) {
          FTQ_TRY(push_span(w, out, s.off + (uint32_t)start, (uint32_t)(i - start)));
          start = i;
        }
        prev_digit = d;
        i += cl;
      }
      return push_span(w, out, s.off + (uint32_t)start, (uint32_t)(s.len - start));
    }
    case TOK_PRE_METASPACE: {
      int first = w->orig[s.off] == 0;
      FTQ_TRY(replace(w, &s, " ", 1, p->rep, p->rep_len));
      int starts = s.len >= p->rep_len && memcmp(w->buf + s.off, p->rep, p->rep_len) == 0;
      if (!starts && (p->prepend_scheme == TOK_PREPEND_ALWAYS || (p->prepend_scheme == TOK_PREPEND_FIRST && first)))
        FTQ_TRY(prepend(w, &s, p->rep, p->rep_len));
      if (!p->split) return push_span(w, out, s.off, s.len);
      /* MergedWithNext: each replacement character starts a new piece */
      size_t start = 0;
      for (size_t i = 0; i + p->rep_len <= s.len;) {
        if (memcmp(w->buf + s.off + i, p->rep, p->rep_len) == 0) {
          if (i > start) FTQ_TRY(push_span(w, out, s.off + (uint32_t)start, (uint32_t)(i - start)));
          start = i;
          i += p->rep_len;
        } else {
          i++;
        }
      }
      return push_span(w, out, s.off + (uint32_t)start, (uint32_t)(s.len - start));
    }
  }
  return FTQ_OK;
}

/* Normalized text of one piece: pre-tokenize and run BPE on each word. */
static ftq_status model_piece(ws *w, span s) {
  const ftq_tokenizer *t = w->t;
  int cur = 0;
  w->nsp[0] = 0;
  FTQ_TRY(push_span(w, 0, s.off, s.len));
  for (int k = 0; k < t->n_pres; k++) {
    int out = 1 - cur;
    w->nsp[out] = 0;
    for (size_t i = 0; i < w->nsp[cur]; i++) FTQ_TRY(pre_step(w, &t->pres[k], w->sp[cur][i], out));
    cur = out;
  }
  for (size_t i = 0; i < w->nsp[cur]; i++) FTQ_TRY(bpe_word(w, w->sp[cur][i].off, w->sp[cur][i].len));
  return FTQ_OK;
}

/* ---- added tokens -------------------------------------------------------------- */

/* lstrip of an added token: moves *start left over white space, not below
 * `from` (the end of the previous match). */
static void lstrip_start(const unsigned char *s, size_t from, size_t *start) {
  size_t i = *start;
  while (i > from) {
    size_t j = i - 1;
    while (j > from && (s[j] & 0xC0) == 0x80) j--;
    size_t cl;
    uint32_t cp = ftq_utf8_decode(s + j, i - j, &cl, NULL);
    if (!(ftq_uflags(cp) & FTQ_U_SPACE)) break;
    i = j;
  }
  *start = i;
}

static int word_char_before(const unsigned char *s, size_t i) {
  if (i == 0) return 0;
  size_t j = i - 1;
  while (j > 0 && (s[j] & 0xC0) == 0x80) j--;
  size_t cl;
  uint32_t cp = ftq_utf8_decode(s + j, i - j, &cl, NULL);
  return (ftq_uflags(cp) & FTQ_U_WORD) != 0;
}
static int word_char_at(const unsigned char *s, size_t n, size_t i) {
  if (i >= n) return 0;
  size_t cl;
  uint32_t cp = ftq_utf8_decode(s + i, n - i, &cl, NULL);
  return (ftq_uflags(cp) & FTQ_U_WORD) != 0;
}

static ftq_status text_piece(ws *w, span p, unsigned flags, int pass2);

/* Splits w->buf[s] on the added tokens whose `normalized` flag equals
 * `normalized`; the text in between goes to text_piece(). */
static ftq_status split_added(ws *w, span s, int normalized, unsigned flags, int pass2) {
  const ftq_tokenizer *t = w->t;
  size_t start_offset = 0, i = 0, n = s.len;
  while (i < n) {
    const unsigned char *b = w->buf + s.off;
    const tok_added *m = NULL;
    size_t lo = t->added_first[b[i]], hi = t->added_first[b[i] + 1];
    for (size_t k = lo; k < hi; k++) {
      const tok_added *a = &t->added[k];
      if (a->normalized != normalized || a->len > n - i) continue;
      if (memcmp(b + i, a->content, a->len) == 0) {
        m = a; /* longest first */
        break;
      }
    }
    if (!m) {
      i++;
      continue;
    }
    size_t start = i, stop = i + m->len;
    int skip = (flags & FTQ_ENCODE_SPECIAL_AS_TEXT) && m->special;
    if (!skip && m->single_word && (word_char_before(b, start) || word_char_at(b, n, stop))) skip = 1;
    if (skip) {
      i = stop; /* the match is consumed but not split out, as in `tokenizers` */
      continue;
    }
    if (m->lstrip) lstrip_start(b, start_offset, &start);
    if (m->rstrip) {
      while (stop < n) {
        size_t cl;
        uint32_t cp = ftq_utf8_decode(b + stop, n - stop, &cl, NULL);
        if (!(ftq_uflags(cp) & FTQ_U_SPACE)) break;
        stop += cl;
      }
    }
    if (start_offset < start)
      FTQ_TRY(text_piece(w, (span){s.off + (uint32_t)start_offset, (uint32_t)(start - start_offset)}, flags, pass2));
    FTQ_TRY(emit(w, m->id, w->orig[s.off + start]));
    start_offset = i = stop;
  }
  if (start_offset < n) return text_piece(w, (span){s.off + (uint32_t)start_offset, (uint32_t)(n - start_offset)}, flags, pass2);
  return FTQ_OK;
}

/* Text between added tokens: in the first pass normalize it and split it on
 * the `normalized` added tokens; in the second, tokenize it. */
static ftq_status text_piece(ws *w, span p, unsigned flags, int pass2) {
  if (pass2) return model_piece(w, p);
  FTQ_TRY(normalize(w, &p));
  if (!p.len) return FTQ_OK;
  return w->t->has_normalized_added ? split_added(w, p, 1, flags, 1) : model_piece(w, p);
}

static void ws_free(ws *w) {
  free(w->buf);
  free(w->orig);
  free(w->sp[0]);
  free(w->sp[1]);
  free(w->syms);
  free(w->heap);
  free(w->tmp);
  free(w->tmpal);
  free(w->ids);
  free(w->offs);
}

ftq_status tok_encode(const ftq_tokenizer *t, const char *text, size_t len, unsigned flags, int32_t **ids,
                      int32_t **offsets, size_t *n) {
  *ids = NULL;
  if (offsets) *offsets = NULL;
  *n = 0;
  if (len > (size_t)INT32_MAX / 4)
    return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "tokenizer: text of %zu bytes is too long to encode at once", len);
  ws w;
  memset(&w, 0, sizeof w);
  w.t = t;
  ftq_status st = FTQ_OK;
  int32_t *calign = NULL; /* cleaned offset -> input offset, when they differ */

  /* 1. cleaned text at the start of buf */
  const unsigned char *in = (const unsigned char *)text;
  size_t valid = ftq_utf8_valid_prefix(in, len);
  if (valid == len) {
    st = buf_reserve(&w, len * 2 + 64);
    if (st == FTQ_OK) {
      memcpy(w.buf, in, len);
      for (size_t i = 0; i < len; i++) w.orig[i] = (int32_t)i;
      w.len = len;
    }
  } else {
    st = buf_reserve(&w, len * 3 + 64);
    calign = st == FTQ_OK ? malloc((len * 3 + 1) * sizeof *calign) : NULL;
    if (st == FTQ_OK && !calign) st = ftq_error(FTQ_ERR_OUT_OF_MEMORY, "tokenizer: out of memory encoding text");
    for (size_t i = 0; st == FTQ_OK && i < len;) {
      size_t cl;
      int ok;
      ftq_utf8_decode(in + i, len - i, &cl, &ok);
      const unsigned char *src = ok ? in + i : (const unsigned char *)"\xEF\xBF\xBD";
      size_t sl = ok ? cl : 3;
      for (size_t k = 0; k < sl; k++) {
        calign[w.len] = (int32_t)i;
        w.orig[w.len] = (int32_t)w.len;
        w.buf[w.len++] = src[k];
      }
      i += cl;
    }
    if (calign) calign[w.len] = (int32_t)len;
  }
  size_t clean_len = w.len;

  /* 2-4 */
  if (st == FTQ_OK && (flags & FTQ_ENCODE_ADD_SPECIAL))
    for (int k = 0; k < t->n_prefix && st == FTQ_OK; k++) st = emit(&w, t->prefix_ids[k], 0);
  if (st == FTQ_OK && (flags & FTQ_ENCODE_ADD_BOS)) {
    if (t->bos_id < 0) st = ftq_error(FTQ_ERR_STATE, "%s: the tokenizer has no BOS token", t->source);
    else st = emit(&w, t->bos_id, 0);
  }
  if (st == FTQ_OK && clean_len) st = split_added(&w, (span){0, (uint32_t)clean_len}, 0, flags, 0);
  if (st == FTQ_OK && (flags & FTQ_ENCODE_ADD_EOS)) {
    if (t->eos_id < 0) st = ftq_error(FTQ_ERR_STATE, "%s: the tokenizer has no EOS token", t->source);
    else st = emit(&w, t->eos_id, (int32_t)clean_len);
  }
  if (st == FTQ_OK && (flags & FTQ_ENCODE_ADD_SPECIAL))
    for (int k = 0; k < t->n_suffix && st == FTQ_OK; k++) st = emit(&w, t->suffix_ids[k], (int32_t)clean_len);

  if (st == FTQ_OK) {
    if (calign)
      for (size_t i = 0; i < w.n; i++) w.offs[i] = calign[w.offs[i]];
    if (w.n == 0) { /* hand back valid (empty) arrays */
      st = emit(&w, 0, 0);
      w.n = 0;
    }
  }
  free(calign);
  if (st != FTQ_OK) {
    ws_free(&w);
    return st;
  }
  *ids = w.ids;
  *n = w.n;
  w.ids = NULL;
  if (offsets) {
    *offsets = w.offs;
    w.offs = NULL;
  }
  ws_free(&w);
  return FTQ_OK;
}

ftq_status ftq_tokenizer_encode(const ftq_tokenizer *t, const char *text, size_t len, unsigned flags, int32_t **ids,
                                size_t *n_ids) {
  FTQ_CHECK_ARG(t && ids && n_ids && (text || len == 0), "ftq_tokenizer_encode: NULL argument");
  *ids = NULL;
  *n_ids = 0;
  return tok_encode(t, text ? text : "", len, flags, ids, NULL, n_ids);
}

ftq_status ftq_tokenizer_encode_offsets(const ftq_tokenizer *t, const char *text, size_t len, unsigned flags,
                                        int32_t **ids, int32_t **offsets, size_t *n_ids) {
  FTQ_CHECK_ARG(t && ids && offsets && n_ids && (text || len == 0), "ftq_tokenizer_encode_offsets: NULL argument");
  return tok_encode(t, text ? text : "", len, flags, ids, offsets, n_ids);
}

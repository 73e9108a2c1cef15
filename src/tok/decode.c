/* Decoding: ids -> text through the tokenizer's decoder chain, applied as
 * `tokenizers` does: each decoder maps the list of token strings to a new
 * list, and the final list is concatenated. Byte-level output that is not
 * valid UTF-8 is repaired with U+FFFD (maximal subparts), as Rust's
 * String::from_utf8_lossy does. */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "tok/tokenizer.h"
#include "tok/unicode.h"

typedef struct strlist {
  char *data;
  size_t len, cap;
  size_t *off, *slen; /* item i = data[off[i] .. off[i]+slen[i]) */
  size_t n, capn;
} strlist;

static ftq_status sl_reserve(strlist *l, size_t bytes) {
  if (l->len + bytes <= l->cap) return FTQ_OK;
  size_t c = l->cap ? l->cap : 256;
  while (c < l->len + bytes) c *= 2;
  char *d = realloc(l->data, c);
  if (!d) return ftq_error(FTQ_ERR_OUT_OF_MEMORY, "tokenizer: out of memory decoding");
  l->data = d;
  l->cap = c;
  return FTQ_OK;
}
/* Starts a new item (empty). */
static ftq_status sl_begin(strlist *l) {
  if (l->n == l->capn) {
    size_t c = l->capn ? l->capn * 2 : 64;
    size_t *o = realloc(l->off, c * sizeof *o);
    if (o) l->off = o;
    size_t *s = realloc(l->slen, c * sizeof *s);
    if (s) l->slen = s;
    if (!o || !s) return ftq_error(FTQ_ERR_OUT_OF_MEMORY, "tokenizer: out of memory decoding");
    l->capn = c;
  }
  l->off[l->n] = l->len;
  l->slen[l->n++] = 0;
  return FTQ_OK;
}
/* Appends bytes to the current item. */
static ftq_status sl_add(strlist *l, const void *p, size_t n) {
  FTQ_TRY(sl_reserve(l, n));
  if (n) memcpy(l->data + l->len, p, n);
  l->len += n;
  l->slen[l->n - 1] += n;
  return FTQ_OK;
}
static void sl_free(strlist *l) {
  free(l->data);
  free(l->off);
  free(l->slen);
}
#define ITEM(l, i) ((l)->data + (l)->off[i])

/* Appends b[0..n) with ill-formed sequences replaced by U+FFFD. */
static ftq_status add_lossy(strlist *l, const unsigned char *b, size_t n) {
  size_t i = 0;
  while (i < n) {
    size_t v = ftq_utf8_valid_prefix(b + i, n - i);
    FTQ_TRY(sl_add(l, b + i, v));
    i += v;
    if (i < n) {
      size_t cl;
      ftq_utf8_decode(b + i, n - i, &cl, NULL);
      FTQ_TRY(sl_add(l, "\xEF\xBF\xBD", 3));
      i += cl;
    }
  }
  return FTQ_OK;
}

static ftq_status dec_bytelevel(const strlist *in, strlist *out) {
  strlist raw = {0};
  ftq_status st = sl_begin(&raw);
  char buf[256];
  for (size_t i = 0; i < in->n && st == FTQ_OK; i++) {
    const char *s = ITEM(in, i);
    size_t n = in->slen[i], bl;
    char *tmp = n <= sizeof buf ? buf : malloc(n);
    if (!tmp) {
      st = ftq_error(FTQ_ERR_OUT_OF_MEMORY, "tokenizer: out of memory decoding");
      break;
    }
    if (tok_bytelevel_to_bytes(s, n, tmp, &bl)) st = sl_add(&raw, tmp, bl);
    else st = sl_add(&raw, s, n); /* a character outside the alphabet: the token's own bytes */
    if (tmp != buf) free(tmp);
  }
  if (st == FTQ_OK) st = sl_begin(out);
  if (st == FTQ_OK) st = add_lossy(out, (const unsigned char *)raw.data, raw.len);
  sl_free(&raw);
  return st;
}

/* Appends s[0..n) to the current item with every `pat` replaced by `rep`. */
static ftq_status add_replaced(strlist *out, const char *s, size_t n, const char *pat, size_t plen, const char *rep,
                               size_t rlen) {
  for (size_t k = 0; k < n;) {
    if (k + plen <= n && memcmp(s + k, pat, plen) == 0) {
      FTQ_TRY(sl_add(out, rep, rlen));
      k += plen;
    } else {
      FTQ_TRY(sl_add(out, s + k, 1));
      k++;
    }
  }
  return FTQ_OK;
}

/* Metaspace: the replacement character becomes a space, except in the
 * first token where it is dropped (unless prepend_scheme is never). */
static ftq_status dec_metaspace(const tok_dec *d, const strlist *in, strlist *out) {
  for (size_t i = 0; i < in->n; i++) {
    FTQ_TRY(sl_begin(out));
    int drop = i == 0 && d->prepend_scheme != TOK_PREPEND_NEVER;
    FTQ_TRY(add_replaced(out, ITEM(in, i), in->slen[i], d->a, d->alen, " ", drop ? 0 : 1));
  }
  return FTQ_OK;
}

static ftq_status dec_replace(const tok_dec *d, const strlist *in, strlist *out) {
  for (size_t i = 0; i < in->n; i++) {
    FTQ_TRY(sl_begin(out));
    FTQ_TRY(add_replaced(out, ITEM(in, i), in->slen[i], d->a, d->alen, d->b, d->blen));
  }
  return FTQ_OK;
}

static int byte_token(const char *s, size_t n, unsigned char *b) {
  if (n != 6 || s[0] != '<' || s[1] != '0' || s[2] != 'x' || s[5] != '>') return 0;
  int v = 0;
  for (int k = 3; k < 5; k++) {
    char c = s[k];
    int h = (c >= '0' && c <= '9') ? c - '0' : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
    if (h < 0) return 0;
    v = v * 16 + h;
  }
  *b = (unsigned char)v;
  return 1;
}

/* Runs of <0xXX> tokens become their bytes when those form valid UTF-8, else
 * one U+FFFD per byte token. */
static ftq_status dec_bytefallback(const strlist *in, strlist *out) {
  unsigned char pend[64];
  size_t np = 0;
  unsigned char *big = NULL;
  size_t bigcap = 0;
  ftq_status st = FTQ_OK;
  for (size_t i = 0; i <= in->n && st == FTQ_OK; i++) {
    unsigned char b;
    if (i < in->n && byte_token(ITEM(in, i), in->slen[i], &b)) {
      if (np == sizeof pend || big) {
        if (!big || np == bigcap) {
          size_t c = bigcap ? bigcap * 2 : 256;
          unsigned char *nb = realloc(big, c);
          if (!nb) {
            st = ftq_error(FTQ_ERR_OUT_OF_MEMORY, "tokenizer: out of memory decoding");
            break;
          }
          if (!big) memcpy(nb, pend, np);
          big = nb;
          bigcap = c;
        }
        big[np++] = b;
      } else {
        pend[np++] = b;
      }
      continue;
    }
    if (np) {
      const unsigned char *p = big ? big : pend;
      if (ftq_utf8_valid_prefix(p, np) == np) {
        st = sl_begin(out);
        if (st == FTQ_OK) st = sl_add(out, p, np);
      } else {
        for (size_t k = 0; k < np && st == FTQ_OK; k++) {
          st = sl_begin(out);
          if (st == FTQ_OK) st = sl_add(out, "\xEF\xBF\xBD", 3);
        }
      }
      np = 0;
      free(big);
      big = NULL;
      bigcap = 0;
    }
    if (i < in->n && st == FTQ_OK) {
      st = sl_begin(out);
      if (st == FTQ_OK) st = sl_add(out, ITEM(in, i), in->slen[i]);
    }
  }
  free(big);
  return st;
}

static ftq_status dec_fuse(const strlist *in, strlist *out) {
  FTQ_TRY(sl_begin(out));
  return sl_add(out, in->data, in->len); /* items are stored back to back */
}

static ftq_status dec_strip(const tok_dec *d, const strlist *in, strlist *out) {
  unsigned char c[4];
  size_t cl = ftq_utf8_encode(d->content, c);
  for (size_t i = 0; i < in->n; i++) {
    FTQ_TRY(sl_begin(out));
    const char *s = ITEM(in, i);
    size_t a = 0, b = in->slen[i];
    for (int k = 0; k < d->start && a + cl <= b && memcmp(s + a, c, cl) == 0; k++) a += cl;
    for (int k = 0; k < d->stop && b >= a + cl && memcmp(s + b - cl, c, cl) == 0; k++) b -= cl;
    FTQ_TRY(sl_add(out, s + a, b - a));
  }
  return FTQ_OK;
}

ftq_status ftq_tokenizer_decode(const ftq_tokenizer *t, const int32_t *ids, size_t n, unsigned flags, char **text,
                                size_t *len) {
  FTQ_CHECK_ARG(t && text && (ids || n == 0), "ftq_tokenizer_decode: NULL argument");
  *text = NULL;
  if (len) *len = 0;
  strlist a = {0}, b = {0};
  ftq_status st = FTQ_OK;
  for (size_t i = 0; i < n && st == FTQ_OK; i++) {
    int32_t id = ids[i];
    if (id < 0 || id >= t->n_ids || !(t->id_flags[id] & TOK_ID_PRESENT)) {
      st = ftq_error(FTQ_ERR_NOT_FOUND, "%s: decode: no token with id %d (at position %zu)", t->source, id, i);
      break;
    }
    if ((flags & FTQ_DECODE_SKIP_SPECIAL) && (t->id_flags[id] & TOK_ID_SPECIAL)) continue;
    st = sl_begin(&a);
    if (st == FTQ_OK) st = sl_add(&a, t->id_token[id], t->id_token_len[id]);
  }
  if (st == FTQ_OK && !t->has_decoder) { /* no decoder: tokens joined by spaces */
    strlist j = {0};
    st = sl_begin(&j);
    for (size_t i = 0; i < a.n && st == FTQ_OK; i++) {
      if (i) st = sl_add(&j, " ", 1);
      if (st == FTQ_OK) st = sl_add(&j, ITEM(&a, i), a.slen[i]);
    }
    sl_free(&a);
    a = j;
  }
  for (int k = 0; k < t->n_decs && st == FTQ_OK; k++) {
    const tok_dec *d = &t->decs[k];
    b.len = b.n = 0;
    switch (d->type) {
      case TOK_DEC_BYTELEVEL: st = dec_bytelevel(&a, &b); break;
      case TOK_DEC_METASPACE: st = dec_metaspace(d, &a, &b); break;
      case TOK_DEC_REPLACE: st = dec_replace(d, &a, &b); break;
      case TOK_DEC_BYTEFALLBACK: st = dec_bytefallback(&a, &b); break;
      case TOK_DEC_FUSE: st = dec_fuse(&a, &b); break;
      case TOK_DEC_STRIP: st = dec_strip(d, &a, &b); break;
    }
    strlist tmp = a;
    a = b;
    b = tmp;
  }
  char *out = NULL;
  if (st == FTQ_OK) {
    out = ftq_malloc(a.len + 1, "decoded text");
    if (!out) st = FTQ_ERR_OUT_OF_MEMORY;
  }
  if (st == FTQ_OK) {
    if (a.len) memcpy(out, a.data, a.len); /* items are stored back to back */
    out[a.len] = '\0';
    *text = out;
    if (len) *len = a.len;
  }
  sl_free(&a);
  sl_free(&b);
  return st;
}

/* The split regexes of byte-level BPE tokenizers, written out by hand as
 * the backtracking matcher (Oniguruma, in `tokenizers`) evaluates them:
 * alternatives tried in order at each position, first success wins.
 *
 * GPT-2 (ByteLevel use_regex, SmolLM2):
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * Llama 3 (and Qwen2 with \p{N} instead of \p{N}{1,3}):
 *   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *    ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 * Every position matches one alternative, so the matches tile the text. */
#include "tok/tokenizer.h"
#include "tok/unicode.h"

/* Decodes the (valid UTF-8) character at s[i]; *len gets its size. */
static inline uint32_t cp_at(const unsigned char *s, size_t n, size_t i, size_t *len) {
  unsigned char b = s[i];
  if (b < 0x80) {
    *len = 1;
    return b;
  }
  return ftq_utf8_decode(s + i, n - i, len, NULL);
}

#define CL_L 1
#define CL_N 2
#define CL_S 4
#define CL_O 8 /* none of the above: [^\s\p{L}\p{N}] */

static inline int cls(uint32_t cp) {
  unsigned f = ftq_uflags(cp);
  if (f & FTQ_U_LETTER) return CL_L;
  if (f & FTQ_U_NUMBER) return CL_N;
  if (f & FTQ_U_SPACE) return CL_S;
  return CL_O;
}

/* End of the run of characters of class mask `m` starting at i. */
static inline size_t run_end(const unsigned char *s, size_t n, size_t i, int m) {
  while (i < n) {
    size_t len;
    uint32_t c = cp_at(s, n, i, &len);
    if (!(cls(c) & m)) break;
    i += len;
  }
  return i;
}

/* Folds the ASCII letters and U+017F (long s, which case-folds to 's' in
 * Oniguruma) for the case-insensitive contractions. */
static inline int fold_at(const unsigned char *s, size_t n, size_t i, size_t *len) {
  if (i >= n) return -1;
  uint32_t c = cp_at(s, n, i, len);
  if (c == 0x17F) return 's';
  if (c < 0x80) return (int)((c >= 'A' && c <= 'Z') ? c + 32 : c);
  return -1;
}

/* 's|'t|'re|'ve|'m|'ll|'d at i (s[i] == '\''); returns the match end or 0. */
static size_t contraction(const unsigned char *s, size_t n, size_t i, int icase) {
  size_t l1, l2;
  int a, b;
  if (icase) {
    a = fold_at(s, n, i + 1, &l1);
  } else {
    if (i + 1 >= n) return 0;
    a = s[i + 1];
    l1 = 1;
  }
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 1 + l1;
  if (a == 'r' || a == 'v' || a == 'l') {
    if (icase) {
      b = fold_at(s, n, i + 1 + l1, &l2);
    } else {
      if (i + 2 >= n) return 0;
      b = s[i + 2];
      l2 = 1;
    }
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 1 + l1 + l2;
  }
  return 0;
}

/* \s+(?!\S)|\s+ at i (a white-space character). */
static size_t spaces(const unsigned char *s, size_t n, size_t i) {
  size_t j = i, last = i, len;
  while (j < n) {
    uint32_t c = cp_at(s, n, j, &len);
    if (!(ftq_uflags(c) & FTQ_U_SPACE)) break;
    last = j;
    j += len;
  }
  if (j == n) return j;           /* end of text: (?!\S) holds */
  if (last > i) return last;      /* leave the last space for the next word */
  return j;                       /* a single space before a non-space */
}

static size_t match_gpt2(const unsigned char *s, size_t n, size_t i) {
  size_t len, len2;
  uint32_t c = cp_at(s, n, i, &len);
  if (c == '\'') {
    size_t e = contraction(s, n, i, 0);
    if (e) return e;
  }
  int k = cls(c);
  if (c == ' ' && i + len < n) {
    int k2 = cls(cp_at(s, n, i + len, &len2));
    if (k2 != CL_S) return run_end(s, n, i + len + len2, k2);
  }
  if (k != CL_S) return run_end(s, n, i + len, k);
  return spaces(s, n, i);
}

static size_t crlf_run(const unsigned char *s, size_t n, size_t i) {
  while (i < n && (s[i] == '\r' || s[i] == '\n')) i++;
  return i;
}

static size_t match_llama3(const unsigned char *s, size_t n, size_t i, int max_digits) {
  size_t len, len2 = 0;
  uint32_t c = cp_at(s, n, i, &len);
  if (c == '\'') {
    size_t e = contraction(s, n, i, 1);
    if (e) return e;
  }
  int k = cls(c);
  int k2 = 0;
  if (i + len < n) k2 = cls(cp_at(s, n, i + len, &len2));
  /* [^\r\n\p{L}\p{N}]?\p{L}+ */
  if (k == CL_L) return run_end(s, n, i + len, CL_L);
  if (k != CL_N && c != '\r' && c != '\n' && k2 == CL_L) return run_end(s, n, i + len + len2, CL_L);
  /* \p{N}{1,max} */
  if (k == CL_N) {
    size_t j = i + len;
    for (int d = 1; d < max_digits && j < n; d++) {
      size_t l;
      if (cls(cp_at(s, n, j, &l)) != CL_N) break;
      j += l;
    }
    return j;
  }
  /*  ?[^\s\p{L}\p{N}]+[\r\n]* */
  if (c == ' ' && k2 == CL_O) return crlf_run(s, n, run_end(s, n, i + len + len2, CL_O));
  if (k == CL_O) return crlf_run(s, n, run_end(s, n, i + len, CL_O));
  /* \s*[\r\n]+ : up to and including the last \r or \n of the space run */
  size_t j = i, nl = (size_t)-1, l;
  while (j < n) {
    uint32_t d = cp_at(s, n, j, &l);
    if (!(ftq_uflags(d) & FTQ_U_SPACE)) break;
    if (d == '\r' || d == '\n') nl = j;
    j += l;
  }
  if (nl != (size_t)-1) return nl + 1;
  return spaces(s, n, i);
}

void tok_regex_split(tok_regex re, const unsigned char *s, size_t n, tok_emit_fn emit, void *user) {
  size_t i = 0;
  while (i < n) {
    size_t e;
    switch (re) {
      case TOK_RE_LLAMA3: e = match_llama3(s, n, i, 3); break;
      case TOK_RE_QWEN2: e = match_llama3(s, n, i, 1); break;
      default: e = match_gpt2(s, n, i); break;
    }
    emit(user, i, e);
    i = e;
  }
}

/* UTF-8 decoding with lossy replacement, and NFC normalization (canonical
 * decomposition, canonical ordering, canonical composition: UAX #15). */
#include "tok/unicode.h"

#include <stdlib.h>
#include <string.h>

uint32_t ftq_utf8_decode(const unsigned char *s, size_t n, size_t *len, int *valid) {
  unsigned char b = s[0];
  if (b < 0x80) {
    *len = 1;
    if (valid) *valid = 1;
    return b;
  }
  /* Second-byte ranges per lead byte (Unicode Table 3-7, well-formed UTF-8). */
  size_t need;
  unsigned char lo = 0x80, hi = 0xBF;
  uint32_t cp;
  if (b >= 0xC2 && b <= 0xDF) need = 1, cp = b & 0x1F;
  else if (b >= 0xE0 && b <= 0xEF) {
    need = 2, cp = b & 0x0F;
    if (b == 0xE0) lo = 0xA0;
    if (b == 0xED) hi = 0x9F;
  } else if (b >= 0xF0 && b <= 0xF4) {
    need = 3, cp = b & 0x07;
    if (b == 0xF0) lo = 0x90;
    if (b == 0xF4) hi = 0x8F;
  } else {
    *len = 1;
    if (valid) *valid = 0;
    return FTQ_U_REPLACEMENT;
  }
  size_t i = 1;
  for (; i <= need; i++) {
    if (i >= n) break;
    unsigned char c = s[i];
    if (i == 1 ? (c < lo || c > hi) : (c < 0x80 || c > 0xBF)) break;
    cp = (cp << 6) | (c & 0x3F);
  }
  if (i <= need) {
    /* the maximal subpart (lead + valid continuations) becomes one U+FFFD */
    *len = i;
    if (valid) *valid = 0;
    return FTQ_U_REPLACEMENT;
  }
  *len = need + 1;
  if (valid) *valid = 1;
  return cp;
}

size_t ftq_utf8_valid_prefix(const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    if (s[i] < 0x80) {
      i++;
      continue;
    }
    size_t len;
    int ok;
    ftq_utf8_decode(s + i, n - i, &len, &ok);
    if (!ok) return i;
    i += len;
  }
  return n;
}

size_t ftq_utf8_encode(uint32_t cp, unsigned char *out) {
  if (cp < 0x80) {
    out[0] = (unsigned char)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (unsigned char)(0xC0 | (cp >> 6));
    out[1] = (unsigned char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (unsigned char)(0xE0 | (cp >> 12));
    out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    out[2] = (unsigned char)(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = (unsigned char)(0xF0 | (cp >> 18));
  out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
  out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
  out[3] = (unsigned char)(0x80 | (cp & 0x3F));
  return 4;
}

/* ---- NFC ------------------------------------------------------------------ */

/* Hangul syllables decompose and compose algorithmically (Unicode 3.12). */
#define H_SBASE 0xAC00u
#define H_LBASE 0x1100u
#define H_VBASE 0x1161u
#define H_TBASE 0x11A7u
#define H_LCOUNT 19u
#define H_VCOUNT 21u
#define H_TCOUNT 28u
#define H_NCOUNT (H_VCOUNT * H_TCOUNT)
#define H_SCOUNT (H_LCOUNT * H_NCOUNT)

static uint32_t compose_pair(uint32_t a, uint32_t b) {
  if (a - H_LBASE < H_LCOUNT && b - H_VBASE < H_VCOUNT)
    return H_SBASE + ((a - H_LBASE) * H_VCOUNT + (b - H_VBASE)) * H_TCOUNT;
  if (a - H_SBASE < H_SCOUNT && (a - H_SBASE) % H_TCOUNT == 0 && b - H_TBASE - 1 < H_TCOUNT - 1)
    return a + (b - H_TBASE);
  size_t lo = 0, hi = ftq_ucompose_count;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    const uint32_t *e = ftq_ucompose[mid];
    if (e[0] < a || (e[0] == a && e[1] < b)) lo = mid + 1;
    else hi = mid;
  }
  if (lo < ftq_ucompose_count && ftq_ucompose[lo][0] == a && ftq_ucompose[lo][1] == b) return ftq_ucompose[lo][2];
  return 0;
}

size_t ftq_nfc(const unsigned char *in, size_t n, unsigned char *out, int32_t *align) {
  size_t i = 0;
  while (i < n && in[i] < 0x80) i++;
  if (i == n) { /* ASCII is its own NFC */
    memcpy(out, in, n);
    if (align)
      for (size_t k = 0; k < n; k++) align[k] = (int32_t)k;
    return n;
  }
  /* Decompose into code points with their source offsets. A character
   * decomposes into at most 18 code points, but NFC of UTF-8 never grows
   * beyond 3x, so 3n code points bound the buffer. */
  size_t cap = 3 * n + 4;
  uint32_t *cps = malloc(cap * sizeof *cps);
  int32_t *src = malloc(cap * sizeof *src);
  if (!cps || !src) {
    free(cps);
    free(src);
    return (size_t)-1;
  }
  size_t m = 0;
  for (size_t p = 0; p < n;) {
    size_t len;
    uint32_t cp = ftq_utf8_decode(in + p, n - p, &len, NULL);
    if (cp - H_SBASE < H_SCOUNT) {
      uint32_t s = cp - H_SBASE;
      cps[m] = H_LBASE + s / H_NCOUNT, src[m++] = (int32_t)p;
      cps[m] = H_VBASE + (s % H_NCOUNT) / H_TCOUNT, src[m++] = (int32_t)p;
      if (s % H_TCOUNT) cps[m] = H_TBASE + s % H_TCOUNT, src[m++] = (int32_t)p;
    } else {
      uint32_t d = cp < 0xC0 ? 0 : ftq_udecomp_stage2[(size_t)ftq_udecomp_stage1[cp >> 8] * 256 + (cp & 255)];
      if (d) {
        for (uint32_t k = 0; k < (d & 31); k++) cps[m] = ftq_udecomp_data[(d >> 5) + k], src[m++] = (int32_t)p;
      } else {
        cps[m] = cp, src[m++] = (int32_t)p;
      }
    }
    p += len;
  }
  /* Canonical ordering: stable insertion sort of each run of non-starters. */
  for (size_t k = 1; k < m; k++) {
    unsigned c = ftq_uccc(cps[k]);
    if (c == 0) continue;
    size_t j = k;
    uint32_t cp = cps[k];
    int32_t sp = src[k];
    while (j > 0 && ftq_uccc(cps[j - 1]) > c) {
      cps[j] = cps[j - 1];
      src[j] = src[j - 1];
      j--;
    }
    cps[j] = cp;
    src[j] = sp;
  }
  /* Canonical composition. */
  size_t w = 0;             /* write index */
  long starter = -1;        /* index (in the written part) of the last starter */
  unsigned last_ccc = 0;    /* class of the last character written after the starter */
  for (size_t k = 0; k < m; k++) {
    uint32_t cp = cps[k];
    unsigned c = ftq_uccc(cp);
    if (starter >= 0) {
      /* blocked when a character in between has class 0 or >= c */
      int blocked = (size_t)starter + 1 != w && (last_ccc == 0 || last_ccc >= c);
      if (!blocked) {
        uint32_t comp = compose_pair(cps[starter], cp);
        if (comp) {
          cps[starter] = comp;
          continue;
        }
      }
    }
    if (c == 0) {
      starter = (long)w;
      last_ccc = 0;
    } else {
      last_ccc = c;
    }
    cps[w] = cp;
    src[w] = src[k];
    w++;
  }
  /* canonical ordering can move a mark before an earlier one: offsets are
   * kept non-decreasing (a moved mark takes its predecessor's offset) */
  size_t o = 0;
  int32_t hi = 0;
  for (size_t k = 0; k < w; k++) {
    size_t len = ftq_utf8_encode(cps[k], out + o);
    if (src[k] > hi) hi = src[k];
    if (align)
      for (size_t b = 0; b < len; b++) align[o + b] = hi;
    o += len;
  }
  free(cps);
  free(src);
  return o;
}

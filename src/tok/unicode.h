/* Unicode support for the tokenizer: UTF-8 decoding with replacement of
 * ill-formed input, the character classes the pre-tokenizer regexes use, and
 * NFC normalization. Tables come from src/tok/gen_unicode_tables.py. */
#ifndef FTQ_TOK_UNICODE_H
#define FTQ_TOK_UNICODE_H

#include <stddef.h>
#include <stdint.h>

#define FTQ_U_LETTER 1u /* \p{L} */
#define FTQ_U_NUMBER 2u /* \p{N} */
#define FTQ_U_SPACE 4u  /* \s (Unicode White_Space, as Oniguruma) */
#define FTQ_U_WORD 8u   /* \w (UTS #18: Alphabetic, Mark, Nd, Pc, Join_Control) */

#define FTQ_U_REPLACEMENT 0xFFFDu

extern const char ftq_unicode_version[];
extern const uint16_t ftq_uflags_stage1[];
extern const uint8_t ftq_uflags_stage2[];
extern const uint16_t ftq_uccc_stage1[];
extern const uint8_t ftq_uccc_stage2[];
extern const uint16_t ftq_udecomp_stage1[];
extern const uint32_t ftq_udecomp_stage2[];
extern const uint32_t ftq_udecomp_data[];
extern const uint32_t ftq_ucompose[][3];
extern const size_t ftq_ucompose_count;

static inline unsigned ftq_uflags(uint32_t cp) {
  if (cp < 0x80) {
    /* ASCII fast path, same values as the table */
    if ((cp | 0x20) - 'a' < 26) return FTQ_U_LETTER | FTQ_U_WORD;
    if (cp - '0' < 10) return FTQ_U_NUMBER | FTQ_U_WORD;
    if (cp == '_') return FTQ_U_WORD;
    if (cp == ' ' || (cp >= 9 && cp <= 13)) return FTQ_U_SPACE;
    return 0;
  }
  if (cp >= 0x110000) return 0;
  return ftq_uflags_stage2[(size_t)ftq_uflags_stage1[cp >> 8] * 256 + (cp & 255)];
}

static inline unsigned ftq_uccc(uint32_t cp) {
  if (cp < 0x300 || cp >= 0x110000) return 0;
  return ftq_uccc_stage2[(size_t)ftq_uccc_stage1[cp >> 8] * 256 + (cp & 255)];
}

/* Decodes one code point at s[0..n) (n >= 1). Ill-formed input gives
 * U+FFFD and consumes the maximal subpart of an ill-formed sequence (one
 * byte at least), as Python's and Rust's lossy decoders do. *len receives
 * the bytes consumed; *valid 0 when a replacement was made (may be NULL). */
uint32_t ftq_utf8_decode(const unsigned char *s, size_t n, size_t *len, int *valid);

/* Length in bytes of the valid UTF-8 prefix of s[0..n). */
size_t ftq_utf8_valid_prefix(const unsigned char *s, size_t n);

/* Writes cp as UTF-8 into out (4 bytes room); returns the byte count. */
size_t ftq_utf8_encode(uint32_t cp, unsigned char *out);

/* Byte length of the UTF-8 sequence starting with lead byte b (1 for
 * continuation and invalid bytes). */
static inline size_t ftq_utf8_seq_len(unsigned char b) {
  if (b < 0xC0) return 1;
  if (b < 0xE0) return 2;
  if (b < 0xF0) return 3;
  if (b < 0xF8) return 4;
  return 1;
}

/* NFC of valid UTF-8 text in[0..n). Writes at most 3*n + 16 bytes to out
 * (the bound for canonical composition of UTF-8 input) and, when align is
 * not NULL, for every output byte the input byte offset of the character it
 * comes from (kept non-decreasing where reordering moved a mark). Returns
 * the output length. Text already in NFC (the quick
 * check for ASCII and characters with no decomposition and class 0) is
 * copied unchanged. */
size_t ftq_nfc(const unsigned char *in, size_t n, unsigned char *out, int32_t *align);
/* Upper bound of ftq_nfc's output size for n input bytes. */
static inline size_t ftq_nfc_bound(size_t n) { return 3 * n + 16; }

#endif /* FTQ_TOK_UNICODE_H */

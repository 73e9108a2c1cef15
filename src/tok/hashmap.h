/* Open-addressing hash maps for the tokenizer: byte strings -> id (the
 * vocabulary) and id pairs -> (rank, merged id) (the BPE merges). Keys of
 * the string map are not copied: they must outlive the map. */
#ifndef FTQ_TOK_HASHMAP_H
#define FTQ_TOK_HASHMAP_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "libftq/ftq_status.h"

static inline uint64_t ftq_hash_bytes(const void *data, size_t n) {
  const unsigned char *p = data;
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xC2B2AE3D27D4EB4Full);
  while (n >= 8) {
    uint64_t v;
    memcpy(&v, p, 8);
    h = (h ^ v) * 0xBF58476D1CE4E5B9ull;
    h ^= h >> 29;
    p += 8;
    n -= 8;
  }
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++) v |= (uint64_t)p[i] << (8 * i);
  h = (h ^ v) * 0x94D049BB133111EBull;
  h ^= h >> 31;
  h *= 0xBF58476D1CE4E5B9ull;
  return h ^ (h >> 32);
}

typedef struct ftq_strmap {
  const char **keys;
  uint32_t *lens;
  int32_t *vals;
  size_t cap, count; /* cap: power of two; empty slot: keys[i] == NULL */
} ftq_strmap;

ftq_status ftq_strmap_init(ftq_strmap *m, size_t expected);
void ftq_strmap_free(ftq_strmap *m);
/* Inserts or overwrites. */
ftq_status ftq_strmap_put(ftq_strmap *m, const char *key, size_t len, int32_t val);
/* Returns 1 and sets *val if present. */
static inline int ftq_strmap_get(const ftq_strmap *m, const char *key, size_t len, int32_t *val) {
  if (!m->cap) return 0;
  size_t mask = m->cap - 1, i = (size_t)ftq_hash_bytes(key, len) & mask;
  while (m->keys[i]) {
    if (m->lens[i] == len && memcmp(m->keys[i], key, len) == 0) {
      *val = m->vals[i];
      return 1;
    }
    i = (i + 1) & mask;
  }
  return 0;
}

typedef struct ftq_pairmap {
  uint64_t *keys; /* (a << 32) | b; UINT64_MAX = empty */
  int32_t *ranks;
  int32_t *ids;
  size_t cap, count;
} ftq_pairmap;

ftq_status ftq_pairmap_init(ftq_pairmap *m, size_t expected);
void ftq_pairmap_free(ftq_pairmap *m);
ftq_status ftq_pairmap_put(ftq_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t id);
static inline uint64_t ftq_pair_key(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b; }
static inline size_t ftq_pair_slot(uint64_t k, size_t mask) {
  k ^= k >> 33;
  k *= 0xFF51AFD7ED558CCDull;
  k ^= k >> 33;
  return (size_t)k & mask;
}
static inline int ftq_pairmap_get(const ftq_pairmap *m, int32_t a, int32_t b, int32_t *rank, int32_t *id) {
  if (!m->cap) return 0;
  uint64_t k = ftq_pair_key(a, b);
  size_t mask = m->cap - 1, i = ftq_pair_slot(k, mask);
  while (m->keys[i] != UINT64_MAX) {
    if (m->keys[i] == k) {
      *rank = m->ranks[i];
      *id = m->ids[i];
      return 1;
    }
    i = (i + 1) & mask;
  }
  return 0;
}

/* malloc'ed copy of s[0..n) with a NUL appended; NULL when out of memory. */
char *ftq_tok_strndup(const char *s, size_t n);

/* A bump allocator for the vocabulary's strings: freed all at once. */
typedef struct ftq_pool_chunk ftq_pool_chunk;
typedef struct ftq_pool {
  ftq_pool_chunk *head;
  size_t used, size;
} ftq_pool;
/* Copies s[0..n) and appends a NUL; NULL on allocation failure. */
char *ftq_pool_strdup(ftq_pool *p, const char *s, size_t n);
void ftq_pool_free(ftq_pool *p);

#endif /* FTQ_TOK_HASHMAP_H */

/* Hash maps and the string pool of the tokenizer (linear probing, load
 * factor at most 1/2, grown by doubling). */
#include "tok/hashmap.h"

#include <stdlib.h>

#include "core/alloc.h"
#include "core/error.h"

static size_t pow2_at_least(size_t n) {
  size_t c = 16;
  while (c < n) c <<= 1;
  return c;
}

ftq_status ftq_strmap_init(ftq_strmap *m, size_t expected) {
  memset(m, 0, sizeof *m);
  m->cap = pow2_at_least(expected * 2 + 1);
  m->keys = ftq_calloc(m->cap, sizeof *m->keys, "tokenizer vocabulary map");
  m->lens = ftq_malloc(m->cap * sizeof *m->lens, "tokenizer vocabulary map");
  m->vals = ftq_malloc(m->cap * sizeof *m->vals, "tokenizer vocabulary map");
  if (!m->keys || !m->lens || !m->vals) {
    ftq_strmap_free(m);
    return FTQ_ERR_OUT_OF_MEMORY;
  }
  return FTQ_OK;
}

void ftq_strmap_free(ftq_strmap *m) {
  free(m->keys);
  free(m->lens);
  free(m->vals);
  memset(m, 0, sizeof *m);
}

static void strmap_insert(ftq_strmap *m, const char *key, uint32_t len, int32_t val) {
  size_t mask = m->cap - 1, i = (size_t)ftq_hash_bytes(key, len) & mask;
  while (m->keys[i]) {
    if (m->lens[i] == len && memcmp(m->keys[i], key, len) == 0) {
      m->vals[i] = val;
      return;
    }
    i = (i + 1) & mask;
  }
  m->keys[i] = key;
  m->lens[i] = len;
  m->vals[i] = val;
  m->count++;
}

ftq_status ftq_strmap_put(ftq_strmap *m, const char *key, size_t len, int32_t val) {
  if (len > UINT32_MAX) return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "tokenizer: token of %zu bytes is too long", len);
  if (!m->cap) FTQ_TRY(ftq_strmap_init(m, 16));
  if ((m->count + 1) * 2 > m->cap) {
    ftq_strmap old = *m;
    ftq_strmap grown;
    FTQ_TRY(ftq_strmap_init(&grown, old.cap));
    for (size_t i = 0; i < old.cap; i++)
      if (old.keys[i]) strmap_insert(&grown, old.keys[i], old.lens[i], old.vals[i]);
    ftq_strmap_free(&old);
    *m = grown;
  }
  strmap_insert(m, key, (uint32_t)len, val);
  return FTQ_OK;
}

ftq_status ftq_pairmap_init(ftq_pairmap *m, size_t expected) {
  memset(m, 0, sizeof *m);
  m->cap = pow2_at_least(expected * 2 + 1);
  m->keys = ftq_malloc(m->cap * sizeof *m->keys, "tokenizer merge map");
  m->ranks = ftq_malloc(m->cap * sizeof *m->ranks, "tokenizer merge map");
  m->ids = ftq_malloc(m->cap * sizeof *m->ids, "tokenizer merge map");
  if (!m->keys || !m->ranks || !m->ids) {
    ftq_pairmap_free(m);
    return FTQ_ERR_OUT_OF_MEMORY;
  }
  for (size_t i = 0; i < m->cap; i++) m->keys[i] = UINT64_MAX;
  return FTQ_OK;
}

void ftq_pairmap_free(ftq_pairmap *m) {
  free(m->keys);
  free(m->ranks);
  free(m->ids);
  memset(m, 0, sizeof *m);
}

static void pairmap_insert(ftq_pairmap *m, uint64_t k, int32_t rank, int32_t id) {
  size_t mask = m->cap - 1, i = ftq_pair_slot(k, mask);
  while (m->keys[i] != UINT64_MAX) {
    if (m->keys[i] == k) break;
    i = (i + 1) & mask;
  }
  if (m->keys[i] == UINT64_MAX) m->count++;
  m->keys[i] = k;
  m->ranks[i] = rank;
  m->ids[i] = id;
}

ftq_status ftq_pairmap_put(ftq_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t id) {
  if (!m->cap) FTQ_TRY(ftq_pairmap_init(m, 16));
  if ((m->count + 1) * 2 > m->cap) {
    ftq_pairmap old = *m, grown;
    FTQ_TRY(ftq_pairmap_init(&grown, old.cap));
    for (size_t i = 0; i < old.cap; i++)
      if (old.keys[i] != UINT64_MAX) pairmap_insert(&grown, old.keys[i], old.ranks[i], old.ids[i]);
    ftq_pairmap_free(&old);
    *m = grown;
  }
  pairmap_insert(m, ftq_pair_key(a, b), rank, id);
  return FTQ_OK;
}

char *ftq_tok_strndup(const char *s, size_t n) {
  char *d = malloc(n + 1);
  if (d) {
    if (n) memcpy(d, s, n);
    d[n] = '\0';
  }
  return d;
}

struct ftq_pool_chunk {
  ftq_pool_chunk *next;
  size_t size;
  char data[];
};

char *ftq_pool_strdup(ftq_pool *p, const char *s, size_t n) {
  if (!p->head || p->used + n + 1 > p->size) {
    size_t size = n + 1 > 256 * 1024 ? n + 1 : 256 * 1024;
    ftq_pool_chunk *c = ftq_malloc(sizeof *c + size, "tokenizer strings");
    if (!c) return NULL;
    c->next = p->head;
    c->size = size;
    p->head = c;
    p->used = 0;
    p->size = size;
  }
  char *d = p->head->data + p->used;
  if (n) memcpy(d, s, n);
  d[n] = '\0';
  p->used += n + 1;
  return d;
}

void ftq_pool_free(ftq_pool *p) {
  ftq_pool_chunk *c = p->head;
  while (c) {
    ftq_pool_chunk *n = c->next;
    free(c);
    c = n;
  }
  memset(p, 0, sizeof *p);
}

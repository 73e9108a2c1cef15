/* Training checkpoint container (format in ckpt_file.h), written through
 * the shared atomic writer and read through the shared memory map. */
#include "io/ckpt_file.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/alloc.h"
#include "core/error.h"
#include "io/file.h"

#define MAGIC "FTQCKPT1"
#define TRAILER_MAGIC "FTQCKEND"
#define VERSION 1u
#define TRAILER_BYTES 32u
#define ENTRY_BYTES 80u
#define ALIGN 64u

typedef struct entry {
  char name[FTQ_CKPT_NAME_MAX + 1];
  uint64_t offset, size;
  uint32_t crc;
} entry;

struct ftq_ckpt_writer {
  ftq_atomic_file file;
  uint64_t pos;
  entry *entries;
  uint32_t count, cap;
};

struct ftq_ckpt_reader {
  ftq_mapped_file file;
  entry *entries;
  uint32_t count;
};

static void put_u32(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put_u64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get_u32(const unsigned char *p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}
static uint64_t get_u64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

/* crc32 continued over any length (zlib takes uInt chunks). */
static uint32_t crc_more(uint32_t crc, const void *data, size_t n) {
  uLong c = crc;
  const Bytef *p = data;
  while (n) {
    uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
    c = crc32(c, p, k);
    p += k;
    n -= k;
  }
  return (uint32_t)c;
}
static uint32_t crc_of(const void *data, size_t n) { return crc_more((uint32_t)crc32(0L, Z_NULL, 0), data, n); }

static ftq_status put(ftq_ckpt_writer *w, const void *data, size_t n) {
  FTQ_TRY(ftq_atomic_write(&w->file, data, n));
  w->pos += n;
  return FTQ_OK;
}

static void writer_free(ftq_ckpt_writer *w) {
  free(w->entries);
  free(w);
}

ftq_status ftq_ckpt_write_begin(const char *path, ftq_ckpt_writer **out) {
  *out = NULL;
  ftq_ckpt_writer *w = ftq_calloc(1, sizeof *w, "checkpoint writer");
  if (!w) return FTQ_ERR_OUT_OF_MEMORY;
  ftq_status st = ftq_atomic_open(path, &w->file);
  if (st == FTQ_OK) st = put(w, MAGIC, 8);
  if (st != FTQ_OK) {
    ftq_atomic_abort(&w->file);
    writer_free(w);
    return ftq_error_context(st, "starting checkpoint");
  }
  *out = w;
  return FTQ_OK;
}

ftq_status ftq_ckpt_write_section(ftq_ckpt_writer *w, const char *name, const void *data, size_t bytes) {
  if (!name || !*name || strlen(name) > FTQ_CKPT_NAME_MAX)
    return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "checkpoint section name must be 1..%d bytes", FTQ_CKPT_NAME_MAX);
  for (uint32_t i = 0; i < w->count; i++)
    if (strcmp(w->entries[i].name, name) == 0)
      return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "checkpoint section '%s' written twice", name);
  if (w->count == w->cap) {
    uint32_t cap = w->cap ? 2 * w->cap : 16;
    entry *e = ftq_realloc(w->entries, cap * sizeof *e, "checkpoint directory");
    if (!e) return FTQ_ERR_OUT_OF_MEMORY;
    w->entries = e;
    w->cap = cap;
  }
  static const unsigned char zeros[ALIGN] = {0};
  FTQ_TRY(put(w, zeros, (size_t)((ALIGN - w->pos % ALIGN) % ALIGN)));
  entry *e = &w->entries[w->count];
  memset(e, 0, sizeof *e);
  snprintf(e->name, sizeof e->name, "%s", name);
  e->offset = w->pos;
  e->size = bytes;
  e->crc = crc_of(data, bytes);
  FTQ_TRY(put(w, data, bytes));
  w->count++;
  return FTQ_OK;
}

void ftq_ckpt_write_abort(ftq_ckpt_writer *w) {
  if (!w) return;
  ftq_atomic_abort(&w->file);
  writer_free(w);
}

ftq_status ftq_ckpt_write_commit(ftq_ckpt_writer *w) {
  uint64_t dir_off = w->pos;
  size_t dir_bytes = (size_t)w->count * ENTRY_BYTES;
  unsigned char *dir = ftq_calloc(dir_bytes + TRAILER_BYTES, 1, "checkpoint directory");
  ftq_status st = dir ? FTQ_OK : FTQ_ERR_OUT_OF_MEMORY;
  if (st == FTQ_OK) {
    for (uint32_t i = 0; i < w->count; i++) {
      unsigned char *p = dir + (size_t)i * ENTRY_BYTES;
      memcpy(p, w->entries[i].name, strlen(w->entries[i].name));
      put_u64(p + 56, w->entries[i].offset);
      put_u64(p + 64, w->entries[i].size);
      put_u32(p + 72, w->entries[i].crc);
    }
    unsigned char *t = dir + dir_bytes;
    memcpy(t, TRAILER_MAGIC, 8);
    put_u32(t + 8, VERSION);
    put_u32(t + 12, w->count);
    put_u64(t + 16, dir_off);
    put_u32(t + 24, crc_of(dir, dir_bytes + 24));
    st = put(w, dir, dir_bytes + TRAILER_BYTES);
  }
  free(dir);
  if (st == FTQ_OK) st = ftq_atomic_commit(&w->file);
  if (st != FTQ_OK) {
    ftq_ckpt_write_abort(w);
    return st;
  }
  writer_free(w);
  return FTQ_OK;
}

/* ---------------------------------------------------------------------- */

void ftq_ckpt_close(ftq_ckpt_reader *r) {
  if (!r) return;
  ftq_file_unmap(&r->file);
  free(r->entries);
  free(r);
}

static ftq_status bad(const ftq_ckpt_reader *r, const char *what) {
  return ftq_error(FTQ_ERR_FORMAT, "checkpoint '%s' is damaged or not a libftq checkpoint: %s", r->file.path, what);
}

static ftq_status read_directory(ftq_ckpt_reader *r) {
  const unsigned char *h = r->file.data;
  size_t size = r->file.size;
  if (size < 8 + TRAILER_BYTES || memcmp(h, MAGIC, 8) != 0) return bad(r, "bad magic or file too small");
  const unsigned char *t = h + size - TRAILER_BYTES;
  if (memcmp(t, TRAILER_MAGIC, 8) != 0) return bad(r, "no trailer (truncated file?)");
  uint32_t count = get_u32(t + 12);
  uint64_t dir_off = get_u64(t + 16);
  /* the directory fills the space between the data and the trailer exactly */
  if (dir_off < 8 || dir_off > size - TRAILER_BYTES || size - TRAILER_BYTES - dir_off != (uint64_t)count * ENTRY_BYTES)
    return bad(r, "directory out of range");
  if (get_u32(t + 24) != crc_of(h + dir_off, (size_t)count * ENTRY_BYTES + 24)) return bad(r, "directory checksum mismatch");
  if (get_u32(t + 8) != VERSION)
    return ftq_error(FTQ_ERR_UNSUPPORTED, "checkpoint '%s' has format version %u; this libftq reads version %u",
                     r->file.path, get_u32(t + 8), VERSION);
  if (count && !(r->entries = ftq_calloc(count, sizeof *r->entries, "checkpoint directory"))) return FTQ_ERR_OUT_OF_MEMORY;
  for (uint32_t i = 0; i < count; i++) {
    const unsigned char *p = h + dir_off + (size_t)i * ENTRY_BYTES;
    entry *e = &r->entries[i];
    if (memchr(p, 0, 56) == NULL || p[0] == 0) return bad(r, "section name not terminated");
    memcpy(e->name, p, 56);
    e->offset = get_u64(p + 56);
    e->size = get_u64(p + 64);
    e->crc = get_u32(p + 72);
    if (e->offset < 8 || e->offset > dir_off || e->size > dir_off - e->offset)
      return ftq_error(FTQ_ERR_FORMAT, "checkpoint '%s': section '%s' lies outside the data area", r->file.path, e->name);
    if (crc_of(h + e->offset, (size_t)e->size) != e->crc)
      return ftq_error(FTQ_ERR_FORMAT, "checkpoint '%s' is damaged: section '%s' checksum mismatch", r->file.path,
                       e->name);
    for (uint32_t j = 0; j < i; j++)
      if (strcmp(r->entries[j].name, e->name) == 0)
        return ftq_error(FTQ_ERR_FORMAT, "checkpoint '%s': section '%s' appears twice", r->file.path, e->name);
  }
  r->count = count;
  return FTQ_OK;
}

ftq_status ftq_ckpt_open(const char *path, ftq_ckpt_reader **out) {
  *out = NULL;
  if (!path) return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "checkpoint path must not be NULL");
  ftq_ckpt_reader *r = ftq_calloc(1, sizeof *r, "checkpoint reader");
  if (!r) return FTQ_ERR_OUT_OF_MEMORY;
  ftq_status st = ftq_file_map(path, &r->file);
  if (st == FTQ_OK) st = read_directory(r);
  if (st != FTQ_OK) {
    ftq_ckpt_close(r);
    return st;
  }
  *out = r;
  return FTQ_OK;
}

ftq_status ftq_ckpt_section(const ftq_ckpt_reader *r, const char *name, const void **data, size_t *bytes) {
  for (uint32_t i = 0; i < r->count; i++)
    if (strcmp(r->entries[i].name, name) == 0) {
      *data = r->file.data + r->entries[i].offset;
      *bytes = (size_t)r->entries[i].size;
      return FTQ_OK;
    }
  return ftq_error(FTQ_ERR_NOT_FOUND, "checkpoint '%s' has no section '%s'", r->file.path, name);
}

const char *ftq_ckpt_section_name(const ftq_ckpt_reader *r, uint32_t i) {
  return i < r->count ? r->entries[i].name : NULL;
}

/* Training checkpoint container (format in ckpt_file.h). */
#include "io/ckpt_file.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "core/alloc.h"
#include "core/error.h"

#define MAGIC "FTQCKPT1"
#define VERSION 1u
#define HEADER_BYTES 32u
#define ENTRY_BYTES 80u
#define ALIGN 64u

typedef struct entry {
  char name[FTQ_CKPT_NAME_MAX + 1];
  uint64_t offset, size;
  uint32_t crc;
} entry;

struct ftq_ckpt_writer {
  char *path, *tmp;
  int fd;
  uint64_t pos;
  entry *entries;
  uint32_t count, cap;
};

struct ftq_ckpt_reader {
  char *path;
  const unsigned char *map;
  size_t size;
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

/* crc32 over any length (zlib takes uInt chunks). */
static uint32_t crc_of(const void *data, size_t n) {
  uLong c = crc32(0L, Z_NULL, 0);
  const Bytef *p = data;
  while (n) {
    uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
    c = crc32(c, p, k);
    p += k;
    n -= k;
  }
  return (uint32_t)c;
}

static ftq_status write_all(ftq_ckpt_writer *w, const void *data, size_t n) {
  const char *p = data;
  while (n) {
    ssize_t k = write(w->fd, p, n > (1u << 30) ? (1u << 30) : n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return ftq_error(FTQ_ERR_IO, "writing checkpoint '%s': %s", w->path, strerror(errno));
    p += k;
    n -= (size_t)k;
    w->pos += (uint64_t)k;
  }
  return FTQ_OK;
}

static void writer_free(ftq_ckpt_writer *w) {
  if (!w) return;
  if (w->fd >= 0) close(w->fd);
  free(w->path);
  free(w->tmp);
  free(w->entries);
  free(w);
}

ftq_status ftq_ckpt_write_begin(const char *path, ftq_ckpt_writer **out) {
  *out = NULL;
  if (!path || !*path) return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "checkpoint path must not be empty");
  ftq_ckpt_writer *w = ftq_calloc(1, sizeof *w, "checkpoint writer");
  if (!w) return FTQ_ERR_OUT_OF_MEMORY;
  w->fd = -1;
  w->path = ftq_strdup(path, "checkpoint path");
  w->tmp = ftq_malloc(strlen(path) + 16, "checkpoint path");
  if (!w->path || !w->tmp) {
    writer_free(w);
    return FTQ_ERR_OUT_OF_MEMORY;
  }
  snprintf(w->tmp, strlen(path) + 16, "%s.tmp.XXXXXX", path);
  w->fd = mkstemp(w->tmp);
  if (w->fd < 0) {
    ftq_status st = ftq_error(FTQ_ERR_IO, "cannot create a temporary file for checkpoint '%s': %s", path, strerror(errno));
    writer_free(w);
    return st;
  }
  unsigned char header[HEADER_BYTES] = {0}; /* rewritten at commit */
  ftq_status st = write_all(w, header, sizeof header);
  if (st != FTQ_OK) {
    ftq_ckpt_write_abort(w);
    return st;
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
  uint64_t pad = (ALIGN - w->pos % ALIGN) % ALIGN;
  FTQ_TRY(write_all(w, zeros, (size_t)pad));
  entry *e = &w->entries[w->count];
  memset(e, 0, sizeof *e);
  snprintf(e->name, sizeof e->name, "%s", name);
  e->offset = w->pos;
  e->size = bytes;
  e->crc = crc_of(data, bytes);
  FTQ_TRY(write_all(w, data, bytes));
  w->count++;
  return FTQ_OK;
}

void ftq_ckpt_write_abort(ftq_ckpt_writer *w) {
  if (!w) return;
  if (w->fd >= 0) {
    close(w->fd);
    w->fd = -1;
    unlink(w->tmp);
  }
  writer_free(w);
}

static ftq_status sync_dir_of(const char *path) {
  char *copy = ftq_strdup(path, "checkpoint path");
  if (!copy) return FTQ_ERR_OUT_OF_MEMORY;
  int dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
  free(copy);
  if (dfd < 0) return FTQ_OK; /* best effort: some file systems do not allow it */
  fsync(dfd);
  close(dfd);
  return FTQ_OK;
}

ftq_status ftq_ckpt_write_commit(ftq_ckpt_writer *w) {
  ftq_status st = FTQ_OK;
  uint64_t dir_off = w->pos;
  size_t dir_bytes = (size_t)w->count * ENTRY_BYTES;
  unsigned char *dir = ftq_calloc(dir_bytes + 4, 1, "checkpoint directory");
  if (!dir) st = FTQ_ERR_OUT_OF_MEMORY;
  for (uint32_t i = 0; st == FTQ_OK && i < w->count; i++) {
    unsigned char *p = dir + (size_t)i * ENTRY_BYTES;
    memcpy(p, w->entries[i].name, strlen(w->entries[i].name));
    put_u64(p + 56, w->entries[i].offset);
    put_u64(p + 64, w->entries[i].size);
    put_u32(p + 72, w->entries[i].crc);
  }
  if (st == FTQ_OK) {
    put_u32(dir + dir_bytes, crc_of(dir, dir_bytes));
    st = write_all(w, dir, dir_bytes + 4);
  }
  free(dir);
  if (st == FTQ_OK) {
    unsigned char header[HEADER_BYTES] = {0};
    memcpy(header, MAGIC, 8);
    put_u32(header + 8, VERSION);
    put_u32(header + 12, w->count);
    put_u64(header + 16, dir_off);
    put_u32(header + 24, crc_of(header, 24));
    if (pwrite(w->fd, header, sizeof header, 0) != (ssize_t)sizeof header)
      st = ftq_error(FTQ_ERR_IO, "writing checkpoint '%s': %s", w->path, strerror(errno));
  }
  if (st == FTQ_OK && fsync(w->fd) != 0)
    st = ftq_error(FTQ_ERR_IO, "syncing checkpoint '%s': %s", w->path, strerror(errno));
  if (st == FTQ_OK) {
    close(w->fd);
    w->fd = -1;
    if (rename(w->tmp, w->path) != 0) {
      st = ftq_error(FTQ_ERR_IO, "renaming checkpoint into place as '%s': %s", w->path, strerror(errno));
      unlink(w->tmp);
    } else {
      st = sync_dir_of(w->path);
    }
  }
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
  if (r->map && r->map != MAP_FAILED) munmap((void *)r->map, r->size);
  free(r->entries);
  free(r->path);
  free(r);
}

static ftq_status bad(const ftq_ckpt_reader *r, const char *what) {
  return ftq_error(FTQ_ERR_FORMAT, "checkpoint '%s' is damaged or not a libftq checkpoint: %s", r->path, what);
}

ftq_status ftq_ckpt_open(const char *path, ftq_ckpt_reader **out) {
  *out = NULL;
  if (!path) return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "checkpoint path must not be NULL");
  ftq_ckpt_reader *r = ftq_calloc(1, sizeof *r, "checkpoint reader");
  if (!r) return FTQ_ERR_OUT_OF_MEMORY;
  r->path = ftq_strdup(path, "checkpoint path");
  if (!r->path) {
    ftq_ckpt_close(r);
    return FTQ_ERR_OUT_OF_MEMORY;
  }
  int fd = open(path, O_RDONLY);
  if (fd < 0) {
    ftq_status st = ftq_error(FTQ_ERR_IO, "cannot open checkpoint '%s': %s", path, strerror(errno));
    ftq_ckpt_close(r);
    return st;
  }
  struct stat sb;
  ftq_status st = FTQ_OK;
  if (fstat(fd, &sb) != 0) st = ftq_error(FTQ_ERR_IO, "cannot stat checkpoint '%s': %s", path, strerror(errno));
  else if ((uint64_t)sb.st_size < HEADER_BYTES + 4) st = bad(r, "file too small");
  if (st == FTQ_OK) {
    r->size = (size_t)sb.st_size;
    r->map = mmap(NULL, r->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (r->map == MAP_FAILED) {
      r->map = NULL;
      st = ftq_error(FTQ_ERR_IO, "cannot map checkpoint '%s': %s", path, strerror(errno));
    }
  }
  close(fd);
  const unsigned char *h = r->map;
  if (st == FTQ_OK && memcmp(h, MAGIC, 8) != 0) st = bad(r, "bad magic");
  if (st == FTQ_OK && get_u32(h + 24) != crc_of(h, 24)) st = bad(r, "header checksum mismatch");
  if (st == FTQ_OK && get_u32(h + 8) != VERSION) {
    st = ftq_error(FTQ_ERR_UNSUPPORTED, "checkpoint '%s' has format version %u; this libftq reads version %u", path,
                   get_u32(h + 8), VERSION);
  }
  uint32_t count = st == FTQ_OK ? get_u32(h + 12) : 0;
  uint64_t dir_off = st == FTQ_OK ? get_u64(h + 16) : 0;
  /* the directory and its crc fill the file's tail exactly */
  if (st == FTQ_OK && (dir_off < HEADER_BYTES || dir_off > r->size - 4 ||
                       r->size - 4 - dir_off != (uint64_t)count * ENTRY_BYTES))
    st = bad(r, "directory out of range (truncated file?)");
  if (st == FTQ_OK && get_u32(h + dir_off + (size_t)count * ENTRY_BYTES) != crc_of(h + dir_off, (size_t)count * ENTRY_BYTES))
    st = bad(r, "directory checksum mismatch");
  if (st == FTQ_OK && count && !(r->entries = ftq_calloc(count, sizeof *r->entries, "checkpoint directory")))
    st = FTQ_ERR_OUT_OF_MEMORY;
  for (uint32_t i = 0; st == FTQ_OK && i < count; i++) {
    const unsigned char *p = h + dir_off + (size_t)i * ENTRY_BYTES;
    entry *e = &r->entries[i];
    if (memchr(p, 0, 56) == NULL || p[0] == 0) {
      st = bad(r, "section name not terminated");
      break;
    }
    memcpy(e->name, p, 56);
    e->offset = get_u64(p + 56);
    e->size = get_u64(p + 64);
    e->crc = get_u32(p + 72);
    if (e->offset < HEADER_BYTES || e->offset > dir_off || e->size > dir_off - e->offset) {
      st = ftq_error(FTQ_ERR_FORMAT, "checkpoint '%s': section '%s' lies outside the data area", path, e->name);
      break;
    }
    if (crc_of(h + e->offset, (size_t)e->size) != e->crc) {
      st = ftq_error(FTQ_ERR_FORMAT, "checkpoint '%s': section '%s' checksum mismatch (corrupted file)", path, e->name);
      break;
    }
    for (uint32_t j = 0; j < i; j++)
      if (strcmp(r->entries[j].name, e->name) == 0) {
        st = ftq_error(FTQ_ERR_FORMAT, "checkpoint '%s': section '%s' appears twice", path, e->name);
        break;
      }
  }
  if (st != FTQ_OK) {
    ftq_ckpt_close(r);
    return st;
  }
  r->count = count;
  *out = r;
  return FTQ_OK;
}

ftq_status ftq_ckpt_section(const ftq_ckpt_reader *r, const char *name, const void **data, size_t *bytes) {
  for (uint32_t i = 0; i < r->count; i++)
    if (strcmp(r->entries[i].name, name) == 0) {
      *data = r->map + r->entries[i].offset;
      *bytes = (size_t)r->entries[i].size;
      return FTQ_OK;
    }
  return ftq_error(FTQ_ERR_NOT_FOUND, "checkpoint '%s' has no section '%s'", r->path, name);
}

const char *ftq_ckpt_section_name(const ftq_ckpt_reader *r, uint32_t i) {
  return i < r->count ? r->entries[i].name : NULL;
}

/* Plain or gzip-compressed text files through zlib's gz* interface, which
 * reads uncompressed files transparently. */
#include "io/jsonl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/alloc.h"
#include "core/error.h"

static ftq_status gz_failure(gzFile f, const char *path, const char *what) {
  int code = 0;
  const char *msg = gzerror(f, &code);
  if (code == Z_ERRNO)
    return ftq_error(FTQ_ERR_IO, "%s: %s: %s", path, what, strerror(errno));
  return ftq_error(FTQ_ERR_FORMAT, "%s: %s: corrupt gzip data (%s)", path, what, msg ? msg : "zlib error");
}

ftq_status ftq_read_text_file(const char *path, char **data, size_t *len) {
  *data = NULL;
  *len = 0;
  gzFile f = gzopen(path, "rb");
  if (!f) return ftq_error(FTQ_ERR_IO, "cannot open '%s': %s", path, errno ? strerror(errno) : "out of memory");
  gzbuffer(f, 1 << 17);
  size_t cap = 1 << 16, n = 0;
  char *buf = ftq_malloc(cap + 1, "file contents");
  if (!buf) {
    gzclose(f);
    return FTQ_ERR_OUT_OF_MEMORY;
  }
  for (;;) {
    if (n == cap) {
      if (cap > ((size_t)1 << 40)) {
        free(buf);
        gzclose(f);
        return ftq_error(FTQ_ERR_IO, "%s: file too large", path);
      }
      char *nb = ftq_realloc(buf, cap * 2 + 1, "file contents");
      if (!nb) {
        free(buf);
        gzclose(f);
        return FTQ_ERR_OUT_OF_MEMORY;
      }
      buf = nb;
      cap *= 2;
    }
    size_t want = cap - n > (1u << 30) ? (1u << 30) : cap - n;
    int got = gzread(f, buf + n, (unsigned)want);
    if (got < 0) {
      ftq_status st = gz_failure(f, path, "reading");
      free(buf);
      gzclose(f);
      return st;
    }
    if (got == 0) break;
    n += (size_t)got;
  }
  gzclose(f);
  buf[n] = '\0';
  *data = buf;
  *len = n;
  return FTQ_OK;
}

struct ftq_jsonl {
  gzFile f;
  char *path;
  char *buf;       /* holds the current line */
  size_t cap;
  char chunk[1 << 16];
  size_t pos, end; /* unread part of chunk */
  int eof;
  int64_t lineno;
};

ftq_status ftq_jsonl_open(const char *path, ftq_jsonl **out) {
  *out = NULL;
  ftq_jsonl *r = ftq_calloc(1, sizeof *r, "JSONL reader");
  if (!r) return FTQ_ERR_OUT_OF_MEMORY;
  r->path = ftq_strdup(path, "JSONL reader");
  r->cap = 4096;
  r->buf = ftq_malloc(r->cap, "JSONL line");
  if (!r->path || !r->buf) {
    ftq_jsonl_close(r);
    return FTQ_ERR_OUT_OF_MEMORY;
  }
  r->f = gzopen(path, "rb");
  if (!r->f) {
    ftq_status st = ftq_error(FTQ_ERR_IO, "cannot open data set '%s': %s", path, errno ? strerror(errno) : "out of memory");
    ftq_jsonl_close(r);
    return st;
  }
  gzbuffer(r->f, 1 << 17);
  *out = r;
  return FTQ_OK;
}

void ftq_jsonl_close(ftq_jsonl *r) {
  if (!r) return;
  if (r->f) gzclose(r->f);
  free(r->path);
  free(r->buf);
  free(r);
}

const char *ftq_jsonl_path(const ftq_jsonl *r) { return r->path; }

ftq_status ftq_jsonl_next(ftq_jsonl *r, const char **line, size_t *len, int64_t *lineno, int *eof) {
  size_t n = 0;
  int have = 0; /* anything read for this line (an empty last line is no line) */
  *line = NULL;
  *len = 0;
  *eof = 0;
  for (;;) {
    if (r->pos == r->end) {
      if (r->eof) break;
      int got = gzread(r->f, r->chunk, sizeof r->chunk);
      if (got < 0) return gz_failure(r->f, r->path, "reading");
      if (got == 0) {
        r->eof = 1;
        break;
      }
      r->pos = 0;
      r->end = (size_t)got;
    }
    char *start = r->chunk + r->pos;
    char *nl = memchr(start, '\n', r->end - r->pos);
    size_t take = nl ? (size_t)(nl - start) : r->end - r->pos;
    if (n + take + 1 > r->cap) {
      size_t cap = r->cap;
      while (n + take + 1 > cap) cap *= 2;
      char *nb = ftq_realloc(r->buf, cap, "JSONL line");
      if (!nb) return ftq_error(FTQ_ERR_OUT_OF_MEMORY, "%s:%lld: line too long for memory", r->path,
                                (long long)r->lineno + 1);
      r->buf = nb;
      r->cap = cap;
    }
    memcpy(r->buf + n, start, take);
    n += take;
    have = 1;
    r->pos += take;
    if (nl) {
      r->pos++; /* the '\n' */
      break;
    }
  }
  if (!have) {
    *eof = 1;
    return FTQ_OK;
  }
  if (n && r->buf[n - 1] == '\r') n--;
  r->buf[n] = '\0';
  r->lineno++;
  *line = r->buf;
  *len = n;
  *lineno = r->lineno;
  return FTQ_OK;
}

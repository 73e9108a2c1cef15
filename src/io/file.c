/* Memory-mapped reads, whole-file reads and atomic writes (see file.h). */
#include "io/file.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/error.h"

ftq_status ftq_file_map(const char *path, ftq_mapped_file *out) {
  memset(out, 0, sizeof *out);
  if (!path) return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "file path must not be NULL");
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ftq_error(FTQ_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return ftq_error(FTQ_ERR_IO, "cannot stat '%s': %s", path, strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return ftq_error(FTQ_ERR_IO, "'%s' is not a regular file", path);
  }
  out->path = ftq_strdup(path, "file path");
  if (!out->path) {
    close(fd);
    return FTQ_ERR_OUT_OF_MEMORY;
  }
  out->size = (size_t)st.st_size;
  if (out->size > 0) {
    void *p = mmap(NULL, out->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      close(fd);
      free(out->path);
      memset(out, 0, sizeof *out);
      return ftq_error(FTQ_ERR_IO, "cannot map '%s' (%zu bytes): %s", path, (size_t)st.st_size, strerror(e));
    }
    out->data = p;
  }
  close(fd); /* the mapping keeps the file open */
  return FTQ_OK;
}

void ftq_file_unmap(ftq_mapped_file *f) {
  if (!f) return;
  if (f->data) munmap((void *)f->data, f->size);
  free(f->path);
  memset(f, 0, sizeof *f);
}

void ftq_file_release_range(const ftq_mapped_file *f, const void *ptr, size_t bytes) {
  if (!f || !f->data || !ptr || !bytes) return;
  long pg = sysconf(_SC_PAGESIZE);
  size_t page = pg > 0 ? (size_t)pg : 4096;
  uintptr_t lo = (uintptr_t)ptr, hi = lo + bytes;
  uintptr_t base = (uintptr_t)f->data, end = base + f->size;
  if (lo < base || hi > end) return;
  /* whole pages strictly inside the range, so a neighbour's pages stay */
  uintptr_t a = (lo + page - 1) & ~(uintptr_t)(page - 1);
  uintptr_t b = hi & ~(uintptr_t)(page - 1);
  if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
}

ftq_status ftq_file_read_all(const char *path, size_t max_bytes, char **out, size_t *len) {
  *out = NULL;
  if (len) *len = 0;
  FILE *fp = fopen(path, "rb");
  if (!fp) return ftq_error(FTQ_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
  struct stat st;
  if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
    fclose(fp);
    return ftq_error(FTQ_ERR_IO, "'%s' is not a readable regular file", path);
  }
  if ((uint64_t)st.st_size > max_bytes) {
    fclose(fp);
    return ftq_error(FTQ_ERR_FORMAT, "'%s' is too large (%lld bytes; at most %zu expected)", path,
                     (long long)st.st_size, max_bytes);
  }
  size_t n = (size_t)st.st_size;
  char *buf = ftq_malloc(n + 1, path);
  if (!buf) {
    fclose(fp);
    return FTQ_ERR_OUT_OF_MEMORY;
  }
  size_t got = n ? fread(buf, 1, n, fp) : 0;
  int err = ferror(fp);
  fclose(fp);
  if (got != n || err) {
    free(buf);
    return ftq_error(FTQ_ERR_IO, "cannot read '%s' (%zu of %zu bytes read)", path, got, n);
  }
  buf[n] = '\0';
  *out = buf;
  if (len) *len = n;
  return FTQ_OK;
}

int ftq_file_exists(const char *path) {
  struct stat st;
  return path && stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int ftq_dir_exists(const char *path) {
  struct stat st;
  return path && stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

char *ftq_path_join(const char *dir, const char *name) {
  size_t a = strlen(dir), b = strlen(name);
  int slash = a > 0 && dir[a - 1] != '/';
  char *p = ftq_malloc(a + (size_t)slash + b + 1, "path");
  if (!p) return NULL;
  memcpy(p, dir, a);
  if (slash) p[a] = '/';
  memcpy(p + a + slash, name, b + 1);
  return p;
}

/* ---------------------------------------------------------------------- */
/* Atomic writes                                                            */

static atomic_uint tmp_counter;

ftq_status ftq_atomic_open(const char *path, ftq_atomic_file *out) {
  memset(out, 0, sizeof *out);
  if (!path || !*path) return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "output path must not be empty");
  out->path = ftq_strdup(path, "output path");
  size_t n = strlen(path) + 64;
  out->tmp_path = ftq_malloc(n, "temporary path");
  if (!out->path || !out->tmp_path) {
    free(out->path);
    free(out->tmp_path);
    memset(out, 0, sizeof *out);
    return FTQ_ERR_OUT_OF_MEMORY;
  }
  snprintf(out->tmp_path, n, "%s.tmp.%ld.%u", path, (long)getpid(), atomic_fetch_add(&tmp_counter, 1u));
  int fd = open(out->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0 || !(out->fp = fdopen(fd, "wb"))) {
    int e = errno;
    if (fd >= 0) {
      close(fd);
      unlink(out->tmp_path);
    }
    ftq_status st = ftq_error(FTQ_ERR_IO, "cannot create '%s': %s", out->tmp_path, strerror(e));
    free(out->path);
    free(out->tmp_path);
    memset(out, 0, sizeof *out);
    return st;
  }
  return FTQ_OK;
}

ftq_status ftq_atomic_write(ftq_atomic_file *f, const void *data, size_t bytes) {
  if (!f->fp || f->failed) return ftq_error(FTQ_ERR_STATE, "writing '%s': an earlier write failed", f->path);
  if (bytes && fwrite(data, 1, bytes, f->fp) != bytes) {
    f->failed = 1;
    return ftq_error(FTQ_ERR_IO, "writing '%s': %s", f->tmp_path, strerror(errno));
  }
  return FTQ_OK;
}

static void fsync_parent(const char *path) {
  char *copy = strdup(path);
  if (!copy) return;
  int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    fsync(fd); /* makes the rename durable; failure is not fatal */
    close(fd);
  }
  free(copy);
}

ftq_status ftq_atomic_commit(ftq_atomic_file *f) {
  ftq_status st = FTQ_OK;
  if (!f->fp) return ftq_error(FTQ_ERR_STATE, "writing: no open file");
  if (f->failed) st = ftq_error(FTQ_ERR_IO, "writing '%s': an earlier write failed", f->path);
  if (st == FTQ_OK && fflush(f->fp) != 0) st = ftq_error(FTQ_ERR_IO, "writing '%s': %s", f->tmp_path, strerror(errno));
  if (st == FTQ_OK && fsync(fileno(f->fp)) != 0)
    st = ftq_error(FTQ_ERR_IO, "syncing '%s': %s", f->tmp_path, strerror(errno));
  if (fclose(f->fp) != 0 && st == FTQ_OK) st = ftq_error(FTQ_ERR_IO, "closing '%s': %s", f->tmp_path, strerror(errno));
  f->fp = NULL;
  if (st == FTQ_OK && rename(f->tmp_path, f->path) != 0)
    st = ftq_error(FTQ_ERR_IO, "renaming '%s' to '%s': %s", f->tmp_path, f->path, strerror(errno));
  if (st == FTQ_OK) fsync_parent(f->path);
  else unlink(f->tmp_path);
  free(f->path);
  free(f->tmp_path);
  memset(f, 0, sizeof *f);
  return st;
}

void ftq_atomic_abort(ftq_atomic_file *f) {
  if (!f) return;
  if (f->fp) {
    fclose(f->fp);
    unlink(f->tmp_path);
  }
  free(f->path);
  free(f->tmp_path);
  memset(f, 0, sizeof *f);
}

/* Files for the readers and writers: read-only memory maps (model files are
 * read in place, never copied whole into host memory), whole-file reads for
 * small JSON files, and atomic writes (temp file + fsync + rename), so a
 * crash or a full disk never leaves a half-written file under the final
 * name. Errors name the path and the system's reason. */
#ifndef FTQ_IO_FILE_H
#define FTQ_IO_FILE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "libftq/ftq_status.h"

/* A read-only mapping of a whole file. */
typedef struct ftq_mapped_file {
  const uint8_t *data; /* NULL for an empty file */
  size_t size;
  char *path;          /* owned copy, for messages */
} ftq_mapped_file;

ftq_status ftq_file_map(const char *path, ftq_mapped_file *out);
void ftq_file_unmap(ftq_mapped_file *f);
/* Tells the kernel a range was consumed: its pages leave this process's
 * resident set (they stay in the page cache). Best effort. */
void ftq_file_release_range(const ftq_mapped_file *f, const void *ptr, size_t bytes);

/* Reads a whole file into a NUL-terminated heap buffer (free()).
 * Files larger than max_bytes are FTQ_ERR_FORMAT ("too large"). */
ftq_status ftq_file_read_all(const char *path, size_t max_bytes, char **out, size_t *len);

int ftq_file_exists(const char *path);
int ftq_dir_exists(const char *path);
/* dir + "/" + name into a new heap string (NULL with the message set on
 * allocation failure). */
char *ftq_path_join(const char *dir, const char *name);

/* Atomic writer: writes go to "<path>.tmp.<pid>.<n>" in the same folder;
 * commit() flushes, fsyncs, renames over `path` and fsyncs the folder;
 * abort() (or a failed commit) removes the temp file. */
typedef struct ftq_atomic_file {
  FILE *fp;
  char *path;
  char *tmp_path;
  int failed; /* a write failed: commit refuses */
} ftq_atomic_file;

ftq_status ftq_atomic_open(const char *path, ftq_atomic_file *out);
ftq_status ftq_atomic_write(ftq_atomic_file *f, const void *data, size_t bytes);
ftq_status ftq_atomic_commit(ftq_atomic_file *f);
void ftq_atomic_abort(ftq_atomic_file *f);

#endif /* FTQ_IO_FILE_H */

/* Reading text files that may be gzip-compressed (zlib detects the format):
 * whole files (tokenizer.json, tokenizer_config.json) and JSON Lines
 * streamed one line at a time with line numbers for messages. */
#ifndef FTQ_IO_JSONL_H
#define FTQ_IO_JSONL_H

#include <stddef.h>
#include <stdint.h>

#include "libftq/ftq_status.h"

/* Reads a whole file (plain or gzip) into a NUL-terminated buffer (free()
 * it). FTQ_ERR_IO naming the file on failure, FTQ_ERR_FORMAT for a corrupt
 * gzip stream. */
ftq_status ftq_read_text_file(const char *path, char **data, size_t *len);

typedef struct ftq_jsonl ftq_jsonl;

ftq_status ftq_jsonl_open(const char *path, ftq_jsonl **out);
void ftq_jsonl_close(ftq_jsonl *r);
/* The next line without its line break (a trailing '\r' is removed too).
 * *line points into the reader's buffer, valid until the next call, and is
 * NUL-terminated; *lineno is 1-based. *eof is 1 (and *line NULL) at the
 * end. Errors name the file and line. */
ftq_status ftq_jsonl_next(ftq_jsonl *r, const char **line, size_t *len, int64_t *lineno, int *eof);
const char *ftq_jsonl_path(const ftq_jsonl *r);

#endif /* FTQ_IO_JSONL_H */

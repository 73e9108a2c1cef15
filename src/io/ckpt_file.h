/* Training checkpoint container: named binary sections, each with a CRC32,
 * written atomically (temp file + fsync + rename + fsync of the folder) so
 * a crash never leaves a half-written checkpoint under the final name, and
 * read back with every offset, size and checksum verified.
 *
 * Layout (little-endian; written front to back, never seeking, so the
 * shared atomic writer of io/file.h serves):
 *   "FTQCKPT1"
 *   sections : raw bytes, each aligned to 64 bytes
 *   directory: n_sections x { name[56] NUL-padded | u64 offset | u64 size | u32 crc32 | u32 0 }
 *   trailer  : "FTQCKEND" | u32 version | u32 n_sections | u64 directory offset | u32 crc32 of
 *              directory + trailer up to here | u32 0 */
#ifndef FTQ_IO_CKPT_FILE_H
#define FTQ_IO_CKPT_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "libftq/ftq_status.h"

#define FTQ_CKPT_NAME_MAX 55

typedef struct ftq_ckpt_writer ftq_ckpt_writer;
typedef struct ftq_ckpt_reader ftq_ckpt_reader;

/* Starts writing `path` (through a temporary file beside it). */
ftq_status ftq_ckpt_write_begin(const char *path, ftq_ckpt_writer **out);
/* Appends a section (names unique, at most FTQ_CKPT_NAME_MAX bytes). */
ftq_status ftq_ckpt_write_section(ftq_ckpt_writer *w, const char *name, const void *data, size_t bytes);
/* Writes the directory, syncs, and renames the file into place; frees w. */
ftq_status ftq_ckpt_write_commit(ftq_ckpt_writer *w);
/* Discards a checkpoint being written (removes the temporary file); frees w. NULL is a no-op. */
void ftq_ckpt_write_abort(ftq_ckpt_writer *w);

/* Opens and verifies a checkpoint (structure and every CRC). Errors name
 * the file and what is wrong: FTQ_ERR_IO, FTQ_ERR_FORMAT. */
ftq_status ftq_ckpt_open(const char *path, ftq_ckpt_reader **out);
void ftq_ckpt_close(ftq_ckpt_reader *r);
/* A section's bytes (valid until close); FTQ_ERR_NOT_FOUND naming it. */
ftq_status ftq_ckpt_section(const ftq_ckpt_reader *r, const char *name, const void **data, size_t *bytes);
/* Section i's name (for listing), NULL past the end. */
const char *ftq_ckpt_section_name(const ftq_ckpt_reader *r, uint32_t i);

#endif /* FTQ_IO_CKPT_FILE_H */

/* safetensors files: a reader that maps the file and checks every header
 * entry against the file and the other entries before anything is used
 * (docs/formats.md lists the checks), sets of files (a folder with
 * model.safetensors or a sharded model.safetensors.index.json), and a
 * writer whose output is byte-identical to the Python `safetensors`
 * package's (tensors sorted by dtype then name, header padded with spaces
 * to 8 bytes), written atomically. Used for model folders, PEFT adapters
 * and merged models. */
#ifndef FTQ_IO_SAFETENSORS_H
#define FTQ_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "libftq/ftq_status.h"

#define FTQ_ST_MAX_DIMS 8
/* The Python/Rust implementation refuses headers above 100 MB too. */
#define FTQ_ST_MAX_HEADER ((uint64_t)100000000)

struct ftq_safetensors;

/* One tensor of an opened file. `data` points into the mapping and is
 * aligned to the element size (files where it would not be are refused). */
typedef struct ftq_st_tensor {
  const char *name;
  const char *dtype_name; /* "F32", "BF16", "F8_E4M3", ... */
  ftq_dtype dtype;        /* FTQ_DTYPE_COUNT for dtypes libftq does not compute with (F8_*) */
  size_t elem_size;
  int ndim;               /* 0 for a scalar */
  int64_t shape[FTQ_ST_MAX_DIMS];
  uint64_t numel;
  const void *data;
  size_t bytes;
  uint64_t file_offset;   /* absolute offset of the data in the file */
  const struct ftq_safetensors *file;
} ftq_st_tensor;

/* ---- one file ---- */
typedef struct ftq_safetensors ftq_safetensors;

/* Maps and validates a file. Errors name the path (and the tensor). */
ftq_status ftq_safetensors_open(const char *path, ftq_safetensors **out);
/* Validates a file image already in memory (not copied; must outlive the
 * object). `what` names it in messages. The fuzz target calls this. */
ftq_status ftq_safetensors_parse(const void *data, size_t size, const char *what, ftq_safetensors **out);
void ftq_safetensors_close(ftq_safetensors *f);
const char *ftq_safetensors_path(const ftq_safetensors *f);
size_t ftq_safetensors_count(const ftq_safetensors *f);
/* Tensors in order of their data in the file. */
const ftq_st_tensor *ftq_safetensors_tensor(const ftq_safetensors *f, size_t i);
const ftq_st_tensor *ftq_safetensors_find(const ftq_safetensors *f, const char *name);
/* __metadata__ value for `key`, or NULL. */
const char *ftq_safetensors_metadata(const ftq_safetensors *f, const char *key);
/* Drops a tensor's pages from this process's resident set after use. */
void ftq_st_tensor_release(const ftq_st_tensor *t);

/* ---- a set of files (one model) ---- */
typedef struct ftq_st_set ftq_st_set;

/* `path` is a folder (model.safetensors.index.json, else model.safetensors,
 * else the only *.safetensors file in it), a .safetensors file, or an index
 * .json file. Every shard is opened and validated; the index's weight_map
 * must agree with the shards and no tensor may appear twice. */
ftq_status ftq_st_set_open(const char *path, ftq_st_set **out);
void ftq_st_set_close(ftq_st_set *s);
size_t ftq_st_set_count(const ftq_st_set *s);
/* Tensors sorted by name. */
const ftq_st_tensor *ftq_st_set_tensor(const ftq_st_set *s, size_t i);
const ftq_st_tensor *ftq_st_set_find(const ftq_st_set *s, const char *name);
size_t ftq_st_set_file_count(const ftq_st_set *s);
const ftq_safetensors *ftq_st_set_file(const ftq_st_set *s, size_t i);

/* ---- writer ---- */
typedef struct ftq_st_writer ftq_st_writer;

/* Produces a tensor's bytes at write time into `dst` (`bytes` long), so a
 * large model can be written one tensor at a time. Non-OK stops the write. */
typedef ftq_status (*ftq_st_fill_fn)(void *user, const char *name, void *dst, size_t bytes);

/* A new writer; its metadata starts as {"format": "pt"} (what transformers
 * and PEFT require). */
ftq_status ftq_st_writer_create(ftq_st_writer **out);
void ftq_st_writer_destroy(ftq_st_writer *w);
/* Sets (value NULL: removes) a __metadata__ entry. */
ftq_status ftq_st_writer_set_metadata(ftq_st_writer *w, const char *key, const char *value);
/* Adds a tensor from a host buffer of numel * size bytes (row-major,
 * little-endian). The buffer is NOT copied: it must stay valid until the
 * last write call. ndim 0 is a scalar (shape may be NULL). Names must be
 * unique and non-empty. */
ftq_status ftq_st_writer_add(ftq_st_writer *w, const char *name, ftq_dtype dtype, int ndim, const int64_t *shape,
                             const void *data);
/* Adds a tensor whose bytes `fill` produces when the file is written. */
ftq_status ftq_st_writer_add_fn(ftq_st_writer *w, const char *name, ftq_dtype dtype, int ndim, const int64_t *shape,
                                ftq_st_fill_fn fill, void *user);
size_t ftq_st_writer_count(const ftq_st_writer *w);
/* Writes one file atomically (temp file + fsync + rename). */
ftq_status ftq_st_writer_write(const ftq_st_writer *w, const char *path);
/* Writes a Hugging Face sharded checkpoint into folder `dir`: tensors in the
 * order they were added, cut into shards of at most max_shard_bytes of data
 * (a larger tensor gets a shard of its own), named
 * "<prefix>-00001-of-0000N.safetensors", plus "<prefix>.safetensors.index.json"
 * ({"metadata": {"total_size": ...}, "weight_map": {...}}, as transformers
 * writes it). With one shard: "<prefix>.safetensors" and no index.
 * n_shards (may be NULL) receives the number of files. */
ftq_status ftq_st_writer_write_sharded(const ftq_st_writer *w, const char *dir, const char *prefix,
                                       uint64_t max_shard_bytes, int *n_shards);

/* The format's dtype name for a libftq dtype ("F32", ...), NULL if none. */
const char *ftq_st_dtype_name(ftq_dtype dtype);

#endif /* FTQ_IO_SAFETENSORS_H */

/* GGUF reader (v2, v3): metadata, tensor infos and data, read through mmap
 * and bounds-checked against the file before anything is used. Internal;
 * the model loader (tensors) and the tokenizer (tokenizer.ggml.* metadata)
 * both read through it. */
#ifndef FTQ_IO_GGUF_H
#define FTQ_IO_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "libftq/ftq_status.h"

/* GGUF metadata value types (values as in the GGUF specification). */
typedef enum ftq_gguf_type {
  FTQ_GGUF_UINT8 = 0,
  FTQ_GGUF_INT8 = 1,
  FTQ_GGUF_UINT16 = 2,
  FTQ_GGUF_INT16 = 3,
  FTQ_GGUF_UINT32 = 4,
  FTQ_GGUF_INT32 = 5,
  FTQ_GGUF_FLOAT32 = 6,
  FTQ_GGUF_BOOL = 7,
  FTQ_GGUF_STRING = 8,
  FTQ_GGUF_ARRAY = 9,
  FTQ_GGUF_UINT64 = 10,
  FTQ_GGUF_INT64 = 11,
  FTQ_GGUF_FLOAT64 = 12
} ftq_gguf_type;

typedef struct ftq_gguf ftq_gguf;

/* Opens and validates a GGUF file (header, every key/value, every tensor
 * info, alignment, data offsets within the file). Errors name the file and
 * what is wrong (FTQ_ERR_IO / FTQ_ERR_FORMAT / FTQ_ERR_UNSUPPORTED). */
ftq_status ftq_gguf_open(const char *path, ftq_gguf **out);
/* The same over a file image in memory (not copied: it must outlive the
 * reader); `what` names it in messages. The fuzz target calls this. */
ftq_status ftq_gguf_open_memory(const void *data, size_t size, const char *what, ftq_gguf **out);
void ftq_gguf_close(ftq_gguf *g);
const char *ftq_gguf_path(const ftq_gguf *g);
uint32_t ftq_gguf_version(const ftq_gguf *g);
uint64_t ftq_gguf_alignment(const ftq_gguf *g); /* general.alignment, default 32 */

/* ---- metadata ---- */
/* Keys in file order: key i (not NUL-terminated: pointer + length). */
uint64_t ftq_gguf_key_count(const ftq_gguf *g);
ftq_status ftq_gguf_key_at(const ftq_gguf *g, uint64_t i, const char **key, size_t *len);
/* Type of key `key`; FTQ_ERR_NOT_FOUND if absent. For arrays also the
 * element type and count (may be NULL). */
ftq_status ftq_gguf_key_type(const ftq_gguf *g, const char *key, ftq_gguf_type *type, ftq_gguf_type *elem_type,
                             uint64_t *count);
/* Scalars, converted between integer types when the value fits
 * (FTQ_ERR_FORMAT naming the key when it does not, or the type differs). */
ftq_status ftq_gguf_get_int(const ftq_gguf *g, const char *key, int64_t *out);
ftq_status ftq_gguf_get_float(const ftq_gguf *g, const char *key, double *out); /* f32, f64 or integers */
ftq_status ftq_gguf_get_bool(const ftq_gguf *g, const char *key, int *out);
/* Strings are not NUL-terminated in the file: pointer + length into the map. */
ftq_status ftq_gguf_get_string(const ftq_gguf *g, const char *key, const char **s, size_t *len);
/* A numeric array: pointer to `count` little-endian elements of elem_type
 * inside the map (unaligned access must be allowed for: copy out with memcpy).
 * For an array of strings it gives the element type and count (read the
 * elements with ftq_gguf_get_array_string). */
ftq_status ftq_gguf_get_array(const ftq_gguf *g, const char *key, ftq_gguf_type *elem_type, uint64_t *count,
                              const void **data);
/* Element i of a string array. */
ftq_status ftq_gguf_get_array_string(const ftq_gguf *g, const char *key, uint64_t i, const char **s, size_t *len);

/* ---- tensors ---- */
uint64_t ftq_gguf_tensor_count(const ftq_gguf *g);
/* Info of tensor i: name, GGML type id, dims (GGUF order: ne[0] is the
 * fastest-varying, i.e. the reverse of PyTorch's shape), data and size. */
ftq_status ftq_gguf_tensor_info(const ftq_gguf *g, uint64_t i, const char **name, uint32_t *ggml_type,
                                uint32_t *n_dims, uint64_t ne[4], const void **data, size_t *bytes);
ftq_status ftq_gguf_find_tensor(const ftq_gguf *g, const char *name, uint64_t *index);
/* Drops tensor i's pages from this process's resident set after use (they
 * stay in the page cache). */
void ftq_gguf_release_tensor(const ftq_gguf *g, uint64_t i);

#endif /* FTQ_IO_GGUF_H */

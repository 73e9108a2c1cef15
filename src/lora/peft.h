/* PEFT adapter files and the writers they share with merged model folders:
 * JSON as Python's json.dumps(indent=2, sort_keys=True) writes it (the
 * format of adapter_config.json and of transformers' config.json), folder
 * creation, and atomic text and file copies. */
#ifndef FTQ_LORA_PEFT_H
#define FTQ_LORA_PEFT_H

#include <jansson.h>

#include "libftq/ftq_status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The peft release whose adapter_config.json key set ftq_lora_save writes. */
#define FTQ_PEFT_FORMAT_VERSION "0.21.2"

/* json.dumps(v, indent=2, sort_keys=True) of Python (ASCII escapes, floats
 * as repr(), empty containers as {} / []), without a trailing newline.
 * Heap text (free()); NULL with the error set when out of memory. */
char *ftq_py_json_dumps(const json_t *v);

/* Creates folder `dir` (its parent must exist); an existing folder is fine. */
ftq_status ftq_make_dir(const char *dir);

/* Writes `len` bytes to `path` atomically (temp file + fsync + rename). */
ftq_status ftq_write_file_atomic(const char *path, const void *data, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* FTQ_LORA_PEFT_H */

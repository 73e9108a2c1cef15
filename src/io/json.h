/* JSON through jansson for the file readers: parse with duplicate keys
 * rejected and errors that carry the file, line and column, plus typed
 * field getters whose errors name the field and the value found. */
#ifndef FTQ_IO_JSON_H
#define FTQ_IO_JSON_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "libftq/ftq_status.h"

/* Parses `len` bytes of JSON text. `what` names the source in messages
 * ("config.json", a path). FTQ_ERR_FORMAT "<what>:<line>:<col>: <reason>". */
ftq_status ftq_json_parse(const char *text, size_t len, const char *what, json_t **out);
/* Reads and parses a file of at most max_bytes. */
ftq_status ftq_json_load_file(const char *path, size_t max_bytes, json_t **out);

/* Short description of a JSON value for messages: `"abc"`, `12`, `true`,
 * `an array`, ... (into buf, returned). */
const char *ftq_json_describe(const json_t *v, char *buf, size_t len);

/* Field getters on an object. `what` prefixes messages ("config.json").
 * Absent or null fields: FTQ_ERR_NOT_FOUND without touching the message,
 * so callers can apply defaults; a wrong type or range is FTQ_ERR_FORMAT
 * naming the field and the value. Integers must be JSON integers (or reals
 * with an integral value); floats may be integers or reals. */
ftq_status ftq_json_get_int(const json_t *obj, const char *key, const char *what, int64_t *out);
ftq_status ftq_json_get_float(const json_t *obj, const char *key, const char *what, double *out);
ftq_status ftq_json_get_bool(const json_t *obj, const char *key, const char *what, int *out);
ftq_status ftq_json_get_string(const json_t *obj, const char *key, const char *what, const char **out);

/* A JSON value as a non-negative integer (data offsets, shapes). */
int ftq_json_as_u64(const json_t *v, uint64_t *out);

#endif /* FTQ_IO_JSON_H */

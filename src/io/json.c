/* JSON helpers over jansson (see json.h). */
#include "io/json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/error.h"
#include "io/file.h"

ftq_status ftq_json_parse(const char *text, size_t len, const char *what, json_t **out) {
  *out = NULL;
  json_error_t err;
  json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
  if (!root) return ftq_error(FTQ_ERR_FORMAT, "%s:%d:%d: invalid JSON: %s", what, err.line, err.column, err.text);
  *out = root;
  return FTQ_OK;
}

ftq_status ftq_json_load_file(const char *path, size_t max_bytes, json_t **out) {
  char *text;
  size_t len;
  *out = NULL;
  FTQ_TRY(ftq_file_read_all(path, max_bytes, &text, &len));
  ftq_status st = ftq_json_parse(text, len, path, out);
  free(text);
  return st;
}

const char *ftq_json_describe(const json_t *v, char *buf, size_t len) {
  switch (json_typeof(v)) {
    case JSON_STRING: snprintf(buf, len, "\"%.*s\"", (int)(len > 8 ? len - 8 : 0), json_string_value(v)); break;
    case JSON_INTEGER: snprintf(buf, len, "%lld", (long long)json_integer_value(v)); break;
    case JSON_REAL: snprintf(buf, len, "%.17g", json_real_value(v)); break;
    case JSON_TRUE: snprintf(buf, len, "true"); break;
    case JSON_FALSE: snprintf(buf, len, "false"); break;
    case JSON_NULL: snprintf(buf, len, "null"); break;
    case JSON_ARRAY: snprintf(buf, len, "an array"); break;
    case JSON_OBJECT: snprintf(buf, len, "an object"); break;
    default: snprintf(buf, len, "?"); break;
  }
  return buf;
}

static const json_t *field(const json_t *obj, const char *key) {
  const json_t *v = json_object_get(obj, key);
  return v && !json_is_null(v) ? v : NULL;
}

ftq_status ftq_json_get_int(const json_t *obj, const char *key, const char *what, int64_t *out) {
  const json_t *v = field(obj, key);
  if (!v) return FTQ_ERR_NOT_FOUND;
  char d[96];
  if (json_is_integer(v)) {
    *out = (int64_t)json_integer_value(v);
    return FTQ_OK;
  }
  if (json_is_real(v)) {
    double x = json_real_value(v);
    if (x == floor(x) && fabs(x) < 9.0e15) {
      *out = (int64_t)x;
      return FTQ_OK;
    }
  }
  return ftq_error(FTQ_ERR_FORMAT, "%s: %s = %s must be an integer", what, key, ftq_json_describe(v, d, sizeof d));
}

ftq_status ftq_json_get_float(const json_t *obj, const char *key, const char *what, double *out) {
  const json_t *v = field(obj, key);
  if (!v) return FTQ_ERR_NOT_FOUND;
  char d[96];
  if (!json_is_number(v))
    return ftq_error(FTQ_ERR_FORMAT, "%s: %s = %s must be a number", what, key, ftq_json_describe(v, d, sizeof d));
  *out = json_number_value(v);
  if (!isfinite(*out))
    return ftq_error(FTQ_ERR_FORMAT, "%s: %s = %s must be finite", what, key, ftq_json_describe(v, d, sizeof d));
  return FTQ_OK;
}

ftq_status ftq_json_get_bool(const json_t *obj, const char *key, const char *what, int *out) {
  const json_t *v = field(obj, key);
  if (!v) return FTQ_ERR_NOT_FOUND;
  char d[96];
  if (!json_is_boolean(v))
    return ftq_error(FTQ_ERR_FORMAT, "%s: %s = %s must be true or false", what, key, ftq_json_describe(v, d, sizeof d));
  *out = json_is_true(v);
  return FTQ_OK;
}

ftq_status ftq_json_get_string(const json_t *obj, const char *key, const char *what, const char **out) {
  const json_t *v = field(obj, key);
  if (!v) return FTQ_ERR_NOT_FOUND;
  char d[96];
  if (!json_is_string(v))
    return ftq_error(FTQ_ERR_FORMAT, "%s: %s = %s must be a string", what, key, ftq_json_describe(v, d, sizeof d));
  *out = json_string_value(v);
  return FTQ_OK;
}

int ftq_json_as_u64(const json_t *v, uint64_t *out) {
  if (!json_is_integer(v) || json_integer_value(v) < 0) return 0;
  *out = (uint64_t)json_integer_value(v);
  return 1;
}

/* Option registry lookup, option sets, parsing and JSON load/save. */
#include "core/options.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "core/error.h"

extern const ftq_option_table *const ftq_option_tables[];
extern const size_t ftq_option_table_count;

/* ---------------------------------------------------------------------- */
/* Registry: a flat array of pointers plus a name-sorted index.            */

static const ftq_option_def **g_defs;  /* registry order */
static size_t *g_sorted;               /* indices sorted by name */
static size_t g_count;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static int cmp_by_name(const void *a, const void *b) {
  return strcmp(g_defs[*(const size_t *)a]->name, g_defs[*(const size_t *)b]->name);
}

static void registry_init(void) {
  size_t n = 0;
  for (size_t t = 0; t < ftq_option_table_count; t++) n += ftq_option_tables[t]->count;
  const ftq_option_def **defs = calloc(n ? n : 1, sizeof *defs);
  size_t *sorted = calloc(n ? n : 1, sizeof *sorted);
  if (!defs || !sorted) { /* registry stays empty; every lookup then fails cleanly */
    free(defs);
    free(sorted);
    return;
  }
  size_t k = 0;
  for (size_t t = 0; t < ftq_option_table_count; t++)
    for (size_t i = 0; i < ftq_option_tables[t]->count; i++) defs[k++] = &ftq_option_tables[t]->defs[i];
  for (size_t i = 0; i < n; i++) sorted[i] = i;
  g_defs = defs;
  qsort(sorted, n, sizeof *sorted, cmp_by_name);
  g_sorted = sorted;
  g_count = n;
}

static size_t registry_count(void) {
  pthread_once(&g_once, registry_init);
  return g_count;
}

const ftq_option_def *ftq_option_def_at(size_t index) {
  return index < registry_count() ? g_defs[index] : NULL;
}

const ftq_option_def *ftq_option_def_find(const char *name, size_t *index) {
  size_t lo = 0, hi = registry_count();
  if (!name) return NULL;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(name, g_defs[g_sorted[mid]]->name);
    if (c == 0) {
      if (index) *index = g_sorted[mid];
      return g_defs[g_sorted[mid]];
    }
    if (c < 0) hi = mid;
    else lo = mid + 1;
  }
  return NULL;
}

static ftq_status unknown_option(const char *name) {
  return ftq_error(FTQ_ERR_UNKNOWN_OPTION, "unknown option '%s' (ftq_option_count()/ftq_option_name() list them)",
                   name ? name : "(null)");
}

static const char *type_name(ftq_option_type t) {
  switch (t) {
    case FTQ_OPTION_INT: return "int";
    case FTQ_OPTION_FLOAT: return "float";
    case FTQ_OPTION_BOOL: return "bool";
    case FTQ_OPTION_STRING: return "string";
  }
  return "?";
}

size_t ftq_option_count(void) { return registry_count(); }

ftq_status ftq_option_find(const char *name, size_t *index) {
  FTQ_CHECK_ARG(name && index, "ftq_option_find: name and index must not be NULL");
  if (!ftq_option_def_find(name, index)) return unknown_option(name);
  return FTQ_OK;
}

const char *ftq_option_name(size_t i) { const ftq_option_def *d = ftq_option_def_at(i); return d ? d->name : NULL; }
int ftq_option_type_of(size_t i) { const ftq_option_def *d = ftq_option_def_at(i); return d ? (int)d->type : -1; }
const char *ftq_option_group(size_t i) { const ftq_option_def *d = ftq_option_def_at(i); return d ? d->group : NULL; }
const char *ftq_option_doc(size_t i) { const ftq_option_def *d = ftq_option_def_at(i); return d ? d->doc : NULL; }
const char *ftq_option_default(size_t i) { const ftq_option_def *d = ftq_option_def_at(i); return d ? d->def : NULL; }
const char *ftq_option_choices(size_t i) { const ftq_option_def *d = ftq_option_def_at(i); return d ? d->choices : NULL; }
int ftq_option_is_list(size_t i) {
  const ftq_option_def *d = ftq_option_def_at(i);
  return d && (d->flags & FTQ_OPTF_LIST) ? 1 : 0;
}

ftq_status ftq_option_range(size_t i, double *min, double *max) {
  const ftq_option_def *d = ftq_option_def_at(i);
  if (!d) return ftq_error(FTQ_ERR_NOT_FOUND, "option index %zu out of range (%zu options)", i, registry_count());
  if (d->type != FTQ_OPTION_INT && d->type != FTQ_OPTION_FLOAT)
    return ftq_error(FTQ_ERR_OPTION_TYPE, "option '%s' is a %s option and has no numeric range", d->name,
                     type_name(d->type));
  if (min) *min = d->min;
  if (max) *max = d->max;
  return FTQ_OK;
}

int ftq_option_choice_ok(const char *choices, const char *item, size_t len) {
  const char *p = choices;
  while (p && *p) {
    const char *bar = strchr(p, '|');
    size_t n = bar ? (size_t)(bar - p) : strlen(p);
    if (n == len && strncmp(p, item, len) == 0) return 1;
    p = bar ? bar + 1 : NULL;
  }
  return 0;
}

/* ---------------------------------------------------------------------- */
/* Values                                                                   */

typedef struct opt_value {
  int is_set;
  int64_t i;
  double f;
  int b;
  char *s;
} opt_value;

struct ftq_options {
  size_t count;
  opt_value *v;
};

ftq_status ftq_options_create(ftq_options **out) {
  FTQ_CHECK_ARG(out, "ftq_options_create: out must not be NULL");
  *out = NULL;
  size_t n = registry_count();
  ftq_options *o = ftq_calloc(1, sizeof *o, "option set");
  if (!o) return FTQ_ERR_OUT_OF_MEMORY;
  o->v = ftq_calloc(n ? n : 1, sizeof *o->v, "option values");
  if (!o->v) {
    free(o);
    return FTQ_ERR_OUT_OF_MEMORY;
  }
  o->count = n;
  *out = o;
  return FTQ_OK;
}

void ftq_options_destroy(ftq_options *o) {
  if (!o) return;
  for (size_t i = 0; i < o->count; i++) free(o->v[i].s);
  free(o->v);
  free(o);
}

ftq_status ftq_options_copy(const ftq_options *src, ftq_options **out) {
  FTQ_TRY(ftq_options_create(out));
  if (!src) return FTQ_OK;
  ftq_options *o = *out;
  for (size_t i = 0; i < o->count; i++) {
    o->v[i] = src->v[i];
    o->v[i].s = NULL;
    if (src->v[i].s && !(o->v[i].s = ftq_strdup(src->v[i].s, "option string"))) {
      ftq_options_destroy(o);
      *out = NULL;
      return FTQ_ERR_OUT_OF_MEMORY;
    }
  }
  return FTQ_OK;
}

/* Looks up `name` and checks it has one of the accepted types. */
static ftq_status lookup(const char *name, size_t *idx, const ftq_option_def **def) {
  if (!name) return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "option name must not be NULL");
  *def = ftq_option_def_find(name, idx);
  if (!*def) return unknown_option(name);
  return FTQ_OK;
}

static ftq_status wrong_type(const ftq_option_def *d, const char *given) {
  return ftq_error(FTQ_ERR_OPTION_TYPE, "option '%s' is a %s option, not %s", d->name, type_name(d->type), given);
}

static ftq_status check_range(const ftq_option_def *d, double v, const char *text) {
  if (v < d->min || v > d->max) {
    char lo[32], hi[32];
    snprintf(lo, sizeof lo, "%.17g", d->min);
    snprintf(hi, sizeof hi, "%.17g", d->max);
    return ftq_error(FTQ_ERR_OPTION_RANGE, "option '%s' = %s is out of range [%s, %s]", d->name, text,
                     isinf(d->min) ? "-inf" : lo, isinf(d->max) ? "inf" : hi);
  }
  return FTQ_OK;
}

/* Normalises a string value: trims list items and checks choices. Returns a
 * newly allocated normalised copy in *out. */
static ftq_status normalise_string(const ftq_option_def *d, const char *value, char **out) {
  *out = NULL;
  size_t len = strlen(value);
  char *buf = ftq_malloc(len + 1, "option string");
  if (!buf) return FTQ_ERR_OUT_OF_MEMORY;
  if (!(d->flags & FTQ_OPTF_LIST)) {
    memcpy(buf, value, len + 1);
    if (d->choices && !ftq_option_choice_ok(d->choices, buf, len)) {
      ftq_status st = ftq_error(FTQ_ERR_OPTION_RANGE, "option '%s' = \"%s\" is not one of %s", d->name, value,
                                d->choices);
      free(buf);
      return st;
    }
    *out = buf;
    return FTQ_OK;
  }
  /* list: split on commas, trim spaces, drop empty items */
  size_t w = 0;
  const char *p = value;
  while (*p) {
    const char *comma = strchr(p, ',');
    const char *end = comma ? comma : p + strlen(p);
    const char *a = p, *b = end;
    while (a < b && (*a == ' ' || *a == '\t')) a++;
    while (b > a && (b[-1] == ' ' || b[-1] == '\t')) b--;
    if (b > a) {
      if (d->choices && !ftq_option_choice_ok(d->choices, a, (size_t)(b - a))) {
        ftq_status st = ftq_error(FTQ_ERR_OPTION_RANGE, "option '%s': item \"%.*s\" is not one of %s", d->name,
                                  (int)(b - a), a, d->choices);
        free(buf);
        return st;
      }
      if (w) buf[w++] = ',';
      memcpy(buf + w, a, (size_t)(b - a));
      w += (size_t)(b - a);
    }
    p = comma ? comma + 1 : end;
  }
  buf[w] = '\0';
  *out = buf;
  return FTQ_OK;
}

static ftq_status check_opts(const ftq_options *o) {
  if (!o) return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "option set must not be NULL");
  return FTQ_OK;
}

ftq_status ftq_options_set_int(ftq_options *o, const char *name, int64_t value) {
  size_t i;
  const ftq_option_def *d;
  FTQ_TRY(check_opts(o));
  FTQ_TRY(lookup(name, &i, &d));
  char text[32];
  snprintf(text, sizeof text, "%lld", (long long)value);
  if (d->type == FTQ_OPTION_FLOAT) return ftq_options_set_float(o, name, (double)value);
  if (d->type != FTQ_OPTION_INT) return wrong_type(d, "int");
  FTQ_TRY(check_range(d, (double)value, text));
  o->v[i].i = value;
  o->v[i].is_set = 1;
  return FTQ_OK;
}

ftq_status ftq_options_set_float(ftq_options *o, const char *name, double value) {
  size_t i;
  const ftq_option_def *d;
  FTQ_TRY(check_opts(o));
  FTQ_TRY(lookup(name, &i, &d));
  if (d->type != FTQ_OPTION_FLOAT) return wrong_type(d, "float");
  char text[40];
  snprintf(text, sizeof text, "%.17g", value);
  if (!isfinite(value)) return ftq_error(FTQ_ERR_OPTION_RANGE, "option '%s' = %s is not finite", d->name, text);
  FTQ_TRY(check_range(d, value, text));
  o->v[i].f = value;
  o->v[i].is_set = 1;
  return FTQ_OK;
}

ftq_status ftq_options_set_bool(ftq_options *o, const char *name, int value) {
  size_t i;
  const ftq_option_def *d;
  FTQ_TRY(check_opts(o));
  FTQ_TRY(lookup(name, &i, &d));
  if (d->type != FTQ_OPTION_BOOL) return wrong_type(d, "bool");
  o->v[i].b = value != 0;
  o->v[i].is_set = 1;
  return FTQ_OK;
}

ftq_status ftq_options_set_string(ftq_options *o, const char *name, const char *value) {
  size_t i;
  const ftq_option_def *d;
  FTQ_TRY(check_opts(o));
  FTQ_TRY(lookup(name, &i, &d));
  if (d->type != FTQ_OPTION_STRING) return wrong_type(d, "string");
  if (!value) return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "option '%s': value must not be NULL", d->name);
  char *copy;
  FTQ_TRY(normalise_string(d, value, &copy));
  free(o->v[i].s);
  o->v[i].s = copy;
  o->v[i].is_set = 1;
  return FTQ_OK;
}

/* Parses text for an option of any type into the typed setters. */
static ftq_status parse_int(const ftq_option_def *d, const char *text, int64_t *out) {
  char *end;
  errno = 0;
  long long v = strtoll(text, &end, 10);
  if (end == text || *end != '\0' || errno == ERANGE)
    return ftq_error(FTQ_ERR_OPTION_TYPE, "option '%s': \"%s\" is not an integer", d->name, text);
  *out = v;
  return FTQ_OK;
}

static ftq_status parse_float(const ftq_option_def *d, const char *text, double *out) {
  char *end;
  errno = 0;
  double v = strtod(text, &end);
  if (end == text || *end != '\0' || errno == ERANGE)
    return ftq_error(FTQ_ERR_OPTION_TYPE, "option '%s': \"%s\" is not a number", d->name, text);
  *out = v;
  return FTQ_OK;
}

static ftq_status parse_bool(const ftq_option_def *d, const char *text, int *out) {
  static const char *yes[] = {"true", "1", "yes", "on"};
  static const char *no[] = {"false", "0", "no", "off"};
  for (int k = 0; k < 4; k++) {
    if (strcasecmp(text, yes[k]) == 0) return *out = 1, FTQ_OK;
    if (strcasecmp(text, no[k]) == 0) return *out = 0, FTQ_OK;
  }
  return ftq_error(FTQ_ERR_OPTION_TYPE, "option '%s': \"%s\" is not a boolean (true/false)", d->name, text);
}

ftq_status ftq_options_set_parse(ftq_options *o, const char *name, const char *text) {
  size_t i;
  const ftq_option_def *d;
  FTQ_TRY(check_opts(o));
  FTQ_TRY(lookup(name, &i, &d));
  if (!text) return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "option '%s': value must not be NULL", name);
  switch (d->type) {
    case FTQ_OPTION_INT: {
      int64_t v;
      FTQ_TRY(parse_int(d, text, &v));
      return ftq_options_set_int(o, name, v);
    }
    case FTQ_OPTION_FLOAT: {
      double v;
      FTQ_TRY(parse_float(d, text, &v));
      return ftq_options_set_float(o, name, v);
    }
    case FTQ_OPTION_BOOL: {
      int v;
      FTQ_TRY(parse_bool(d, text, &v));
      return ftq_options_set_bool(o, name, v);
    }
    case FTQ_OPTION_STRING: return ftq_options_set_string(o, name, text);
  }
  return ftq_error(FTQ_ERR_INTERNAL, "option '%s' has an invalid type", name);
}

ftq_status ftq_options_unset(ftq_options *o, const char *name) {
  size_t i;
  const ftq_option_def *d;
  FTQ_TRY(check_opts(o));
  FTQ_TRY(lookup(name, &i, &d));
  free(o->v[i].s);
  memset(&o->v[i], 0, sizeof o->v[i]);
  return FTQ_OK;
}

ftq_status ftq_options_is_set(const ftq_options *o, const char *name, int *is_set) {
  size_t i;
  const ftq_option_def *d;
  FTQ_CHECK_ARG(is_set, "ftq_options_is_set: is_set must not be NULL");
  FTQ_TRY(lookup(name, &i, &d));
  *is_set = o ? o->v[i].is_set : 0;
  return FTQ_OK;
}

ftq_status ftq_options_get_int(const ftq_options *o, const char *name, int64_t *value) {
  size_t i;
  const ftq_option_def *d;
  FTQ_CHECK_ARG(value, "ftq_options_get_int: value must not be NULL");
  FTQ_TRY(lookup(name, &i, &d));
  if (d->type != FTQ_OPTION_INT) return wrong_type(d, "int");
  if (o && o->v[i].is_set) return *value = o->v[i].i, FTQ_OK;
  return parse_int(d, d->def, value);
}

ftq_status ftq_options_get_float(const ftq_options *o, const char *name, double *value) {
  size_t i;
  const ftq_option_def *d;
  FTQ_CHECK_ARG(value, "ftq_options_get_float: value must not be NULL");
  FTQ_TRY(lookup(name, &i, &d));
  if (d->type != FTQ_OPTION_FLOAT) return wrong_type(d, "float");
  if (o && o->v[i].is_set) return *value = o->v[i].f, FTQ_OK;
  return parse_float(d, d->def, value);
}

ftq_status ftq_options_get_bool(const ftq_options *o, const char *name, int *value) {
  size_t i;
  const ftq_option_def *d;
  FTQ_CHECK_ARG(value, "ftq_options_get_bool: value must not be NULL");
  FTQ_TRY(lookup(name, &i, &d));
  if (d->type != FTQ_OPTION_BOOL) return wrong_type(d, "bool");
  if (o && o->v[i].is_set) return *value = o->v[i].b, FTQ_OK;
  return parse_bool(d, d->def, value);
}

ftq_status ftq_options_get_string(const ftq_options *o, const char *name, const char **value) {
  size_t i;
  const ftq_option_def *d;
  FTQ_CHECK_ARG(value, "ftq_options_get_string: value must not be NULL");
  FTQ_TRY(lookup(name, &i, &d));
  if (d->type != FTQ_OPTION_STRING) return wrong_type(d, "string");
  *value = (o && o->v[i].is_set) ? o->v[i].s : d->def;
  return FTQ_OK;
}

/* ---------------------------------------------------------------------- */
/* JSON                                                                     */

/* Applies one JSON value to `o` (a scratch copy during load). */
static ftq_status apply_json(ftq_options *o, const char *key, json_t *val) {
  size_t i;
  const ftq_option_def *d;
  FTQ_TRY(lookup(key, &i, &d));
  if (json_is_null(val)) return ftq_options_unset(o, key);
  switch (d->type) {
    case FTQ_OPTION_INT:
      if (json_is_integer(val)) return ftq_options_set_int(o, key, (int64_t)json_integer_value(val));
      if (json_is_real(val)) {
        double v = json_real_value(val);
        if (v == floor(v) && fabs(v) < 9.0e15) return ftq_options_set_int(o, key, (int64_t)v);
      }
      return wrong_type(d, "a non-integer JSON value");
    case FTQ_OPTION_FLOAT:
      if (json_is_number(val)) return ftq_options_set_float(o, key, json_number_value(val));
      return wrong_type(d, "a non-numeric JSON value");
    case FTQ_OPTION_BOOL:
      if (json_is_boolean(val)) return ftq_options_set_bool(o, key, json_is_true(val));
      return wrong_type(d, "a non-boolean JSON value");
    case FTQ_OPTION_STRING:
      if (json_is_string(val)) return ftq_options_set_string(o, key, json_string_value(val));
      /* PEFT writes e.g. "init_lora_weights": true for a setting that may also be a name */
      if (json_is_boolean(val) && d->choices && ftq_option_choice_ok(d->choices, "true", 4) &&
          ftq_option_choice_ok(d->choices, "false", 5))
        return ftq_options_set_string(o, key, json_is_true(val) ? "true" : "false");
      if (json_is_array(val) && (d->flags & FTQ_OPTF_LIST)) {
        size_t n = json_array_size(val), len = 1;
        for (size_t k = 0; k < n; k++) {
          json_t *it = json_array_get(val, k);
          if (!json_is_string(it))
            return ftq_error(FTQ_ERR_OPTION_TYPE, "option '%s': item %zu of the list is not a string", key, k);
          len += json_string_length(it) + 1;
        }
        char *joined = ftq_malloc(len, "option list");
        if (!joined) return FTQ_ERR_OUT_OF_MEMORY;
        joined[0] = '\0';
        for (size_t k = 0; k < n; k++) {
          if (k) strcat(joined, ",");
          strcat(joined, json_string_value(json_array_get(val, k)));
        }
        ftq_status st = ftq_options_set_string(o, key, joined);
        free(joined);
        return st;
      }
      return wrong_type(d, (d->flags & FTQ_OPTF_LIST) ? "a JSON value other than a string or list of strings"
                                                      : "a non-string JSON value");
  }
  return ftq_error(FTQ_ERR_INTERNAL, "option '%s' has an invalid type", key);
}

/* Validates and applies every key of `root` to a copy, then swaps it in. */
static ftq_status load_object(ftq_options *o, json_t *root, const char *where) {
  if (!json_is_object(root))
    return ftq_error(FTQ_ERR_FORMAT, "%s: options must be a JSON object", where);
  ftq_options *tmp;
  FTQ_TRY(ftq_options_copy(o, &tmp));
  const char *key;
  json_t *val;
  json_object_foreach(root, key, val) {
    ftq_status st = apply_json(tmp, key, val);
    if (st != FTQ_OK) {
      ftq_options_destroy(tmp);
      return ftq_error_context(st, "%s", where);
    }
  }
  /* swap contents */
  opt_value *old = o->v;
  o->v = tmp->v;
  tmp->v = old;
  ftq_options_destroy(tmp);
  return FTQ_OK;
}

ftq_status ftq_options_load_json(ftq_options *o, const char *text) {
  FTQ_TRY(check_opts(o));
  FTQ_CHECK_ARG(text, "ftq_options_load_json: text must not be NULL");
  json_error_t err;
  json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &err);
  if (!root)
    return ftq_error(FTQ_ERR_FORMAT, "options JSON: %s at line %d, column %d", err.text, err.line, err.column);
  ftq_status st = load_object(o, root, "options JSON");
  json_decref(root);
  return st;
}

ftq_status ftq_options_load_json_file(ftq_options *o, const char *path) {
  FTQ_TRY(check_opts(o));
  FTQ_CHECK_ARG(path, "ftq_options_load_json_file: path must not be NULL");
  json_error_t err;
  json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
  if (!root) {
    /* jansson reports open failures with line -1 */
    if (err.line < 0) return ftq_error(FTQ_ERR_IO, "cannot read options file '%s': %s", path, err.text);
    return ftq_error(FTQ_ERR_FORMAT, "options file '%s': %s at line %d, column %d", path, err.text, err.line,
                     err.column);
  }
  char where[1100];
  snprintf(where, sizeof where, "options file '%s'", path);
  ftq_status st = load_object(o, root, where);
  json_decref(root);
  return st;
}

ftq_status ftq_options_to_json(const ftq_options *o, int include_defaults, char **out) {
  FTQ_CHECK_ARG(out, "ftq_options_to_json: out must not be NULL");
  *out = NULL;
  json_t *root = json_object();
  if (!root) return ftq_error(FTQ_ERR_OUT_OF_MEMORY, "out of memory building options JSON");
  size_t n = registry_count();
  ftq_status st = FTQ_OK;
  for (size_t i = 0; i < n && st == FTQ_OK; i++) {
    const ftq_option_def *d = g_defs[i];
    int set = o && o->v[i].is_set;
    if (!set && !include_defaults) continue;
    json_t *v = NULL;
    switch (d->type) {
      case FTQ_OPTION_INT: {
        int64_t x;
        st = ftq_options_get_int(o, d->name, &x);
        v = json_integer((json_int_t)x);
        break;
      }
      case FTQ_OPTION_FLOAT: {
        double x;
        st = ftq_options_get_float(o, d->name, &x);
        v = json_real(x);
        break;
      }
      case FTQ_OPTION_BOOL: {
        int x;
        st = ftq_options_get_bool(o, d->name, &x);
        v = json_boolean(x);
        break;
      }
      case FTQ_OPTION_STRING: {
        const char *x;
        st = ftq_options_get_string(o, d->name, &x);
        v = json_string(x);
        break;
      }
    }
    if (st == FTQ_OK && (!v || json_object_set_new(root, d->name, v) != 0))
      st = ftq_error(FTQ_ERR_OUT_OF_MEMORY, "out of memory building options JSON");
  }
  if (st == FTQ_OK) {
    char *s = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (!s) st = ftq_error(FTQ_ERR_OUT_OF_MEMORY, "out of memory writing options JSON");
    else *out = s;  /* jansson allocates with malloc, so ftq_free() releases it */
  }
  json_decref(root);
  return st;
}

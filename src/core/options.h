/* Internal side of the option registry: how modules declare their options. */
#ifndef FTQ_CORE_OPTIONS_H
#define FTQ_CORE_OPTIONS_H

#include <math.h>
#include <stddef.h>

#include "libftq/ftq_options.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The string option holds a comma-separated list; JSON arrays are accepted. */
#define FTQ_OPTF_LIST 1u

/* One registered option. Defaults are written as text so a table reads like
 * documentation; a unit test checks every default parses, lies in range and
 * is one of the choices. */
typedef struct ftq_option_def {
  const char *name;
  const char *group;
  ftq_option_type type;
  const char *def;     /* default, as ftq_options_set_parse() would take it */
  double min, max;     /* inclusive bounds for int/float; +-INFINITY = none */
  const char *choices; /* "a|b|c" for restricted strings, else NULL */
  unsigned flags;      /* FTQ_OPTF_* */
  const char *doc;     /* one line */
} ftq_option_def;

#define FTQ_NO_MIN (-INFINITY)
#define FTQ_NO_MAX (INFINITY)

/* A module's table: `count` definitions. Tables are listed once, in
 * src/core/option_registry.c. */
typedef struct ftq_option_table {
  const ftq_option_def *defs;
  size_t count;
} ftq_option_table;

/* Defines a module's table `ftq_<name>_options` from an array of defs. */
#define FTQ_OPTION_TABLE(name, array) \
  const ftq_option_table ftq_##name##_options = {array, sizeof(array) / sizeof((array)[0])}

/* Registry access for library code. */
const ftq_option_def *ftq_option_def_at(size_t index);
const ftq_option_def *ftq_option_def_find(const char *name, size_t *index);

/* Checks that `item` is one of the '|'-separated `choices`. */
int ftq_option_choice_ok(const char *choices, const char *item, size_t item_len);

#ifdef __cplusplus
}
#endif

#endif /* FTQ_CORE_OPTIONS_H */

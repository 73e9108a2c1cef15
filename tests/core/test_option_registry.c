/* The library's real option registry: names unique and well-formed, every
 * default parses and lies in its range and choices, every option documented. */
#include <ctype.h>

#include "test_util.h"

int main(void) {
  size_t n = ftq_option_count();
  CHECK(n > 0);
  ftq_options *o;
  REQUIRE_OK(ftq_options_create(&o));
  for (size_t i = 0; i < n; i++) {
    const char *name = ftq_option_name(i);
    CHECK(name && *name);
    for (const char *p = name; *p; p++) CHECK_MSG(islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '_', "option name %s", name);
    size_t j;
    CHECK_OK(ftq_option_find(name, &j));
    CHECK_MSG(j == i, "option %s is registered twice", name);
    CHECK_MSG(ftq_option_doc(i) && strlen(ftq_option_doc(i)) > 5, "option %s lacks a description", name);
    CHECK(ftq_option_group(i) && *ftq_option_group(i));
    /* the default, set as text, is accepted (parses, in range, in choices) */
    CHECK_MSG(ftq_options_set_parse(o, name, ftq_option_default(i)) == FTQ_OK, "default of %s: %s", name, ftq_last_error());
    int t = ftq_option_type_of(i);
    CHECK(t >= FTQ_OPTION_INT && t <= FTQ_OPTION_STRING);
    if (t == FTQ_OPTION_INT || t == FTQ_OPTION_FLOAT) {
      double lo, hi;
      CHECK_OK(ftq_option_range(i, &lo, &hi));
      CHECK_MSG(lo <= hi, "range of %s", name);
    }
    if (ftq_option_choices(i)) CHECK(t == FTQ_OPTION_STRING);
  }
  ftq_options_destroy(o);
  return test_finish("test_option_registry");
}

/* The exact-match evaluator of the example data set (the Python twin is
 * examples/data/evaluate.py): answers compare equal after trimming ASCII
 * white space at both ends. */
#include <stddef.h>
#include <string.h>

#include "libftq/ftq_dataset.h"

static int ascii_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

static void trim(const char **s, size_t *n) {
  while (*n && ascii_space(**s)) (*s)++, (*n)--;
  while (*n && ascii_space((*s)[*n - 1])) (*n)--;
}

int ftq_dataset_exact_match(const char *pred, size_t pl, const char *ref, size_t rl) {
  if ((!pred && pl) || (!ref && rl)) return 0;
  if (!pred) pred = "";
  if (!ref) ref = "";
  trim(&pred, &pl);
  trim(&ref, &rl);
  return pl == rl && memcmp(pred, ref, pl) == 0;
}

/* Helpers of the model-file tests: finding the real SmolLM2 model (skip
 * when it is missing), reading reference files, and comparing a tensor with
 * the per-tensor statistics tests/ref/io/make_refs.py wrote (sum and sum of
 * squares in float64, and sampled values that must match exactly). */
#ifndef FTQ_MODEL_TEST_UTIL_H
#define FTQ_MODEL_TEST_UTIL_H

#include <dirent.h>
#include <jansson.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_util.h"

#define SMOLLM2_FILE "SmolLM2-135M-Instruct.Q4_1.gguf"

/* Path of the SmolLM2 GGUF: $FTQ_SMOLLM2_GGUF, else
 * ${FTQ_CACHE:-$HOME/.cache/libftq}/SmolLM2-135M-Instruct.Q4_1.gguf (where
 * scripts/get-model.sh puts it). NULL when the file is not there. */
static inline const char *test_smollm2_path(void) {
  static char buf[4096];
  struct stat st;
  const char *env = getenv("FTQ_SMOLLM2_GGUF");
  if (env && *env) return stat(env, &st) == 0 ? env : NULL;
  const char *cache = getenv("FTQ_CACHE");
  const char *home = getenv("HOME");
  if (cache && *cache) snprintf(buf, sizeof buf, "%s/%s", cache, SMOLLM2_FILE);
  else if (home && *home) snprintf(buf, sizeof buf, "%s/.cache/libftq/%s", home, SMOLLM2_FILE);
  else return NULL;
  return stat(buf, &st) == 0 ? buf : NULL;
}

/* Model tests skip (exit 77) when the model file is missing, unless
 * FTQ_REQUIRE_MODEL is set (CI sets it after fetching the model, so a
 * broken fetch fails instead of skipping). Returns the exit code. */
static inline int test_model_missing(const char *name, const char *what) {
  const char *req = getenv("FTQ_REQUIRE_MODEL");
  if (req && *req && strcmp(req, "0") != 0) {
    fprintf(stderr, "%s: FAILED: %s is required (FTQ_REQUIRE_MODEL) but missing; run scripts/get-model.sh\n", name, what);
    return 1;
  }
  printf("%s: SKIP: %s not found (run scripts/get-model.sh, or set FTQ_SMOLLM2_GGUF)\n", name, what);
  return TEST_SKIP_CODE;
}

static inline json_t *test_load_json(const char *path) {
  json_error_t err;
  json_t *j = json_load_file(path, 0, &err);
  if (!j) {
    fprintf(stderr, "cannot read %s: %s (line %d)\n", path, err.text, err.line);
    exit(1);
  }
  return j;
}

/* Reads a whole file (NUL-terminated); exits on failure (fixtures must exist). */
static inline void *test_read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "cannot open %s\n", path);
    exit(1);
  }
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  void *buf = malloc((size_t)n + 1);
  if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
    fprintf(stderr, "cannot read %s\n", path);
    exit(1);
  }
  fclose(f);
  ((char *)buf)[n] = '\0'; /* text files can be used as strings */
  if (len) *len = (size_t)n;
  return buf;
}

/* Compares n float values with the reference entry `ref` (an object with
 * "shape", "sum", "sumsq", "samples"). Returns the number of failures. */
static inline int test_check_stats(const char *name, const float *x, size_t n, const json_t *ref) {
  int fails = 0;
  if (!ref) {
    fprintf(stderr, "%s: no reference entry\n", name);
    return 1;
  }
  size_t want_n = 1;
  json_t *shape = json_object_get(ref, "shape");
  for (size_t i = 0; i < json_array_size(shape); i++) want_n *= (size_t)json_integer_value(json_array_get(shape, i));
  if (want_n != n) {
    fprintf(stderr, "%s: %zu elements, reference has %zu\n", name, n, want_n);
    return 1;
  }
  double sum = 0, sumsq = 0;
  for (size_t i = 0; i < n; i++) {
    sum += (double)x[i];
    sumsq += (double)x[i] * (double)x[i];
  }
  double rs = json_number_value(json_object_get(ref, "sum")), rq = json_number_value(json_object_get(ref, "sumsq"));
  /* same float32 values summed in another order: only rounding differs */
  if (fabs(sum - rs) > 1e-9 * (fabs(rs) + sqrt(rq) + 1e-30) * 1e3 || fabs(sumsq - rq) > 1e-9 * rq + 1e-30) {
    fprintf(stderr, "%s: sum %.17g / sumsq %.17g, reference %.17g / %.17g\n", name, sum, sumsq, rs, rq);
    fails++;
  }
  json_t *samples = json_object_get(ref, "samples");
  for (size_t k = 0; k < json_array_size(samples); k++) {
    json_t *s = json_array_get(samples, k);
    size_t idx = (size_t)json_integer_value(json_array_get(s, 0));
    float want = (float)json_number_value(json_array_get(s, 1));
    if (idx >= n || memcmp(&x[idx], &want, sizeof want) != 0) {
      fprintf(stderr, "%s: element %zu is %.9g, reference %.9g\n", name, idx, idx < n ? x[idx] : NAN, want);
      fails++;
    }
  }
  return fails;
}

static inline void test_write_text(const char *path, const char *text) {
  FILE *fp = fopen(path, "w");
  if (!fp) {
    fprintf(stderr, "cannot write %s\n", path);
    exit(1);
  }
  fputs(text, fp);
  fclose(fp);
}

/* Removes a scratch folder the test made (recursively). */
static inline void test_rm_rf(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  char p[4096];
  while ((e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    if (strlen(dir) + strlen(e->d_name) + 2 > sizeof p) continue;
    memcpy(p, dir, strlen(dir));
    p[strlen(dir)] = '/';
    strcpy(p + strlen(dir) + 1, e->d_name);
    struct stat st;
    if (stat(p, &st) == 0 && S_ISDIR(st.st_mode)) test_rm_rf(p);
    else remove(p);
  }
  closedir(d);
  rmdir(dir);
}

#endif /* FTQ_MODEL_TEST_UTIL_H */

/* Option sets: typed set/get, ranges, choices, lists, parsing, JSON.
 * This test links its own registry (test options of every type) in place of
 * src/core/option_registry.c, so the mechanism is covered independently of
 * which options the library registers; test_option_registry checks those. */
#include <unistd.h>

#include "core/options.h"
#include "test_util.h"

static const ftq_option_def test_defs[] = {
    {"t_int", "test", FTQ_OPTION_INT, "64", 1, 4096, NULL, 0, "an int in [1, 4096]"},
    {"t_float", "test", FTQ_OPTION_FLOAT, "0.0002", 0, 1, NULL, 0, "a float in [0, 1]"},
    {"t_free", "test", FTQ_OPTION_FLOAT, "-1.5", FTQ_NO_MIN, FTQ_NO_MAX, NULL, 0, "an unbounded float"},
    {"t_bool", "test", FTQ_OPTION_BOOL, "true", 0, 0, NULL, 0, "a bool"},
    {"t_choice", "test", FTQ_OPTION_STRING, "nf4", 0, 0, "nf4|fp4|int8", 0, "a restricted string"},
    {"t_text", "test", FTQ_OPTION_STRING, "", 0, 0, NULL, 0, "any text"},
    {"t_list", "test", FTQ_OPTION_STRING, "q_proj,v_proj", 0, 0, "q_proj|k_proj|v_proj|o_proj", FTQ_OPTF_LIST,
     "a list of choices"},
};
FTQ_OPTION_TABLE(test, test_defs);
extern const ftq_option_table ftq_context_options;
const ftq_option_table *const ftq_option_tables[] = {&ftq_test_options, &ftq_context_options};
const size_t ftq_option_table_count = 2;

static void test_registry(void) {
  CHECK(ftq_option_count() == 7 + ftq_context_options.count);
  size_t i = 99;
  CHECK_OK(ftq_option_find("t_float", &i));
  CHECK(i == 1);
  CHECK(strcmp(ftq_option_name(i), "t_float") == 0);
  CHECK(ftq_option_type_of(i) == FTQ_OPTION_FLOAT);
  CHECK(strcmp(ftq_option_group(i), "test") == 0);
  CHECK(strcmp(ftq_option_default(i), "0.0002") == 0);
  CHECK(strcmp(ftq_option_doc(i), "a float in [0, 1]") == 0);
  double lo, hi;
  CHECK_OK(ftq_option_range(i, &lo, &hi));
  CHECK(lo == 0 && hi == 1);
  CHECK_OK(ftq_option_find("t_free", &i));
  CHECK_OK(ftq_option_range(i, &lo, &hi));
  CHECK(isinf(lo) && lo < 0 && isinf(hi) && hi > 0);
  CHECK_OK(ftq_option_find("t_bool", &i));
  CHECK_STATUS(ftq_option_range(i, &lo, &hi), FTQ_ERR_OPTION_TYPE);
  CHECK_STATUS(ftq_option_range(1000, &lo, &hi), FTQ_ERR_NOT_FOUND);
  CHECK_OK(ftq_option_find("t_choice", &i));
  CHECK(strcmp(ftq_option_choices(i), "nf4|fp4|int8") == 0);
  CHECK(ftq_option_is_list(i) == 0);
  CHECK_OK(ftq_option_find("t_list", &i));
  CHECK(ftq_option_is_list(i) == 1);
  CHECK(ftq_option_choices(0) == NULL);
  CHECK_STATUS(ftq_option_find("no_such", &i), FTQ_ERR_UNKNOWN_OPTION);
  CHECK_ERROR_MENTIONS("no_such");
  CHECK(ftq_option_name(1000) == NULL && ftq_option_type_of(1000) == -1 && ftq_option_doc(1000) == NULL);
  CHECK(ftq_option_group(1000) == NULL && ftq_option_default(1000) == NULL && ftq_option_is_list(1000) == 0);
  CHECK_STATUS(ftq_option_find(NULL, &i), FTQ_ERR_INVALID_ARGUMENT);
}

static void test_typed(void) {
  ftq_options *o;
  REQUIRE_OK(ftq_options_create(&o));
  int64_t iv;
  double fv;
  int bv, set;
  const char *sv;

  /* defaults (also with a NULL set) */
  CHECK_OK(ftq_options_get_int(o, "t_int", &iv));
  CHECK(iv == 64);
  CHECK_OK(ftq_options_get_int(NULL, "t_int", &iv));
  CHECK(iv == 64);
  CHECK_OK(ftq_options_get_float(o, "t_float", &fv));
  CHECK(fv == 0.0002);
  CHECK_OK(ftq_options_get_bool(o, "t_bool", &bv));
  CHECK(bv == 1);
  CHECK_OK(ftq_options_get_string(o, "t_choice", &sv));
  CHECK(strcmp(sv, "nf4") == 0);
  CHECK_OK(ftq_options_get_string(o, "t_text", &sv));
  CHECK(strcmp(sv, "") == 0);
  CHECK_OK(ftq_options_is_set(o, "t_int", &set));
  CHECK(set == 0);

  /* set and read back */
  CHECK_OK(ftq_options_set_int(o, "t_int", 4096));
  CHECK_OK(ftq_options_get_int(o, "t_int", &iv));
  CHECK(iv == 4096);
  CHECK_OK(ftq_options_is_set(o, "t_int", &set));
  CHECK(set == 1);
  CHECK_OK(ftq_options_set_float(o, "t_float", 1.0));
  CHECK_OK(ftq_options_set_int(o, "t_float", 0)); /* an int for a float option */
  CHECK_OK(ftq_options_get_float(o, "t_float", &fv));
  CHECK(fv == 0.0);
  CHECK_OK(ftq_options_set_bool(o, "t_bool", 0));
  CHECK_OK(ftq_options_get_bool(o, "t_bool", &bv));
  CHECK(bv == 0);
  CHECK_OK(ftq_options_set_bool(o, "t_bool", 42));
  CHECK_OK(ftq_options_get_bool(o, "t_bool", &bv));
  CHECK(bv == 1);
  CHECK_OK(ftq_options_set_string(o, "t_choice", "fp4"));
  CHECK_OK(ftq_options_get_string(o, "t_choice", &sv));
  CHECK(strcmp(sv, "fp4") == 0);

  /* errors leave the value unchanged and name the option */
  CHECK_STATUS(ftq_options_set_int(o, "t_int", 0), FTQ_ERR_OPTION_RANGE);
  CHECK_ERROR_MENTIONS("t_int");
  CHECK_ERROR_MENTIONS("[1, 4096]");
  CHECK_STATUS(ftq_options_set_int(o, "t_int", 4097), FTQ_ERR_OPTION_RANGE);
  CHECK_OK(ftq_options_get_int(o, "t_int", &iv));
  CHECK(iv == 4096);
  CHECK_STATUS(ftq_options_set_float(o, "t_float", 1.5), FTQ_ERR_OPTION_RANGE);
  CHECK_STATUS(ftq_options_set_float(o, "t_float", NAN), FTQ_ERR_OPTION_RANGE);
  CHECK_STATUS(ftq_options_set_float(o, "t_free", INFINITY), FTQ_ERR_OPTION_RANGE);
  CHECK_OK(ftq_options_set_float(o, "t_free", -1e300));
  CHECK_STATUS(ftq_options_set_float(o, "t_int", 3.0), FTQ_ERR_OPTION_TYPE);
  CHECK_ERROR_MENTIONS("t_int");
  CHECK_STATUS(ftq_options_set_string(o, "t_int", "3"), FTQ_ERR_OPTION_TYPE);
  CHECK_STATUS(ftq_options_set_bool(o, "t_text", 1), FTQ_ERR_OPTION_TYPE);
  CHECK_STATUS(ftq_options_set_int(o, "t_bool", 1), FTQ_ERR_OPTION_TYPE);
  CHECK_STATUS(ftq_options_get_int(o, "t_float", &iv), FTQ_ERR_OPTION_TYPE);
  CHECK_STATUS(ftq_options_get_float(o, "t_int", &fv), FTQ_ERR_OPTION_TYPE);
  CHECK_STATUS(ftq_options_get_string(o, "t_bool", &sv), FTQ_ERR_OPTION_TYPE);
  CHECK_STATUS(ftq_options_get_bool(o, "t_text", &bv), FTQ_ERR_OPTION_TYPE);
  CHECK_STATUS(ftq_options_set_string(o, "t_choice", "nf5"), FTQ_ERR_OPTION_RANGE);
  CHECK_ERROR_MENTIONS("nf4|fp4|int8");
  CHECK_OK(ftq_options_get_string(o, "t_choice", &sv));
  CHECK(strcmp(sv, "fp4") == 0);
  CHECK_STATUS(ftq_options_set_string(o, "t_choice", NULL), FTQ_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(ftq_options_set_int(o, "nope", 1), FTQ_ERR_UNKNOWN_OPTION);
  CHECK_ERROR_MENTIONS("'nope'");
  CHECK_STATUS(ftq_options_set_int(NULL, "t_int", 1), FTQ_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(ftq_options_get_int(o, "t_int", NULL), FTQ_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(ftq_options_unset(o, "nope"), FTQ_ERR_UNKNOWN_OPTION);
  CHECK_STATUS(ftq_options_is_set(o, "nope", &set), FTQ_ERR_UNKNOWN_OPTION);

  /* lists: trimmed, empty items dropped, every item checked */
  CHECK_OK(ftq_options_set_string(o, "t_list", " q_proj , k_proj,,o_proj "));
  CHECK_OK(ftq_options_get_string(o, "t_list", &sv));
  CHECK(strcmp(sv, "q_proj,k_proj,o_proj") == 0);
  CHECK_STATUS(ftq_options_set_string(o, "t_list", "q_proj,up_proj"), FTQ_ERR_OPTION_RANGE);
  CHECK_ERROR_MENTIONS("up_proj");
  CHECK_OK(ftq_options_get_string(o, "t_list", &sv));
  CHECK(strcmp(sv, "q_proj,k_proj,o_proj") == 0);

  /* parse from text */
  CHECK_OK(ftq_options_set_parse(o, "t_int", "128"));
  CHECK_OK(ftq_options_get_int(o, "t_int", &iv));
  CHECK(iv == 128);
  CHECK_STATUS(ftq_options_set_parse(o, "t_int", "12x"), FTQ_ERR_OPTION_TYPE);
  CHECK_STATUS(ftq_options_set_parse(o, "t_int", ""), FTQ_ERR_OPTION_TYPE);
  CHECK_STATUS(ftq_options_set_parse(o, "t_int", "99999999999999999999999"), FTQ_ERR_OPTION_TYPE);
  CHECK_OK(ftq_options_set_parse(o, "t_float", "5e-5"));
  CHECK_OK(ftq_options_get_float(o, "t_float", &fv));
  CHECK(fv == 5e-5);
  CHECK_STATUS(ftq_options_set_parse(o, "t_float", "fast"), FTQ_ERR_OPTION_TYPE);
  const char *yes[] = {"true", "TRUE", "1", "yes", "on"}, *no[] = {"false", "0", "No", "off"};
  for (int k = 0; k < 5; k++) {
    CHECK_OK(ftq_options_set_parse(o, "t_bool", yes[k]));
    CHECK_OK(ftq_options_get_bool(o, "t_bool", &bv));
    CHECK(bv == 1);
  }
  for (int k = 0; k < 4; k++) {
    CHECK_OK(ftq_options_set_parse(o, "t_bool", no[k]));
    CHECK_OK(ftq_options_get_bool(o, "t_bool", &bv));
    CHECK(bv == 0);
  }
  CHECK_STATUS(ftq_options_set_parse(o, "t_bool", "maybe"), FTQ_ERR_OPTION_TYPE);
  CHECK_OK(ftq_options_set_parse(o, "t_text", "hello world"));

  /* copy is independent; unset returns to the default */
  ftq_options *c;
  REQUIRE_OK(ftq_options_copy(o, &c));
  CHECK_OK(ftq_options_set_string(o, "t_text", "changed"));
  CHECK_OK(ftq_options_get_string(c, "t_text", &sv));
  CHECK(strcmp(sv, "hello world") == 0);
  CHECK_OK(ftq_options_unset(c, "t_int"));
  CHECK_OK(ftq_options_get_int(c, "t_int", &iv));
  CHECK(iv == 64);
  CHECK_OK(ftq_options_is_set(c, "t_int", &set));
  CHECK(set == 0);
  ftq_options_destroy(c);
  ftq_options *e;
  REQUIRE_OK(ftq_options_copy(NULL, &e));
  ftq_options_destroy(e);
  ftq_options_destroy(o);
  ftq_options_destroy(NULL);
}

static void test_json(void) {
  ftq_options *o;
  REQUIRE_OK(ftq_options_create(&o));
  int64_t iv;
  double fv;
  int bv, set;
  const char *sv;
  CHECK_OK(ftq_options_load_json(o, "{\"t_int\": 16, \"t_float\": 1, \"t_bool\": false, \"t_choice\": \"int8\","
                                    " \"t_list\": [\"v_proj\", \"o_proj\"], \"t_free\": 2.5e3, \"num_threads\": 3.0}"));
  CHECK_OK(ftq_options_get_int(o, "t_int", &iv));
  CHECK(iv == 16);
  CHECK_OK(ftq_options_get_float(o, "t_float", &fv));
  CHECK(fv == 1.0);
  CHECK_OK(ftq_options_get_bool(o, "t_bool", &bv));
  CHECK(bv == 0);
  CHECK_OK(ftq_options_get_string(o, "t_list", &sv));
  CHECK(strcmp(sv, "v_proj,o_proj") == 0);
  CHECK_OK(ftq_options_get_int(o, "num_threads", &iv));
  CHECK(iv == 3);

  /* all-or-nothing: a bad key leaves everything as it was */
  CHECK_STATUS(ftq_options_load_json(o, "{\"t_int\": 32, \"bogus\": 1}"), FTQ_ERR_UNKNOWN_OPTION);
  CHECK_ERROR_MENTIONS("bogus");
  CHECK_OK(ftq_options_get_int(o, "t_int", &iv));
  CHECK(iv == 16);
  CHECK_STATUS(ftq_options_load_json(o, "{\"t_int\": 32, \"t_float\": 7}"), FTQ_ERR_OPTION_RANGE);
  CHECK_OK(ftq_options_get_int(o, "t_int", &iv));
  CHECK(iv == 16);
  CHECK_STATUS(ftq_options_load_json(o, "{\"t_int\": 1.5}"), FTQ_ERR_OPTION_TYPE);
  CHECK_STATUS(ftq_options_load_json(o, "{\"t_int\": \"16\"}"), FTQ_ERR_OPTION_TYPE);
  CHECK_STATUS(ftq_options_load_json(o, "{\"t_bool\": 1}"), FTQ_ERR_OPTION_TYPE);
  CHECK_STATUS(ftq_options_load_json(o, "{\"t_choice\": [\"nf4\"]}"), FTQ_ERR_OPTION_TYPE);
  CHECK_STATUS(ftq_options_load_json(o, "{\"t_list\": [\"q_proj\", 3]}"), FTQ_ERR_OPTION_TYPE);
  CHECK_STATUS(ftq_options_load_json(o, "[1, 2]"), FTQ_ERR_FORMAT);
  CHECK_STATUS(ftq_options_load_json(o, "{\"t_int\": 1, \"t_int\": 2}"), FTQ_ERR_FORMAT);
  CHECK_STATUS(ftq_options_load_json(o, "{\"t_int\": 16,\n \"t_float\": }"), FTQ_ERR_FORMAT);
  CHECK_ERROR_MENTIONS("line 2");
  CHECK_STATUS(ftq_options_load_json(o, NULL), FTQ_ERR_INVALID_ARGUMENT);
  /* null unsets */
  CHECK_OK(ftq_options_load_json(o, "{\"t_int\": null}"));
  CHECK_OK(ftq_options_is_set(o, "t_int", &set));
  CHECK(set == 0);

  /* to_json, then load it back into a fresh set: same values */
  char *text = NULL;
  CHECK_OK(ftq_options_to_json(o, 0, &text));
  CHECK(text && strstr(text, "\"t_choice\": \"int8\"") && !strstr(text, "\"t_int\""));
  ftq_options *back;
  REQUIRE_OK(ftq_options_create(&back));
  CHECK_OK(ftq_options_load_json(back, text));
  CHECK_OK(ftq_options_get_float(back, "t_free", &fv));
  CHECK(fv == 2500.0);
  CHECK_OK(ftq_options_get_string(back, "t_list", &sv));
  CHECK(strcmp(sv, "v_proj,o_proj") == 0);
  ftq_free(text);
  CHECK_OK(ftq_options_to_json(NULL, 1, &text));
  CHECK(text && strstr(text, "\"t_int\": 64") && strstr(text, "\"num_threads\": 0"));
  ftq_free(text);
  ftq_options_destroy(back);

  /* files */
  char path[] = "/tmp/ftq_opts_XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  const char *body = "{\n  \"t_int\": 8,\n  \"t_text\": \"from file\"\n}\n";
  CHECK(write(fd, body, strlen(body)) == (ssize_t)strlen(body));
  close(fd);
  CHECK_OK(ftq_options_load_json_file(o, path));
  CHECK_OK(ftq_options_get_string(o, "t_text", &sv));
  CHECK(strcmp(sv, "from file") == 0);
  FILE *f = fopen(path, "w");
  fputs("{\n  \"t_int\": 8,\n  \"t_nope\": 1\n}\n", f);
  fclose(f);
  CHECK_STATUS(ftq_options_load_json_file(o, path), FTQ_ERR_UNKNOWN_OPTION);
  CHECK_ERROR_MENTIONS(path);
  CHECK_ERROR_MENTIONS("t_nope");
  f = fopen(path, "w");
  fputs("{\n  \"t_int\": 8,\n  oops\n}\n", f);
  fclose(f);
  CHECK_STATUS(ftq_options_load_json_file(o, path), FTQ_ERR_FORMAT);
  CHECK_ERROR_MENTIONS(path);
  CHECK_ERROR_MENTIONS("line 3");
  unlink(path);
  CHECK_STATUS(ftq_options_load_json_file(o, "/nonexistent/opts.json"), FTQ_ERR_IO);
  CHECK_ERROR_MENTIONS("/nonexistent/opts.json");
  ftq_options_destroy(o);
}

int main(void) {
  test_registry();
  test_typed();
  test_json();
  return test_finish("test_options");
}

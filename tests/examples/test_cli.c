/* The examples' command-line parser: library options as flags, program
 * flags, --config with command-line override, generated help, errors. */
#include <unistd.h>

#include "cli.h"
#include "test_util.h"

static const char *model = "default-model", *verbose = NULL;
static const ftq_cli_flag flags[] = {
    {"model", "PATH", "model to load", &model},
    {"verbose", NULL, "say more", &verbose},
};
static const char *const groups[] = {"optim", "context", NULL};
static ftq_cli cli = {"prog", "A test program.", groups, flags, 2, NULL};

static int parse(ftq_options *o, int argc, const char **argv) {
  return ftq_cli_parse(&cli, argc, (char **)argv, o);
}

int main(void) {
  ftq_options *o;
  REQUIRE_OK(ftq_options_create(&o));
  const char *a1[] = {"prog", "--model", "m.gguf", "--learning_rate", "2e-4", "--max_grad_norm=0.3",
                      "--lr_scheduler_type", "cosine", "--verbose", "--num_threads", "3"};
  CHECK(parse(o, 11, a1) == 0);
  CHECK(strcmp(model, "m.gguf") == 0 && verbose && strcmp(verbose, "1") == 0);
  double f;
  int64_t i;
  const char *s;
  CHECK_OK(ftq_options_get_float(o, "learning_rate", &f));
  CHECK(f == 2e-4);
  CHECK_OK(ftq_options_get_float(o, "max_grad_norm", &f));
  CHECK(f == 0.3);
  CHECK_OK(ftq_options_get_string(o, "lr_scheduler_type", &s));
  CHECK(strcmp(s, "cosine") == 0);
  CHECK_OK(ftq_options_get_int(o, "num_threads", &i));
  CHECK(i == 3);

  /* --config first, command line wins wherever it appears */
  char path[] = "/tmp/ftq_cli_XXXXXX";
  int fd = mkstemp(path);
  const char *json = "{\"learning_rate\": 1e-3, \"weight_decay\": 0.001}";
  CHECK(write(fd, json, strlen(json)) == (ssize_t)strlen(json));
  close(fd);
  const char *a2[] = {"prog", "--learning_rate", "7e-5", "--config", path};
  CHECK(parse(o, 5, a2) == 0);
  CHECK_OK(ftq_options_get_float(o, "learning_rate", &f));
  CHECK(f == 7e-5);
  CHECK_OK(ftq_options_get_float(o, "weight_decay", &f));
  CHECK(f == 0.001);
  unlink(path);

  /* usage errors */
  const char *bad1[] = {"prog", "--no_such_option", "1"};
  CHECK(parse(o, 3, bad1) == 2);
  const char *bad2[] = {"prog", "--learning_rate", "fast"};
  CHECK(parse(o, 3, bad2) == 2);
  const char *bad3[] = {"prog", "--model"};
  CHECK(parse(o, 2, bad3) == 2);
  const char *bad4[] = {"prog", "stray"};
  CHECK(parse(o, 2, bad4) == 2);
  const char *bad5[] = {"prog", "--config", "/nonexistent.json"};
  CHECK(parse(o, 3, bad5) == 2);
  const char *bad6[] = {"prog", "--cuda_workspace_mb", "-5"};
  CHECK(parse(o, 3, bad6) == 2);

  /* help lists the program's groups only, with defaults (the program's own
   * where it sets one) and ranges */
  ftq_options *defs;
  REQUIRE_OK(ftq_options_create(&defs));
  REQUIRE_OK(ftq_options_set_float(defs, "weight_decay", 0.001));
  cli.defaults = defs;
  char *buf = NULL;
  size_t len = 0;
  FILE *mem = open_memstream(&buf, &len);
  ftq_cli_help(&cli, mem);
  fclose(mem);
  CHECK(strstr(buf, "--learning_rate FLOAT") && strstr(buf, "default 5e-05"));
  CHECK(strstr(buf, "--model PATH") && strstr(buf, "(default m.gguf)"));
  CHECK(strstr(buf, "one of linear|cosine|constant|constant_with_warmup"));
  CHECK(strstr(buf, "optim options:") && strstr(buf, "context options:"));
  CHECK(strstr(buf, "decoupled weight decay (all LoRA weights) (default 0.001"));
  free(buf);
  ftq_options_destroy(defs);
  ftq_options_destroy(o);
  return test_finish("test_cli");
}

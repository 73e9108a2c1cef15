/* Command-line handling for the example programs (see cli.h). */
#include "cli.h"

#include <math.h>
#include <string.h>

static int in_groups(const ftq_cli *cli, const char *group) {
  if (!cli->groups) return 1;
  for (const char *const *g = cli->groups; *g; g++)
    if (strcmp(*g, group) == 0) return 1;
  return 0;
}

static const ftq_cli_flag *find_flag(const ftq_cli *cli, const char *name, size_t len) {
  for (size_t i = 0; i < cli->n_flags; i++)
    if (strlen(cli->flags[i].name) == len && strncmp(cli->flags[i].name, name, len) == 0) return &cli->flags[i];
  return NULL;
}

/* The default --help shows: the program's own when it sets one, else the
 * registry's. */
static const char *default_text(const ftq_cli *cli, size_t i, char *buf, size_t len) {
  const char *name = ftq_option_name(i);
  int set = 0;
  if (!cli->defaults || ftq_options_is_set(cli->defaults, name, &set) != FTQ_OK || !set) return ftq_option_default(i);
  int64_t iv;
  double fv;
  int bv;
  const char *sv;
  switch (ftq_option_type_of(i)) {
    case FTQ_OPTION_INT: ftq_options_get_int(cli->defaults, name, &iv), snprintf(buf, len, "%lld", (long long)iv); break;
    case FTQ_OPTION_FLOAT: ftq_options_get_float(cli->defaults, name, &fv), snprintf(buf, len, "%g", fv); break;
    case FTQ_OPTION_BOOL: ftq_options_get_bool(cli->defaults, name, &bv), snprintf(buf, len, "%s", bv ? "true" : "false"); break;
    default: ftq_options_get_string(cli->defaults, name, &sv), snprintf(buf, len, "%s", sv); break;
  }
  return buf;
}

void ftq_cli_help(const ftq_cli *cli, FILE *out) {
  static const char *types[] = {"INT", "FLOAT", "BOOL", "TEXT"};
  fprintf(out, "usage: %s [flags] [--config FILE.json] [--<option> VALUE ...]\n\n%s\n\n", cli->prog, cli->summary);
  fprintf(out, "program flags:\n");
  fprintf(out, "  --config FILE.json\n      options as a JSON object (flags given on the command line override it)\n");
  for (size_t i = 0; i < cli->n_flags; i++) {
    const ftq_cli_flag *f = &cli->flags[i];
    fprintf(out, "  --%s%s%s\n      %s%s%s%s\n", f->name, f->metavar ? " " : "", f->metavar ? f->metavar : "", f->doc,
            f->value && *f->value && f->metavar ? " (default " : "", f->value && *f->value && f->metavar ? *f->value : "",
            f->value && *f->value && f->metavar ? ")" : "");
  }
  fprintf(out, "  --help\n      this text\n");
  const char *group = NULL;
  for (size_t i = 0; i < ftq_option_count(); i++) {
    if (!in_groups(cli, ftq_option_group(i))) continue;
    if (!group || strcmp(group, ftq_option_group(i)) != 0) {
      group = ftq_option_group(i);
      fprintf(out, "\n%s options:\n", group);
    }
    int t = ftq_option_type_of(i);
    char extra[160] = "";
    double lo, hi;
    if (ftq_option_choices(i))
      snprintf(extra, sizeof extra, "; one of %s%s", ftq_option_choices(i), ftq_option_is_list(i) ? " (comma-separated list)" : "");
    else if (ftq_option_range(i, &lo, &hi) == FTQ_OK && !(isinf(lo) && isinf(hi)))
      snprintf(extra, sizeof extra, "; range [%g, %g]", lo, hi);
    char dbuf[128];
    const char *def = default_text(cli, i, dbuf, sizeof dbuf);
    fprintf(out, "  --%s %s\n      %s (default %s%s)\n", ftq_option_name(i), types[t], ftq_option_doc(i),
            *def ? def : "\"\"", extra);
  }
  ftq_clear_error();
}

/* Splits "--name=value" / "--name value"; returns the value or NULL. */
static const char *take_value(int argc, char **argv, int *i, const char *eq) {
  if (eq) return eq + 1;
  if (*i + 1 < argc) return argv[++*i];
  return NULL;
}

int ftq_cli_parse(const ftq_cli *cli, int argc, char **argv, ftq_options *opts) {
  /* pass 1: --help and --config, so the command line overrides the file */
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      ftq_cli_help(cli, stdout);
      return 1;
    }
    if (strncmp(argv[i], "--config", 8) == 0 && (argv[i][8] == '\0' || argv[i][8] == '=')) {
      const char *path = take_value(argc, argv, &i, argv[i][8] == '=' ? argv[i] + 8 : NULL);
      if (!path) {
        fprintf(stderr, "%s: --config needs a file\n", cli->prog);
        return 2;
      }
      if (ftq_options_load_json_file(opts, path) != FTQ_OK) {
        fprintf(stderr, "%s: %s\n", cli->prog, ftq_last_error());
        return 2;
      }
    }
  }
  /* pass 2: everything else, in order */
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    if (strncmp(arg, "--", 2) != 0) {
      fprintf(stderr, "%s: unexpected argument '%s' (flags start with --; see --help)\n", cli->prog, arg);
      return 2;
    }
    const char *name = arg + 2, *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    if (len == 6 && strncmp(name, "config", 6) == 0) {
      if (!eq) i++;
      continue;
    }
    const ftq_cli_flag *f = find_flag(cli, name, len);
    if (f) {
      const char *v = f->metavar ? take_value(argc, argv, &i, eq) : (eq ? eq + 1 : "1");
      if (!v) {
        fprintf(stderr, "%s: --%s needs a value (%s)\n", cli->prog, f->name, f->metavar);
        return 2;
      }
      if (f->value) *f->value = v;
      continue;
    }
    char oname[128];
    if (len >= sizeof oname) len = sizeof oname - 1;
    memcpy(oname, name, len);
    oname[len] = '\0';
    size_t idx;
    if (ftq_option_find(oname, &idx) != FTQ_OK || !in_groups(cli, ftq_option_group(idx))) {
      fprintf(stderr, "%s: unknown flag --%s (see --help)\n", cli->prog, oname);
      return 2;
    }
    const char *v;
    if (ftq_option_type_of(idx) == FTQ_OPTION_BOOL && !eq && (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0))
      v = "true"; /* a bare boolean flag switches it on */
    else
      v = take_value(argc, argv, &i, eq);
    if (!v) {
      fprintf(stderr, "%s: --%s needs a value\n", cli->prog, oname);
      return 2;
    }
    if (ftq_options_set_parse(opts, oname, v) != FTQ_OK) {
      fprintf(stderr, "%s: %s\n", cli->prog, ftq_last_error());
      return 2;
    }
  }
  return 0;
}

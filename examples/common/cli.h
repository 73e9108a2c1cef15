/* Command-line handling shared by the example programs, built on the public
 * option registry only: every library option is a flag named as the option
 * (--learning_rate 2e-4, --lora_alpha=16, --packing for a bool), --config
 * loads a JSON file of options first (flags then override it), and --help
 * is generated from the registry (type, default, range, description). */
#ifndef FTQ_EXAMPLES_CLI_H
#define FTQ_EXAMPLES_CLI_H

#include <libftq/ftq.h>
#include <stdio.h>

/* A program's own flag (not a library option), e.g. --model PATH. */
typedef struct ftq_cli_flag {
  const char *name;    /* without the dashes */
  const char *metavar; /* "PATH"; NULL for a switch that takes no value */
  const char *doc;
  const char **value;  /* receives the text ("1" for a switch); keeps its default if absent */
} ftq_cli_flag;

typedef struct ftq_cli {
  const char *prog;
  const char *summary;        /* one paragraph for --help */
  const char *const *groups;  /* option groups this program reads, NULL-terminated */
  const ftq_cli_flag *flags;
  size_t n_flags;
  const ftq_options *defaults; /* the program's own defaults (shown by --help), or NULL */
} ftq_cli;

/* Parses argv into `opts` and the program's flags. Returns 0 to go on, 1
 * when --help was printed, 2 on a usage error (message printed to stderr). */
int ftq_cli_parse(const ftq_cli *cli, int argc, char **argv, ftq_options *opts);

/* Prints the generated help. */
void ftq_cli_help(const ftq_cli *cli, FILE *out);

#endif /* FTQ_EXAMPLES_CLI_H */

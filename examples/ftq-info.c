/* ftq-info: what this libftq is and what it can use.
 *
 * Prints the version and build, probes the CPU and every CUDA device by
 * creating a context on each, and lists the option registry (the settings
 * every libftq object takes, with types, defaults, ranges and docs).
 *
 *   ftq-info            summary and devices
 *   ftq-info --options  also the option registry
 *   ftq-info --json     the same as one JSON object (for scripts)
 */
#include <libftq/ftq.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static void print_log(void *user, ftq_log_level level, const char *msg) {
  static const char *names[] = {"error", "warn", "info", "debug"};
  (void)user;
  fprintf(stderr, "[%s] %s\n", names[level], msg);
}

static void print_device(const char *dev, int json, int *first) {
  ftq_context *ctx = NULL;
  ftq_status st = ftq_context_create(dev, NULL, &ctx);
  if (st != FTQ_OK) {
    if (json) printf("%s{\"device\": \"%s\", \"error\": \"%s\"}", *first ? "" : ", ", dev, ftq_status_string(st));
    else printf("  %-8s unavailable: %s\n", dev, ftq_last_error());
    *first = 0;
    return;
  }
  ftq_context_set_log_callback(ctx, print_log, NULL);
  size_t free_b = 0, total_b = 0;
  ftq_context_device_memory(ctx, &free_b, &total_b);
  if (json)
    printf("%s{\"device\": \"%s\", \"name\": \"%s\", \"memory_free\": %zu, \"memory_total\": %zu}", *first ? "" : ", ",
           dev, ftq_context_device_name(ctx), free_b, total_b);
  else
    printf("  %-8s %s, memory %.1f of %.1f GiB free\n", dev, ftq_context_device_name(ctx), free_b / 1073741824.0,
           total_b / 1073741824.0);
  *first = 0;
  ftq_context_destroy(ctx);
}

static void print_options(void) {
  static const char *types[] = {"int", "float", "bool", "string"};
  const char *group = "";
  for (size_t i = 0; i < ftq_option_count(); i++) {
    if (strcmp(group, ftq_option_group(i)) != 0) {
      group = ftq_option_group(i);
      printf("\n[%s]\n", group);
    }
    int t = ftq_option_type_of(i);
    char range[96] = "";
    double lo, hi;
    if (ftq_option_choices(i)) snprintf(range, sizeof range, " {%s}%s", ftq_option_choices(i), ftq_option_is_list(i) ? ",..." : "");
    else if (ftq_option_range(i, &lo, &hi) == FTQ_OK && !(isinf(lo) && isinf(hi)))
      snprintf(range, sizeof range, " [%g, %g]", lo, hi);
    printf("  --%s <%s> (default %s)%s\n      %s\n", ftq_option_name(i), types[t], ftq_option_default(i), range,
           ftq_option_doc(i));
  }
  ftq_clear_error();
}

int main(int argc, char **argv) {
  int json = 0, options = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--json") == 0) json = 1;
    else if (strcmp(argv[i], "--options") == 0) options = 1;
    else {
      fprintf(stderr, "usage: %s [--options] [--json]\n", argv[0]);
      return 2;
    }
  }
  if (ftq_version_number() != FTQ_VERSION_NUMBER)
    fprintf(stderr, "note: built against libftq %s, running with %s\n", FTQ_VERSION_STRING, ftq_version_string());
  int ndev = 0;
  ftq_cuda_device_count(&ndev);
  char cuda_note[512];
  snprintf(cuda_note, sizeof cuda_note, "%s", ndev ? "" : ftq_last_error());
  int first = 1;
  if (json) {
    printf("{\"version\": \"%s\", \"build\": \"%s\", \"cuda_devices\": %d, \"options\": %zu, \"devices\": [",
           ftq_version_string(), ftq_build_info(), ndev, ftq_option_count());
    print_device("cpu", 1, &first);
    for (int d = 0; d < ndev; d++) {
      char dev[32];
      snprintf(dev, sizeof dev, "cuda:%d", d);
      print_device(dev, 1, &first);
    }
    printf("]}\n");
    return 0;
  }
  printf("libftq %s\n  build: %s\n\ndevices:\n", ftq_version_string(), ftq_build_info());
  print_device("cpu", 0, &first);
  if (ndev == 0) printf("  cuda     none: %s\n", *cuda_note ? cuda_note : "no CUDA device");
  for (int d = 0; d < ndev; d++) {
    char dev[32];
    snprintf(dev, sizeof dev, "cuda:%d", d);
    print_device(dev, 0, &first);
  }
  printf("\n%zu options registered%s\n", ftq_option_count(), options ? ":" : " (--options lists them)");
  if (options) print_options();
  return 0;
}

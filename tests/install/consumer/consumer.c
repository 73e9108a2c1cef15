/* A program outside the libftq tree, built against an installed libftq
 * (through find_package and through pkg-config) to prove the install works. */
#include <libftq/ftq.h>
#include <stdio.h>
#include <string.h>

int main(void) {
  ftq_context *ctx = NULL;
  if (ftq_context_create("cpu", NULL, &ctx) != FTQ_OK) {
    fprintf(stderr, "consumer: %s\n", ftq_last_error());
    return 1;
  }
  int ok = strcmp(ftq_version_string(), FTQ_VERSION_STRING) == 0 && ftq_context_num_threads(ctx) >= 1;
  printf("consumer: libftq %s on %s: %s\n", ftq_version_string(), ftq_context_device_name(ctx), ok ? "ok" : "FAILED");
  ftq_context_destroy(ctx);
  return ok ? 0 : 1;
}

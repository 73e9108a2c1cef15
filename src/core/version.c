/* Run-time version and build description. */
#include "libftq/ftq_version.h"

#ifndef FTQ_BUILD_INFO
#define FTQ_BUILD_INFO ""
#endif

int ftq_version_number(void) { return FTQ_VERSION_NUMBER; }

const char *ftq_version_string(void) { return FTQ_VERSION_STRING; }

void ftq_version(int *major, int *minor, int *patch) {
  if (major) *major = FTQ_VERSION_MAJOR;
  if (minor) *minor = FTQ_VERSION_MINOR;
  if (patch) *patch = FTQ_VERSION_PATCH;
}

const char *ftq_build_info(void) { return "version=" FTQ_VERSION_STRING " " FTQ_BUILD_INFO; }

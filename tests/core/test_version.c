/* The run-time version agrees with the headers; build info has its keys. */
#include "test_util.h"

int main(void) {
  int ma = -1, mi = -1, pa = -1;
  ftq_version(&ma, &mi, &pa);
  CHECK(ma == FTQ_VERSION_MAJOR && mi == FTQ_VERSION_MINOR && pa == FTQ_VERSION_PATCH);
  CHECK(ftq_version_number() == FTQ_VERSION_NUMBER);
  CHECK(ftq_version_number() == ma * 10000 + mi * 100 + pa);
  CHECK(strcmp(ftq_version_string(), FTQ_VERSION_STRING) == 0);
  char buf[32];
  snprintf(buf, sizeof buf, "%d.%d.%d", ma, mi, pa);
  CHECK(strcmp(buf, ftq_version_string()) == 0);
  ftq_version(NULL, NULL, NULL);
  const char *info = ftq_build_info();
  const char *keys[] = {"version=", "cuda=", "cuda_archs=", "nccl=", "blas=", "sanitize=", "build_type="};
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) CHECK_MSG(strstr(info, keys[i]), "%s lacks %s", info, keys[i]);
  return test_finish("test_version");
}

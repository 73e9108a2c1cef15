// The public headers compile as C++ and link with C linkage.
#include <libftq/ftq.h>

#include <cstdio>
#include <cstring>

int main() {
  ftq_options *o = nullptr;
  if (ftq_options_create(&o) != FTQ_OK) return 1;
  int ok = ftq_options_set_int(o, "num_threads", 2) == FTQ_OK;
  ftq_options_destroy(o);
  ok = ok && std::strcmp(ftq_version_string(), FTQ_VERSION_STRING) == 0;
  std::printf("test_cxx_headers: %s\n", ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}

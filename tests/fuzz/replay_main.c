/* Runs a fuzz target's entry point over the committed seed corpus and the
 * regression inputs (findings of earlier fuzzing), so every build's test
 * suite (and the sanitizer build) re-checks them without libFuzzer.
 * usage: <program> [dir...]; default tests/fuzz/corpus/<target> and
 * tests/fuzz/regressions/<target> (FUZZ_TARGET names the target). */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_dir(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    FILE *f = fopen(path, "rb");
    if (!f) continue;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)len + 1);
    if (buf && fread(buf, 1, (size_t)len, f) == (size_t)len) {
      LLVMFuzzerTestOneInput(buf, (size_t)len);
      n++;
    }
    free(buf);
    fclose(f);
  }
  closedir(d);
  return n;
}

int main(int argc, char **argv) {
  int n = 0;
  if (argc > 1) {
    for (int i = 1; i < argc; i++) n += replay_dir(argv[i]);
  } else {
    n += replay_dir("tests/fuzz/corpus/" FUZZ_TARGET);
    n += replay_dir("tests/fuzz/regressions/" FUZZ_TARGET);
  }
  printf("replayed %d inputs through the %s target\n", n, FUZZ_TARGET);
  return n > 0 ? 0 : 1; /* an empty corpus means the paths are wrong */
}

/* Checkpoint container: round trip, atomic replacement, and every kind of
 * damage detected with a message naming the file. */
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/ckpt_file.h"
#include "test_util.h"

static char dir[] = "/tmp/ftq_ckpt_XXXXXX";

static int count_files(void) {
  DIR *d = opendir(dir);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n;
}

static void write_ckpt(const char *path, const unsigned char *big, size_t big_n, const char *tag) {
  ftq_ckpt_writer *w;
  REQUIRE_OK(ftq_ckpt_write_begin(path, &w));
  REQUIRE_OK(ftq_ckpt_write_section(w, "meta", tag, strlen(tag) + 1));
  REQUIRE_OK(ftq_ckpt_write_section(w, "empty", "", 0));
  REQUIRE_OK(ftq_ckpt_write_section(w, "optimizer/state", big, big_n));
  REQUIRE_OK(ftq_ckpt_write_commit(w));
}

static ftq_status open_damaged(const char *path, long offset, int truncate_to) {
  char copy[256];
  snprintf(copy, sizeof copy, "%s/damaged", dir);
  FILE *in = fopen(path, "rb"), *out = fopen(copy, "wb");
  int c;
  long i = 0;
  while ((c = fgetc(in)) != EOF) {
    if (truncate_to >= 0 && i >= truncate_to) break;
    fputc(i == offset ? c ^ 0x40 : c, out);
    i++;
  }
  fclose(in);
  fclose(out);
  ftq_ckpt_reader *r = NULL;
  ftq_status st = ftq_ckpt_open(copy, &r);
  ftq_ckpt_close(r);
  unlink(copy);
  return st;
}

int main(void) {
  CHECK(mkdtemp(dir) != NULL);
  char path[256];
  snprintf(path, sizeof path, "%s/checkpoint-10.ftq", dir);
  size_t big_n = 1000003;
  unsigned char *big = malloc(big_n);
  uint64_t seed = 5;
  for (size_t i = 0; i < big_n; i++) big[i] = (unsigned char)test_rand_u64(&seed);

  write_ckpt(path, big, big_n, "first");
  CHECK(count_files() == 1); /* no temporary left behind */
  ftq_ckpt_reader *r;
  REQUIRE_OK(ftq_ckpt_open(path, &r));
  const void *d;
  size_t n;
  CHECK_OK(ftq_ckpt_section(r, "meta", &d, &n));
  CHECK(n == 6 && strcmp(d, "first") == 0);
  CHECK_OK(ftq_ckpt_section(r, "empty", &d, &n));
  CHECK(n == 0);
  CHECK_OK(ftq_ckpt_section(r, "optimizer/state", &d, &n));
  CHECK(n == big_n && memcmp(d, big, n) == 0 && ((uintptr_t)d % 64) == 0);
  CHECK_STATUS(ftq_ckpt_section(r, "rng", &d, &n), FTQ_ERR_NOT_FOUND);
  CHECK_ERROR_MENTIONS("rng");
  CHECK(strcmp(ftq_ckpt_section_name(r, 2), "optimizer/state") == 0 && ftq_ckpt_section_name(r, 3) == NULL);
  ftq_ckpt_close(r);

  /* replacing an existing checkpoint; an aborted write leaves the old one */
  write_ckpt(path, big, big_n, "second");
  ftq_ckpt_writer *w;
  REQUIRE_OK(ftq_ckpt_write_begin(path, &w));
  REQUIRE_OK(ftq_ckpt_write_section(w, "meta", "third", 6));
  CHECK(count_files() == 2); /* the temporary exists while writing */
  ftq_ckpt_write_abort(w);
  CHECK(count_files() == 1);
  REQUIRE_OK(ftq_ckpt_open(path, &r));
  CHECK_OK(ftq_ckpt_section(r, "meta", &d, &n));
  CHECK(strcmp(d, "second") == 0);
  ftq_ckpt_close(r);
  ftq_ckpt_write_abort(NULL);

  /* writer errors */
  REQUIRE_OK(ftq_ckpt_write_begin(path, &w));
  CHECK_STATUS(ftq_ckpt_write_section(w, "meta", "a", 1), FTQ_OK);
  CHECK_STATUS(ftq_ckpt_write_section(w, "meta", "a", 1), FTQ_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(ftq_ckpt_write_section(w, "", "a", 1), FTQ_ERR_INVALID_ARGUMENT);
  char longname[80];
  memset(longname, 'x', sizeof longname - 1);
  longname[sizeof longname - 1] = 0;
  CHECK_STATUS(ftq_ckpt_write_section(w, longname, "a", 1), FTQ_ERR_INVALID_ARGUMENT);
  ftq_ckpt_write_abort(w);
  CHECK_STATUS(ftq_ckpt_write_begin("/nonexistent-dir/x.ftq", &w), FTQ_ERR_IO);
  CHECK_ERROR_MENTIONS("/nonexistent-dir/x.ftq");

  /* damage anywhere is found: header, each section's data, directory, its crc; truncation */
  struct stat sb;
  stat(path, &sb);
  long size = (long)sb.st_size;
  long probes[] = {0, 5, 64, 70, 200, 5000, 900000, size - 200, size - 130, size - 30, size - 21, size - 9};
  for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
    ftq_status st = open_damaged(path, probes[i], -1);
    CHECK_MSG(st == FTQ_ERR_FORMAT || st == FTQ_ERR_UNSUPPORTED, "damage at byte %ld of %ld went unnoticed (%d)",
              probes[i], size, (int)st);
    CHECK_ERROR_MENTIONS("damaged");
  }
  long cuts[] = {0, 10, 40, size / 2, size - 1};
  for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++)
    CHECK_MSG(open_damaged(path, -1, (int)cuts[i]) == FTQ_ERR_FORMAT, "truncation at %ld went unnoticed", cuts[i]);
  CHECK_STATUS(ftq_ckpt_open("/nonexistent-dir/x.ftq", &r), FTQ_ERR_IO);
  CHECK_ERROR_MENTIONS("/nonexistent-dir/x.ftq");

  unlink(path);
  rmdir(dir);
  free(big);
  return test_finish("test_ckpt_file");
}

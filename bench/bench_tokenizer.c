/* Tokenizer encode throughput on one core, as JSON lines.
 *
 *   bench_tokenizer <tokenizer> <text file> [--min-seconds S]
 *
 * The text is split into lines (documents of the size data sets have) and
 * each line is encoded with ftq_tokenizer_encode (no special tokens added);
 * the whole file is encoded repeatedly until S seconds (default 3) have
 * passed. Prints: tokenizer, bytes, lines, tokens per pass, best and median
 * pass time and MB/s (10^6 bytes of UTF-8 input per second). The peer is
 * bench/peer/tokenize_hf.py (the `tokenizers` package on the same file). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "libftq/ftq.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: bench_tokenizer <tokenizer> <text file> [--min-seconds S]\n");
    return 2;
  }
  double min_s = 3.0;
  for (int i = 3; i + 1 < argc; i++)
    if (strcmp(argv[i], "--min-seconds") == 0) min_s = atof(argv[i + 1]);
  ftq_tokenizer *tok;
  if (ftq_tokenizer_load(argv[1], NULL, &tok) != FTQ_OK) {
    fprintf(stderr, "bench_tokenizer: %s\n", ftq_last_error());
    return 1;
  }
  FILE *f = fopen(argv[2], "rb");
  if (!f) {
    perror(argv[2]);
    return 1;
  }
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *text = malloc((size_t)size + 1);
  if (!text || fread(text, 1, (size_t)size, f) != (size_t)size) {
    fprintf(stderr, "bench_tokenizer: cannot read %s\n", argv[2]);
    return 1;
  }
  fclose(f);
  text[size] = '\0';
  /* lines, keeping their '\n' as the peer does */
  size_t n_lines = 0, cap = 1024;
  size_t *starts = malloc(cap * sizeof *starts), *lens = malloc(cap * sizeof *lens);
  for (size_t p = 0; p < (size_t)size;) {
    char *nl = memchr(text + p, '\n', (size_t)size - p);
    size_t e = nl ? (size_t)(nl - text) + 1 : (size_t)size;
    if (n_lines == cap) {
      cap *= 2;
      starts = realloc(starts, cap * sizeof *starts);
      lens = realloc(lens, cap * sizeof *lens);
    }
    starts[n_lines] = p;
    lens[n_lines++] = e - p;
    p = e;
  }
  double times[1000];
  int passes = 0;
  size_t tokens = 0;
  double t_start = now_s();
  while (passes < 1000 && (passes < 3 || now_s() - t_start < min_s)) {
    double t0 = now_s();
    size_t nt = 0;
    for (size_t i = 0; i < n_lines; i++) {
      int32_t *ids;
      size_t n;
      if (ftq_tokenizer_encode(tok, text + starts[i], lens[i], 0, &ids, &n) != FTQ_OK) {
        fprintf(stderr, "bench_tokenizer: %s\n", ftq_last_error());
        return 1;
      }
      nt += n;
      ftq_free(ids);
    }
    times[passes++] = now_s() - t0;
    tokens = nt;
  }
  qsort(times, (size_t)passes, sizeof *times, cmp_double);
  printf("{\"bench\": \"tokenizer_encode\", \"impl\": \"libftq\", \"tokenizer\": \"%s\", \"bytes\": %ld, \"lines\": %zu, "
         "\"tokens\": %zu, \"passes\": %d, \"best_s\": %.4f, \"median_s\": %.4f, \"mb_per_s\": %.2f}\n",
         argv[1], size, n_lines, tokens, passes, times[0], times[passes / 2], size / times[passes / 2] / 1e6);
  free(starts);
  free(lens);
  free(text);
  ftq_tokenizer_destroy(tok);
  return 0;
}

/* The examples' progress line and loss-curve SVG. */
#include <unistd.h>

#include "report.h"
#include "test_util.h"

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *b = calloc((size_t)n + 1, 1);
  if (fread(b, 1, (size_t)n, f) != (size_t)n) n = 0;
  fclose(f);
  return b;
}

int main(void) {
  ftq_curve tr = {0}, ev = {0};
  for (int i = 1; i <= 100; i++) CHECK(ftq_curve_add(&tr, i, 3.0 / i + 0.5) == 0);
  CHECK(ftq_curve_add(&ev, 50, 1.0) == 0 && ftq_curve_add(&ev, 100, 0.8) == 0);
  CHECK(ftq_curve_add(&tr, 101, NAN) == 0); /* a skipped (non-finite) point is left out of the line */
  char path[] = "/tmp/ftq_svg_XXXXXX";
  close(mkstemp(path));
  CHECK(ftq_write_loss_svg(path, "test run", &tr, &ev) == 0);
  char *svg = slurp(path);
  CHECK(svg && strncmp(svg, "<svg", 4) == 0 && strstr(svg, "</svg>") && strstr(svg, "test run"));
  /* two polylines; the train one has 100 points */
  char *pl = strstr(svg, "<polyline");
  CHECK(pl != NULL);
  int pts = 0;
  for (char *q = strstr(pl, "points=\"") + 8; *q != '"'; q++) pts += *q == ',';
  CHECK(pts == 100);
  CHECK(strstr(pl + 1, "<polyline") != NULL && strstr(svg, "eval loss"));
  CHECK(strstr(svg, "nan") == NULL);
  free(svg);
  unlink(path);
  CHECK(ftq_write_loss_svg("/nonexistent-dir/x.svg", "t", &tr, NULL) == -1);
  ftq_curve_free(&tr);
  ftq_curve_free(&ev);

  /* not a terminal: one plain line per update */
  char *buf = NULL;
  size_t len = 0;
  FILE *mem = open_memstream(&buf, &len);
  ftq_progress p;
  ftq_progress_init(&p, mem, 250);
  ftq_progress_update(&p, 25, 1.23456, 1.9757e-4, 3512.4);
  ftq_progress_finish(&p);
  fclose(mem);
  CHECK(strncmp(buf, "step 25/250 loss 1.2346 lr 1.98e-04 3512 tok/s ETA ", 50) == 0);
  CHECK(buf[len - 1] == '\n');
  free(buf);
  return test_finish("test_report");
}

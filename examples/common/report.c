/* Progress line, loss-curve SVG (see report.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "report.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double ftq_now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void ftq_progress_init(ftq_progress *p, FILE *out, int64_t total_steps) {
  p->out = out;
  p->tty = isatty(fileno(out));
  p->start_s = ftq_now_s();
  p->total_steps = total_steps;
}

void ftq_progress_update(ftq_progress *p, int64_t step, double loss, double lr, double tps) {
  double el = ftq_now_s() - p->start_s;
  double eta = step > 0 ? el / (double)step * (double)(p->total_steps - step) : 0;
  int eta_s = (int)(eta + 0.5);
  char bar[32];
  int width = 20, done = p->total_steps > 0 ? (int)(width * step / p->total_steps) : 0;
  for (int i = 0; i < width; i++) bar[i] = i < done ? '=' : (i == done ? '>' : ' ');
  bar[width] = '\0';
  if (p->tty)
    fprintf(p->out, "\rstep %lld/%lld [%s] loss %.4f lr %.2e %.0f tok/s ETA %02d:%02d:%02d ", (long long)step,
            (long long)p->total_steps, bar, loss, lr, tps, eta_s / 3600, eta_s / 60 % 60, eta_s % 60);
  else
    fprintf(p->out, "step %lld/%lld loss %.4f lr %.2e %.0f tok/s ETA %02d:%02d:%02d\n", (long long)step,
            (long long)p->total_steps, loss, lr, tps, eta_s / 3600, eta_s / 60 % 60, eta_s % 60);
  fflush(p->out);
}

void ftq_progress_finish(ftq_progress *p) {
  if (p->tty) fputc('\n', p->out);
  fflush(p->out);
}

int ftq_curve_add(ftq_curve *c, double x, double y) {
  if (c->n == c->cap) {
    int cap = c->cap ? 2 * c->cap : 64;
    double *nx = realloc(c->x, sizeof(double) * cap);
    if (!nx) return -1;
    c->x = nx;
    double *ny = realloc(c->y, sizeof(double) * cap);
    if (!ny) return -1;
    c->y = ny;
    c->cap = cap;
  }
  c->x[c->n] = x;
  c->y[c->n] = y;
  c->n++;
  return 0;
}

void ftq_curve_free(ftq_curve *c) {
  free(c->x);
  free(c->y);
  memset(c, 0, sizeof *c);
}

static void polyline(FILE *f, const ftq_curve *c, double x0, double x1, double y0, double y1, const char *color) {
  if (!c || c->n == 0) return;
  fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", color);
  for (int i = 0; i < c->n; i++) {
    if (!isfinite(c->y[i])) continue;
    double px = 60 + 560 * (c->x[i] - x0) / (x1 > x0 ? x1 - x0 : 1);
    double py = 330 - 290 * (c->y[i] - y0) / (y1 > y0 ? y1 - y0 : 1);
    fprintf(f, "%.1f,%.1f ", px, py);
  }
  fprintf(f, "\"/>\n");
}

int ftq_write_loss_svg(const char *path, const char *title, const ftq_curve *train, const ftq_curve *eval) {
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  const ftq_curve *cs[2] = {train, eval};
  for (int k = 0; k < 2; k++)
    for (int i = 0; cs[k] && i < cs[k]->n; i++) {
      if (!isfinite(cs[k]->y[i])) continue;
      x0 = fmin(x0, cs[k]->x[i]), x1 = fmax(x1, cs[k]->x[i]);
      y0 = fmin(y0, cs[k]->y[i]), y1 = fmax(y1, cs[k]->y[i]);
    }
  if (!isfinite(x0)) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  if (y0 > 0) y0 = 0; /* loss axis from zero reads honestly */
  FILE *f = fopen(path, "w");
  if (!f) return -1;
  fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"640\" height=\"380\" font-family=\"sans-serif\" "
             "font-size=\"12\">\n<rect width=\"640\" height=\"380\" fill=\"white\"/>\n");
  fprintf(f, "<text x=\"320\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">%s</text>\n", title);
  fprintf(f, "<line x1=\"60\" y1=\"330\" x2=\"620\" y2=\"330\" stroke=\"black\"/>\n"
             "<line x1=\"60\" y1=\"40\" x2=\"60\" y2=\"330\" stroke=\"black\"/>\n");
  for (int t = 0; t <= 4; t++) {
    double yv = y0 + (y1 - y0) * t / 4, py = 330 - 290.0 * t / 4;
    double xv = x0 + (x1 - x0) * t / 4, px = 60 + 560.0 * t / 4;
    fprintf(f, "<text x=\"54\" y=\"%.1f\" text-anchor=\"end\">%.3g</text>\n", py + 4, yv);
    fprintf(f, "<line x1=\"60\" y1=\"%.1f\" x2=\"620\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", py, py);
    fprintf(f, "<text x=\"%.1f\" y=\"348\" text-anchor=\"middle\">%.0f</text>\n", px, xv);
  }
  fprintf(f, "<text x=\"340\" y=\"370\" text-anchor=\"middle\">optimizer step</text>\n"
             "<text x=\"16\" y=\"190\" transform=\"rotate(-90 16 190)\" text-anchor=\"middle\">loss</text>\n");
  polyline(f, train, x0, x1, y0, y1, "#1f77b4");
  polyline(f, eval, x0, x1, y0, y1, "#d62728");
  fprintf(f, "<text x=\"500\" y=\"56\" fill=\"#1f77b4\">train loss</text>\n");
  if (eval && eval->n) fprintf(f, "<text x=\"500\" y=\"72\" fill=\"#d62728\">eval loss</text>\n");
  fprintf(f, "</svg>\n");
  return fclose(f) == 0 ? 0 : -1;
}

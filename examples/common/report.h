/* What the example programs show and write about a run: a progress line on
 * a terminal (plain log lines otherwise), metrics as JSON lines, and the
 * loss curve as an SVG picture. Host-side only, public API only. */
#ifndef FTQ_EXAMPLES_REPORT_H
#define FTQ_EXAMPLES_REPORT_H

#include <stdint.h>
#include <stdio.h>

/* Progress: "step 120/250 [=====>    ] loss 1.2345 lr 1.97e-04 3512 tok/s ETA 01:23".
 * On a terminal it redraws one line; elsewhere it prints a line every call. */
typedef struct ftq_progress {
  FILE *out;
  int tty;
  double start_s;
  int64_t total_steps;
} ftq_progress;

void ftq_progress_init(ftq_progress *p, FILE *out, int64_t total_steps);
void ftq_progress_update(ftq_progress *p, int64_t step, double loss, double lr, double tokens_per_s);
void ftq_progress_finish(ftq_progress *p);

/* A loss curve: points (step, loss), optionally a second series (eval). */
typedef struct ftq_curve {
  double *x, *y;
  int n, cap;
} ftq_curve;

int ftq_curve_add(ftq_curve *c, double x, double y); /* 0 on success */
void ftq_curve_free(ftq_curve *c);

/* Writes an SVG line chart of `train` (and `eval` if it has points) to
 * path; returns 0 on success, -1 (errno set) if the file cannot be written. */
int ftq_write_loss_svg(const char *path, const char *title, const ftq_curve *train, const ftq_curve *eval);

/* Seconds on a monotonic clock. */
double ftq_now_s(void);

#endif /* FTQ_EXAMPLES_REPORT_H */

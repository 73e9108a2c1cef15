/* Logits processors as transformers implements them (generation/
 * logits_process.py), in f32 where PyTorch computes in f32. */
#include "model/sampling.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void repetition_penalty(float *sc, int64_t V, const int32_t *hist, size_t n, float pen, int32_t *seen) {
  /* every distinct id once, from its original score (gather then scatter) */
  memset(seen, 0, sizeof(int32_t) * (size_t)V);
  for (size_t i = 0; i < n; i++) {
    int32_t t = hist[i];
    if (t < 0 || t >= V || seen[t]) continue;
    seen[t] = 1;
    sc[t] = sc[t] < 0 ? sc[t] * pen : sc[t] / pen;
  }
}

typedef struct scored {
  float s;
  int32_t i;
} scored;

/* Ascending by score, ties by index: the order torch.sort gives in practice. */
static int by_score_asc(const void *a, const void *b) {
  const scored *x = a, *y = b;
  if (x->s < y->s) return -1;
  if (x->s > y->s) return 1;
  return (x->i > y->i) - (x->i < y->i);
}

static scored *sort_ascending(const float *sc, int64_t V, int32_t *scratch) {
  scored *p = (scored *)(void *)scratch;
  for (int64_t i = 0; i < V; i++) {
    p[i].s = sc[i];
    p[i].i = (int32_t)i;
  }
  qsort(p, (size_t)V, sizeof *p, by_score_asc);
  return p;
}

/* TopKLogitsWarper: remove scores below the k-th largest. */
static void top_k(float *sc, int64_t V, int64_t k, int32_t *scratch) {
  if (k >= V) return;
  const float kth = sort_ascending(sc, V, scratch)[V - k].s;
  for (int64_t i = 0; i < V; i++)
    if (sc[i] < kth) sc[i] = -INFINITY;
}

/* TopPLogitsWarper: ascending sort, cumulative softmax, remove entries with
 * cumulative probability <= 1 - top_p, always keep the largest. */
static void top_p(float *sc, int64_t V, double p, int32_t *scratch) {
  const scored *o = sort_ascending(sc, V, scratch);
  const float mx = o[V - 1].s;
  double sum = 0.0;
  for (int64_t i = 0; i < V; i++) sum += o[i].s == -INFINITY ? 0.0 : exp((double)(o[i].s - mx));
  const float cut = (float)(1.0 - p);
  double cum = 0.0;
  for (int64_t i = 0; i < V - 1; i++) {
    float prob = o[i].s == -INFINITY ? 0.0f : (float)(exp((double)(o[i].s - mx)) / sum);
    cum += prob;
    if ((float)cum <= cut) sc[o[i].i] = -INFINITY;
  }
}

void ftq_logits_process(float *sc, int64_t V, const int32_t *hist, size_t n, const ftq_sampling *s,
                        int32_t *scratch) {
  if (s->repetition_penalty != 1.0) repetition_penalty(sc, V, hist, n, (float)s->repetition_penalty, scratch);
  if (!s->do_sample) return;
  if (s->temperature != 1.0) {
    const float t = (float)s->temperature;
    for (int64_t i = 0; i < V; i++) sc[i] = sc[i] / t;
  }
  if (s->top_k > 0) top_k(sc, V, s->top_k, scratch);
  if (s->top_p < 1.0) top_p(sc, V, s->top_p, scratch);
}

int32_t ftq_logits_argmax(const float *sc, int64_t V) {
  int64_t best = 0;
  for (int64_t i = 1; i < V; i++)
    if (sc[i] > sc[best] || (isnan(sc[i]) && !isnan(sc[best]))) best = i;
  return (int32_t)best;
}

int32_t ftq_logits_sample(const float *sc, int64_t V, double u) {
  float mx = -INFINITY;
  for (int64_t i = 0; i < V; i++)
    if (sc[i] > mx) mx = sc[i];
  if (mx == -INFINITY) return ftq_logits_argmax(sc, V);
  double total = 0.0;
  for (int64_t i = 0; i < V; i++) total += sc[i] == -INFINITY ? 0.0 : exp((double)(sc[i] - mx));
  double target = u * total, acc = 0.0;
  int64_t last = 0;
  for (int64_t i = 0; i < V; i++) {
    if (sc[i] == -INFINITY) continue;
    acc += exp((double)(sc[i] - mx));
    last = i;
    if (acc > target) return (int32_t)i;
  }
  return (int32_t)last;
}

/* Logits processors and token choice for generation, as transformers'
 * generate() applies them (repetition penalty; with sampling: temperature,
 * top-k, top-p), on host scores. Separate from generate.c so tests can check
 * them against transformers' processors on fixed inputs. */
#ifndef FTQ_MODEL_SAMPLING_H
#define FTQ_MODEL_SAMPLING_H

#include <stddef.h>
#include <stdint.h>

#include "libftq/ftq_status.h"

typedef struct ftq_sampling {
  int do_sample;
  double temperature;        /* > 0; 1 = off */
  int64_t top_k;             /* 0 = off */
  double top_p;              /* 1 = off */
  double repetition_penalty; /* 1 = off */
} ftq_sampling;

/* Applies the processors to scores [vocab] in place: tokens filtered out
 * become -inf. history: the ids seen so far (prompt + generated) for the
 * repetition penalty. scratch: 2 * vocab ints. */
void ftq_logits_process(float *scores, int64_t vocab, const int32_t *history, size_t n_history,
                        const ftq_sampling *s, int32_t *scratch);

/* The first index of the largest score. */
int32_t ftq_logits_argmax(const float *scores, int64_t vocab);

/* Draws from softmax(scores) with the uniform u in [0, 1) by inverse CDF in
 * index order (-inf scores have probability 0). */
int32_t ftq_logits_sample(const float *scores, int64_t vocab, double u);

#endif /* FTQ_MODEL_SAMPLING_H */

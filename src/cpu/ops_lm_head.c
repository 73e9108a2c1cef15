/* CPU backend: LM head + cross-entropy, chunked over the vocabulary, in one
 * pass. Each chunk's logits come from one GEMM; per row, an online softmax
 * keeps the running max m and sum s of exp(logit - m) and the target's
 * logit. For the backward the chunk's exp(logit - m) replace its logits and
 * are accumulated into dh with one more GEMM, dh rows rescaled whenever
 * their max grows (as flash attention does); at the end
 * dh = grad_scale * (dh / s - W[target]) = grad_scale * (softmax - onehot) W.
 * Only an [n, chunk] slice of the logits exists at any time, and no chunk
 * is computed twice. */
#include <math.h>
#include <string.h>

#include "core/error.h"
#include "cpu/cpu.h"

#define IGNORE_INDEX (-100)

typedef struct head_job {
  const ftq_lm_head_args *a;
  float *logits;       /* [n, ldl] chunk */
  int64_t ldl, c0, cw;
  double *m, *s, *tl, *scale;
  int backward;        /* replace the chunk's logits by exp(logit - m), record each row's rescale */
  const float *wc;     /* the chunk's f32 weight, for the final dh */
} head_job;

typedef struct conv_job {
  const void *w;
  ftq_dtype t;
  int64_t dim, c0;
  float *out;
} conv_job;

static void convert_rows(void *arg, size_t r0, size_t r1, int worker) {
  (void)worker;
  const conv_job *j = arg;
  for (size_t r = r0; r < r1; r++) {
    size_t src = ((size_t)j->c0 + r) * (size_t)j->dim;
    float *o = j->out + r * (size_t)j->dim;
    for (int64_t c = 0; c < j->dim; c++) o[c] = ftq_cpu_load(j->w, j->t, src + (size_t)c);
  }
}

/* Online softmax statistics of one chunk, per row. */
static void stats_rows(void *arg, size_t r0, size_t r1, int worker) {
  (void)worker;
  const head_job *j = arg;
  const ftq_lm_head_args *a = j->a;
  for (size_t r = r0; r < r1; r++) {
    const int32_t t = a->targets[r];
    float *l = j->logits + r * (size_t)j->ldl;
    if (t == IGNORE_INDEX) {
      if (j->backward) memset(l, 0, sizeof(float) * (size_t)j->cw);
      continue;
    }
    if (t >= j->c0 && t < j->c0 + j->cw) j->tl[r] = l[t - j->c0];
    float mc = -INFINITY;
    for (int64_t c = 0; c < j->cw; c++)
      if (l[c] > mc) mc = l[c];
    const double m_old = j->m[r];
    double scale = 1.0;
    if (mc > m_old) {
      scale = exp(m_old - mc); /* 0 for the first chunk */
      j->s[r] *= scale;
      j->m[r] = mc;
    }
    const float mf = (float)j->m[r];
    double acc = 0.0;
    if (j->backward) {
      j->scale[r] = scale;
      for (int64_t c = 0; c < j->cw; c++) acc += l[c] = expf(l[c] - mf);
    } else {
      for (int64_t c = 0; c < j->cw; c++) acc += expf(l[c] - mf);
    }
    j->s[r] += acc;
  }
}

/* dh rows rescaled to the new running max before the chunk is added. */
static void rescale_rows(void *arg, size_t r0, size_t r1, int worker) {
  (void)worker;
  const head_job *j = arg;
  const int64_t dim = j->a->dim;
  for (size_t r = r0; r < r1; r++) {
    if (j->a->targets[r] == IGNORE_INDEX || j->scale[r] == 1.0) continue;
    const float f = (float)j->scale[r];
    float *d = j->a->dh + r * (size_t)dim;
    for (int64_t c = 0; c < dim; c++) d[c] *= f;
  }
}

/* dh = grad_scale * (dh / s - W[target]); zero for ignored rows. */
static void finish_rows(void *arg, size_t r0, size_t r1, int worker) {
  (void)worker;
  const head_job *j = arg;
  const ftq_lm_head_args *a = j->a;
  const int64_t dim = a->dim;
  for (size_t r = r0; r < r1; r++) {
    float *d = a->dh + r * (size_t)dim;
    const int32_t t = a->targets[r];
    if (t == IGNORE_INDEX) {
      memset(d, 0, sizeof(float) * (size_t)dim);
      continue;
    }
    const float inv = (float)(1.0 / j->s[r]);
    const size_t wt = (size_t)t * (size_t)dim;
    for (int64_t c = 0; c < dim; c++)
      d[c] = (d[c] * inv - ftq_cpu_load(a->w, a->w_type, wt + (size_t)c)) * a->grad_scale;
  }
}

ftq_status ftq_cpu_lm_head(void *be, const ftq_lm_head_args *a) {
  ftq_cpu *cpu = be;
  const int64_t n = a->n, dim = a->dim, V = a->vocab;
  const int64_t chunk = a->vocab_chunk > 0 ? (a->vocab_chunk < V ? a->vocab_chunk : V) : V;
  size_t need = ftq_lm_head_work_bytes(n, dim, chunk, a->w_type);
  if (!a->work || a->work_bytes < need)
    return ftq_error(FTQ_ERR_INTERNAL, "lm_head: scratch of %zu bytes given, %zu needed", a->work_bytes, need);
  if (!a->targets && !a->logits)
    return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "lm_head: neither targets nor logits requested");
  if (a->dh && (!a->targets || a->logits))
    return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "lm_head: the backward needs targets and no full logits");
  if (a->targets)
    for (int64_t i = 0; i < n; i++)
      if (a->targets[i] != IGNORE_INDEX && (a->targets[i] < 0 || a->targets[i] >= V))
        return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "cross-entropy: label %d at position %lld is outside [0, %lld)",
                         (int)a->targets[i], (long long)i, (long long)V);
  char *p = (char *)(((uintptr_t)a->work + 255u) & ~(uintptr_t)255u);
  float *lc = (float *)p;
  p += ((size_t)n * (size_t)chunk * 4u + 255u) & ~(size_t)255u;
  double *st = (double *)p;
  p += ((size_t)n * 32u + 255u) & ~(size_t)255u;
  float *wc = (float *)p; /* used only for a non-f32 weight */
  head_job j = {.a = a, .m = st, .s = st + n, .tl = st + 2 * n, .scale = st + 3 * n, .backward = a->dh != NULL};
  for (int64_t i = 0; i < n; i++) {
    j.m[i] = -INFINITY;
    j.s[i] = 0.0;
    j.tl[i] = 0.0;
  }
  if (a->dh) memset(a->dh, 0, sizeof(float) * (size_t)n * (size_t)dim);
  const size_t conv_chunk = 1 + (size_t)(8192 / (dim > 0 ? dim : 1));
  const size_t row_min = 1 + (size_t)(8192 / chunk);

  for (int64_t c0 = 0; c0 < V; c0 += chunk) {
    const int64_t cw = V - c0 < chunk ? V - c0 : chunk;
    const float *w = (const float *)a->w + (size_t)c0 * (size_t)dim;
    if (a->w_type != FTQ_DTYPE_F32) { /* the f32 weight rows [c0, c0 + cw) */
      conv_job cj = {a->w, a->w_type, dim, c0, wc};
      ftq_parallel_for(cpu->pool, (size_t)cw, conv_chunk, convert_rows, &cj);
      w = wc;
    }
    j.logits = a->logits ? a->logits + c0 : lc;
    j.ldl = a->logits ? V : cw;
    j.c0 = c0;
    j.cw = cw;
    FTQ_TRY(ftq_cpu_mm(be, 0, 1, n, cw, dim, 1.0f, a->h, dim, w, dim, 0.0f, j.logits, j.ldl));
    if (!a->targets) continue;
    ftq_parallel_for(cpu->pool, (size_t)n, row_min, stats_rows, &j);
    if (a->dh) { /* dh = dh * rescale + exp(logits - m) W_chunk */
      ftq_parallel_for(cpu->pool, (size_t)n, 1 + (size_t)(8192 / dim), rescale_rows, &j);
      FTQ_TRY(ftq_cpu_mm(be, 0, 0, n, dim, cw, 1.0f, lc, cw, w, dim, 1.0f, a->dh, dim));
    }
  }
  if (!a->targets) return FTQ_OK;

  double loss = 0.0;
  int64_t count = 0;
  for (int64_t i = 0; i < n; i++) {
    float li = 0.0f;
    if (a->targets[i] != IGNORE_INDEX) {
      li = (float)(j.m[i] + log(j.s[i]) - j.tl[i]);
      loss += li;
      count++;
    }
    if (a->token_loss) a->token_loss[i] = li;
  }
  if (a->loss_sum) *a->loss_sum = loss;
  if (a->count) *a->count = count;
  if (a->dh) ftq_parallel_for(cpu->pool, (size_t)n, 1 + (size_t)(8192 / dim), finish_rows, &j);
  return FTQ_OK;
}

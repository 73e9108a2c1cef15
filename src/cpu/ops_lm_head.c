/* CPU backend: LM head + cross-entropy, chunked over the vocabulary.
 * Pass 1 runs the head one vocabulary chunk at a time and keeps, per row, a
 * running max and sum of exponentials (online softmax) and the target's
 * logit; pass 2 (backward) recomputes each chunk's logits, turns them into
 * (softmax - onehot) * grad_scale and accumulates dh. Only an [n, chunk]
 * slice of the logits exists at any time. */
#include <math.h>
#include <string.h>

#include "core/error.h"
#include "cpu/cpu.h"

#define IGNORE_INDEX (-100)

typedef struct head_job {
  const ftq_lm_head_args *a;
  const float *logits; /* [n, ldl] chunk */
  int64_t ldl, c0, cw;
  double *m, *s, *tl, *lse;
  float *g;            /* pass 2: gradient of the chunk's logits [n, cw] */
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
    if (t == IGNORE_INDEX) continue;
    const float *l = j->logits + r * (size_t)j->ldl;
    float mc = -INFINITY;
    for (int64_t c = 0; c < j->cw; c++)
      if (l[c] > mc) mc = l[c];
    double m = j->m[r];
    if (mc > m) {
      j->s[r] = j->s[r] * exp(m - mc);
      m = j->m[r] = mc;
    }
    double acc = 0.0;
    const float mf = (float)m;
    for (int64_t c = 0; c < j->cw; c++) acc += expf(l[c] - mf);
    j->s[r] += acc;
    if (t >= j->c0 && t < j->c0 + j->cw) j->tl[r] = l[t - j->c0];
  }
}

static void grad_rows(void *arg, size_t r0, size_t r1, int worker) {
  (void)worker;
  const head_job *j = arg;
  const ftq_lm_head_args *a = j->a;
  for (size_t r = r0; r < r1; r++) {
    const int32_t t = a->targets[r];
    float *g = j->g + r * (size_t)j->cw;
    if (t == IGNORE_INDEX) {
      memset(g, 0, sizeof(float) * (size_t)j->cw);
      continue;
    }
    const float *l = j->logits + r * (size_t)j->ldl;
    const float lse = (float)j->lse[r];
    for (int64_t c = 0; c < j->cw; c++) g[c] = expf(l[c] - lse) * a->grad_scale;
    if (t >= j->c0 && t < j->c0 + j->cw) g[t - j->c0] -= a->grad_scale;
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
  head_job j = {.a = a, .m = st, .s = st + n, .tl = st + 2 * n, .lse = st + 3 * n};
  for (int64_t i = 0; i < n; i++) {
    j.m[i] = -INFINITY;
    j.s[i] = 0.0;
    j.tl[i] = 0.0;
  }
  const size_t conv_chunk = 1 + (size_t)(8192 / (dim > 0 ? dim : 1));
  const size_t row_min = 1 + (size_t)(8192 / chunk);

  /* the f32 weight rows [c0, c0 + cw) */
#define CHUNK_WEIGHT(c0, cw, out)                                                        \
  do {                                                                                   \
    if (a->w_type == FTQ_DTYPE_F32) {                                                    \
      out = (const float *)a->w + (size_t)(c0) * (size_t)dim;                            \
    } else {                                                                             \
      conv_job cj = {a->w, a->w_type, dim, (c0), wc};                                    \
      ftq_parallel_for(cpu->pool, (size_t)(cw), conv_chunk, convert_rows, &cj);          \
      out = wc;                                                                          \
    }                                                                                    \
  } while (0)

  for (int64_t c0 = 0; c0 < V; c0 += chunk) {
    const int64_t cw = V - c0 < chunk ? V - c0 : chunk;
    const float *w;
    CHUNK_WEIGHT(c0, cw, w);
    float *dst = a->logits ? a->logits + c0 : lc;
    const int64_t ldl = a->logits ? V : cw;
    ftq_gemm_args g = {.trans_b = 1, .m = n, .n = cw, .k = dim, .alpha = 1.0f, .a = a->h, .a_type = FTQ_DTYPE_F32,
                       .lda = dim, .b = w, .b_type = FTQ_DTYPE_F32, .ldb = dim, .c = dst,
                       .c_type = FTQ_DTYPE_F32, .ldc = ldl, .batch = 1};
    FTQ_TRY(ftq_cpu_gemm(be, &g));
    if (a->targets) {
      j.logits = dst;
      j.ldl = ldl;
      j.c0 = c0;
      j.cw = cw;
      ftq_parallel_for(cpu->pool, (size_t)n, row_min, stats_rows, &j);
    }
  }
  if (!a->targets) return FTQ_OK;

  double loss = 0.0;
  int64_t count = 0;
  for (int64_t i = 0; i < n; i++) {
    float li = 0.0f;
    if (a->targets[i] != IGNORE_INDEX) {
      j.lse[i] = j.m[i] + log(j.s[i]);
      li = (float)(j.lse[i] - j.tl[i]);
      loss += li;
      count++;
    }
    if (a->token_loss) a->token_loss[i] = li;
  }
  if (a->loss_sum) *a->loss_sum = loss;
  if (a->count) *a->count = count;
  if (!a->dh) return FTQ_OK;

  memset(a->dh, 0, sizeof(float) * (size_t)n * (size_t)dim);
  if (!count) return FTQ_OK;
  for (int64_t c0 = 0; c0 < V; c0 += chunk) {
    const int64_t cw = V - c0 < chunk ? V - c0 : chunk;
    const float *w;
    CHUNK_WEIGHT(c0, cw, w);
    const float *src;
    int64_t ldl;
    if (a->logits) { /* already there */
      src = a->logits + c0;
      ldl = V;
    } else {
      ftq_gemm_args g = {.trans_b = 1, .m = n, .n = cw, .k = dim, .alpha = 1.0f, .a = a->h,
                         .a_type = FTQ_DTYPE_F32, .lda = dim, .b = w, .b_type = FTQ_DTYPE_F32, .ldb = dim,
                         .c = lc, .c_type = FTQ_DTYPE_F32, .ldc = cw, .batch = 1};
      FTQ_TRY(ftq_cpu_gemm(be, &g));
      src = lc;
      ldl = cw;
    }
    /* the chunk's logits gradient overwrites the chunk buffer row by row;
     * with full logits it goes to the chunk buffer too */
    j.logits = src;
    j.ldl = ldl;
    j.c0 = c0;
    j.cw = cw;
    j.g = lc;
    ftq_parallel_for(cpu->pool, (size_t)n, row_min, grad_rows, &j);
    ftq_gemm_args g2 = {.m = n, .n = dim, .k = cw, .alpha = 1.0f, .beta = 1.0f, .a = lc, .a_type = FTQ_DTYPE_F32,
                        .lda = cw, .b = w, .b_type = FTQ_DTYPE_F32, .ldb = dim, .c = a->dh,
                        .c_type = FTQ_DTYPE_F32, .ldc = dim, .batch = 1};
    FTQ_TRY(ftq_cpu_gemm(be, &g2));
  }
#undef CHUNK_WEIGHT
  return FTQ_OK;
}

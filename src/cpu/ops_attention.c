/* CPU backend: rotary embedding and causal GQA attention (forward and
 * backward) over rotated q/k, with right-padding and packed-sequence masks.
 * Per (batch row, head) and block of queries, the scores are one BLAS GEMM
 * (only up to the block's last visible key), the masked softmax runs over
 * rows on the thread pool, and P V, dP = dO V^T, dQ = dS K, dK += dS^T Q,
 * dV += P^T dO are GEMMs again. The backward recomputes the block's softmax
 * exactly as the forward did (same GEMM shapes, same code), so no
 * [q_len x kv_len] matrix is ever kept between the passes. */
#include <math.h>
#include <string.h>

#include "core/error.h"
#include "cpu/cpu.h"

/* ---------------------------------------------------------------------- */
/* RoPE                                                                     */

typedef struct rope_job {
  float *x;
  int64_t row_stride, n_heads, head_dim;
  const int32_t *pos;
  const float *inv_freq;
  int inverse;
} rope_job;

static void rope_rows(void *arg, size_t t0, size_t t1, int worker) {
  (void)worker;
  const rope_job *j = arg;
  const int64_t half = j->head_dim / 2;
  for (size_t t = t0; t < t1; t++) {
    float *row = j->x + t * (size_t)j->row_stride;
    const float p = (float)j->pos[t];
    for (int64_t i = 0; i < half; i++) {
      /* as HF: angle = f32(position) * inv_freq in f32, then cos/sin */
      const float ang = p * j->inv_freq[i];
      const float c = cosf(ang), s = sinf(ang);
      for (int64_t h = 0; h < j->n_heads; h++) {
        float *v = row + h * j->head_dim;
        const float x1 = v[i], x2 = v[i + half];
        if (!j->inverse) { /* q*cos + rotate_half(q)*sin */
          v[i] = x1 * c + (-x2) * s;
          v[i + half] = x2 * c + x1 * s;
        } else { /* the transpose of the rotation */
          v[i] = x1 * c + x2 * s;
          v[i + half] = x2 * c - x1 * s;
        }
      }
    }
  }
}

ftq_status ftq_cpu_rope(void *be, float *x, int64_t n, int64_t row_stride, int64_t n_heads, int64_t head_dim,
                        const int32_t *positions, const float *inv_freq, int inverse) {
  ftq_cpu *cpu = be;
  if (head_dim % 2) return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "rope: head_dim %lld is odd", (long long)head_dim);
  rope_job j = {x, row_stride, n_heads, head_dim, positions, inv_freq, inverse};
  ftq_parallel_for(cpu->pool, (size_t)n, 1 + (size_t)(4096 / (row_stride > 0 ? row_stride : 1)), rope_rows, &j);
  return FTQ_OK;
}

/* ---------------------------------------------------------------------- */
/* attention                                                                */

/* One (batch row, head, query block): scores P [nq, nk] (ld nk) in place of
 * the raw scores; lse per query; with dP (backward) dS in place of dP. */
typedef struct soft_job {
  const ftq_attention_args *a;
  int64_t b, i0, nk;  /* batch row, first query, keys in the block's GEMM */
  float *P, *dP;      /* [nq, nk] */
  float *lse;         /* forward: where to write (stride n_heads), may be NULL */
} soft_job;

static inline int key_visible(const ftq_attention_args *a, int64_t b, int64_t qidx, int64_t j) {
  const size_t kb = (size_t)b * (size_t)a->kv_len;
  if (j > qidx) return 0;
  if (a->key_valid && !a->key_valid[kb + (size_t)j]) return 0;
  if (a->seq_ids && a->seq_ids[kb + (size_t)j] != a->seq_ids[kb + (size_t)qidx]) return 0;
  return 1;
}

/* Masked softmax of rows [r0, r1) of the block, as HF's eager attention:
 * masked scores out, softmax in f32 with the max subtracted. */
static void softmax_rows(void *arg, size_t r0, size_t r1, int worker) {
  (void)worker;
  const soft_job *j = arg;
  const ftq_attention_args *a = j->a;
  for (size_t r = r0; r < r1; r++) {
    const int64_t qidx = a->kv_len - a->q_len + j->i0 + (int64_t)r;
    float *p = j->P + r * (size_t)j->nk;
    float m = -INFINITY;
    for (int64_t k = 0; k < j->nk; k++) {
      if (!key_visible(a, j->b, qidx, k)) p[k] = -INFINITY;
      else if (p[k] > m) m = p[k];
    }
    if (m == -INFINITY) { /* sees no key: zero output */
      memset(p, 0, sizeof(float) * (size_t)j->nk);
      if (j->lse) j->lse[r * (size_t)a->n_heads] = -INFINITY;
      continue;
    }
    double sum = 0.0;
    for (int64_t k = 0; k < j->nk; k++) {
      p[k] = p[k] == -INFINITY ? 0.0f : expf(p[k] - m);
      sum += p[k];
    }
    const float inv = (float)(1.0 / sum);
    for (int64_t k = 0; k < j->nk; k++) p[k] *= inv;
    if (j->lse) j->lse[r * (size_t)a->n_heads] = m + (float)log(sum);
  }
}

/* dS = P * (dP - sum_k P dP) * scale, rows [r0, r1), in place of dP. */
static void dsoft_rows(void *arg, size_t r0, size_t r1, int worker) {
  (void)worker;
  const soft_job *j = arg;
  for (size_t r = r0; r < r1; r++) {
    const float *p = j->P + r * (size_t)j->nk;
    float *dp = j->dP + r * (size_t)j->nk;
    double s = 0.0;
    for (int64_t k = 0; k < j->nk; k++) s += (double)p[k] * dp[k];
    for (int64_t k = 0; k < j->nk; k++)
      dp[k] = p[k] == 0.0f ? 0.0f : (float)((double)p[k] * ((double)dp[k] - s)) * j->a->scale;
  }
}

static ftq_status check_attention(const ftq_attention_args *a, int backward) {
  if (a->n_heads <= 0 || a->n_kv_heads <= 0 || a->n_heads % a->n_kv_heads || a->head_dim <= 0 ||
      a->q_len < 0 || a->kv_len < a->q_len || a->kv_stride < a->kv_len)
    return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "attention: bad shape (heads %lld/%lld, q_len %lld, kv_len %lld)",
                     (long long)a->n_heads, (long long)a->n_kv_heads, (long long)a->q_len, (long long)a->kv_len);
  if (backward && (a->kv_len != a->q_len || a->kv_stride != a->kv_len))
    return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "attention backward needs kv_len == q_len");
  size_t need = ftq_attention_work_bytes(a->batch, a->n_heads, a->q_len, a->kv_len);
  if (!a->work || a->work_bytes < need)
    return ftq_error(FTQ_ERR_INTERNAL, "attention: scratch of %zu bytes given, %zu needed", a->work_bytes, need);
  return FTQ_OK;
}

/* Runs the forward (dout == NULL) or backward over every (row, head, block). */
static ftq_status attention_run(ftq_cpu *cpu, const ftq_attention_args *a, int backward) {
  FTQ_TRY(check_attention(a, backward));
  const int64_t H = a->n_heads, KV = a->n_kv_heads, D = a->head_dim, group = H / KV;
  const int64_t qdim = H * D, kvdim = KV * D, QB = ftq_attention_q_block(a->q_len, a->kv_len);
  char *w = (char *)(((uintptr_t)a->work + 255u) & ~(uintptr_t)255u);
  float *P = (float *)w, *dP = P + (size_t)QB * (size_t)a->kv_len;
  if (backward)
    for (int64_t b = 0; b < a->batch; b++) {
      memset(a->dk + (size_t)b * (size_t)a->kv_stride * (size_t)kvdim, 0, sizeof(float) * (size_t)(a->kv_len * kvdim));
      memset(a->dv + (size_t)b * (size_t)a->kv_stride * (size_t)kvdim, 0, sizeof(float) * (size_t)(a->kv_len * kvdim));
    }
  for (int64_t b = 0; b < a->batch; b++)
    for (int64_t h = 0; h < H; h++) {
      const int64_t kh = h / group;
      const size_t qoff = (size_t)b * (size_t)a->q_len * (size_t)qdim + (size_t)(h * D);
      const size_t kvoff = (size_t)b * (size_t)a->kv_stride * (size_t)kvdim + (size_t)(kh * D);
      const float *K = a->k + kvoff, *V = a->v + kvoff;
      for (int64_t i0 = 0; i0 < a->q_len; i0 += QB) {
        const int64_t nq = a->q_len - i0 < QB ? a->q_len - i0 : QB;
        /* keys beyond the block's last query are masked for every query */
        const int64_t nk = a->kv_len - a->q_len + i0 + nq;
        const float *Q = a->q + qoff + (size_t)i0 * (size_t)qdim;
        soft_job j = {a, b, i0, nk, P, dP, NULL};
        if (!backward && a->lse) j.lse = a->lse + ((size_t)(b * a->q_len + i0) * (size_t)H + (size_t)h);
        /* scores = (q . k) * scale, as HF computes them */
        FTQ_TRY(ftq_cpu_mm(cpu, 0, 1, nq, nk, D, a->scale, Q, qdim, K, kvdim, 0.0f, P, nk));
        ftq_parallel_for(cpu->pool, (size_t)nq, 1 + (size_t)(4096 / nk), softmax_rows, &j);
        if (!backward) { /* out = P V */
          FTQ_TRY(ftq_cpu_mm(cpu, 0, 0, nq, D, nk, 1.0f, P, nk, V, kvdim, 0.0f, a->out + qoff + (size_t)i0 * (size_t)qdim, qdim));
          continue;
        }
        const float *dO = a->dout + qoff + (size_t)i0 * (size_t)qdim;
        FTQ_TRY(ftq_cpu_mm(cpu, 0, 1, nq, nk, D, 1.0f, dO, qdim, V, kvdim, 0.0f, dP, nk));          /* dP = dO V^T */
        ftq_parallel_for(cpu->pool, (size_t)nq, 1 + (size_t)(4096 / nk), dsoft_rows, &j);   /* dS */
        FTQ_TRY(ftq_cpu_mm(cpu, 0, 0, nq, D, nk, 1.0f, dP, nk, K, kvdim, 0.0f,                      /* dQ = dS K */
                   a->dq + qoff + (size_t)i0 * (size_t)qdim, qdim));
        FTQ_TRY(ftq_cpu_mm(cpu, 1, 0, nk, D, nq, 1.0f, dP, nk, Q, qdim, 1.0f, a->dk + kvoff, kvdim)); /* dK += dS^T Q */
        FTQ_TRY(ftq_cpu_mm(cpu, 1, 0, nk, D, nq, 1.0f, P, nk, dO, qdim, 1.0f, a->dv + kvoff, kvdim)); /* dV += P^T dO */
      }
    }
  return FTQ_OK;
}

ftq_status ftq_cpu_attention(void *be, const ftq_attention_args *a) { return attention_run(be, a, 0); }

ftq_status ftq_cpu_attention_backward(void *be, const ftq_attention_args *a) { return attention_run(be, a, 1); }

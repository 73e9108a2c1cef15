/* CPU backend: rotary embedding and causal GQA attention (forward and
 * backward) over rotated q/k, with right-padding and packed-sequence masks.
 * The backward recomputes each query's scores and softmax, as flash
 * attention does, so no [q_len x kv_len] matrix is ever stored. */
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

typedef struct attn_job {
  const ftq_attention_args *a;
  float *scratch; /* per worker: 2 * kv_len floats */
} attn_job;

static inline int key_visible(const ftq_attention_args *a, int64_t b, int64_t qidx, int64_t j) {
  const size_t kb = (size_t)b * (size_t)a->kv_len;
  if (a->key_valid && !a->key_valid[kb + (size_t)j]) return 0;
  if (a->seq_ids && a->seq_ids[kb + (size_t)j] != a->seq_ids[kb + (size_t)qidx]) return 0;
  return 1;
}

static inline float dotf(const float *x, const float *y, int64_t n) {
  float s = 0.0f;
  for (int64_t i = 0; i < n; i++) s += x[i] * y[i];
  return s;
}

/* One item = one (batch row, head, query). */
static void attn_fwd_items(void *arg, size_t i0, size_t i1, int worker) {
  const attn_job *jb = arg;
  const ftq_attention_args *a = jb->a;
  const int64_t H = a->n_heads, KV = a->n_kv_heads, D = a->head_dim, group = H / KV;
  const int64_t qdim = H * D, kvdim = KV * D;
  float *sc = jb->scratch + (size_t)worker * 2u * (size_t)a->kv_len;
  for (size_t it = i0; it < i1; it++) {
    const int64_t i = (int64_t)(it % (size_t)a->q_len);
    const int64_t h = (int64_t)((it / (size_t)a->q_len) % (size_t)H);
    const int64_t b = (int64_t)(it / ((size_t)a->q_len * (size_t)H));
    const int64_t kh = h / group, qidx = a->kv_len - a->q_len + i;
    const float *q = a->q + ((size_t)(b * a->q_len + i) * (size_t)qdim) + (size_t)(h * D);
    const float *kbase = a->k + (size_t)b * (size_t)a->kv_stride * (size_t)kvdim + (size_t)(kh * D);
    const float *vbase = a->v + (size_t)b * (size_t)a->kv_stride * (size_t)kvdim + (size_t)(kh * D);
    float *o = a->out + ((size_t)(b * a->q_len + i) * (size_t)qdim) + (size_t)(h * D);
    float m = -INFINITY;
    for (int64_t j = 0; j <= qidx; j++) {
      if (!key_visible(a, b, qidx, j)) {
        sc[j] = -INFINITY;
        continue;
      }
      sc[j] = dotf(q, kbase + (size_t)j * (size_t)kvdim, D) * a->scale;
      if (sc[j] > m) m = sc[j];
    }
    memset(o, 0, sizeof(float) * (size_t)D);
    float *lse = a->lse ? &a->lse[(size_t)(b * a->q_len + i) * (size_t)H + (size_t)h] : NULL;
    if (m == -INFINITY) { /* sees no key */
      if (lse) *lse = -INFINITY;
      continue;
    }
    double sum = 0.0;
    for (int64_t j = 0; j <= qidx; j++) {
      if (sc[j] == -INFINITY) continue;
      sc[j] = expf(sc[j] - m);
      sum += sc[j];
    }
    const float inv = (float)(1.0 / sum);
    for (int64_t j = 0; j <= qidx; j++) {
      if (sc[j] == -INFINITY) continue;
      const float p = sc[j] * inv;
      const float *v = vbase + (size_t)j * (size_t)kvdim;
      for (int64_t d = 0; d < D; d++) o[d] += p * v[d];
    }
    if (lse) *lse = m + (float)log(sum);
  }
}

static ftq_status check_attention(const ftq_attention_args *a, int backward) {
  if (a->n_heads <= 0 || a->n_kv_heads <= 0 || a->n_heads % a->n_kv_heads || a->head_dim <= 0 ||
      a->q_len < 0 || a->kv_len < a->q_len || a->kv_stride < a->kv_len)
    return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "attention: bad shape (heads %lld/%lld, q_len %lld, kv_len %lld)",
                     (long long)a->n_heads, (long long)a->n_kv_heads, (long long)a->q_len, (long long)a->kv_len);
  if (backward && (a->kv_len != a->q_len || a->kv_stride != a->kv_len || !a->lse))
    return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "attention backward needs kv_len == q_len and the saved lse");
  return FTQ_OK;
}

static ftq_status scratch(const ftq_attention_args *a, ftq_cpu *cpu, float **out) {
  size_t need = ftq_attention_work_bytes(a->batch, a->q_len, a->kv_len, a->n_heads, cpu->num_threads);
  if (!a->work || a->work_bytes < need)
    return ftq_error(FTQ_ERR_INTERNAL, "attention: scratch of %zu bytes given, %zu needed", a->work_bytes, need);
  *out = (float *)(((uintptr_t)a->work + 255u) & ~(uintptr_t)255u);
  return FTQ_OK;
}

ftq_status ftq_cpu_attention(void *be, const ftq_attention_args *a) {
  ftq_cpu *cpu = be;
  FTQ_TRY(check_attention(a, 0));
  attn_job j = {a, NULL};
  FTQ_TRY(scratch(a, cpu, &j.scratch));
  size_t items = (size_t)a->batch * (size_t)a->n_heads * (size_t)a->q_len;
  size_t per_item = (size_t)(a->kv_len > 0 ? a->kv_len : 1) * (size_t)a->head_dim;
  ftq_parallel_for(cpu->pool, items, 1 + 32768 / per_item, attn_fwd_items, &j);
  return FTQ_OK;
}

/* One item = one (batch row, kv head): it owns dk/dv of that head and dq of
 * the query heads that share it, so items never write the same memory. */
static void attn_bwd_items(void *arg, size_t i0, size_t i1, int worker) {
  const attn_job *jb = arg;
  const ftq_attention_args *a = jb->a;
  const int64_t H = a->n_heads, KV = a->n_kv_heads, D = a->head_dim, group = H / KV, S = a->q_len;
  const int64_t qdim = H * D, kvdim = KV * D;
  float *p = jb->scratch + (size_t)worker * 2u * (size_t)a->kv_len, *dp = p + a->kv_len;
  for (size_t it = i0; it < i1; it++) {
    const int64_t kh = (int64_t)(it % (size_t)KV), b = (int64_t)(it / (size_t)KV);
    const size_t krow0 = (size_t)b * (size_t)S;
    const float *kbase = a->k + krow0 * (size_t)kvdim + (size_t)(kh * D);
    const float *vbase = a->v + krow0 * (size_t)kvdim + (size_t)(kh * D);
    float *dkbase = a->dk + krow0 * (size_t)kvdim + (size_t)(kh * D);
    float *dvbase = a->dv + krow0 * (size_t)kvdim + (size_t)(kh * D);
    for (int64_t j = 0; j < S; j++) {
      memset(dkbase + (size_t)j * (size_t)kvdim, 0, sizeof(float) * (size_t)D);
      memset(dvbase + (size_t)j * (size_t)kvdim, 0, sizeof(float) * (size_t)D);
    }
    for (int64_t h = kh * group; h < (kh + 1) * group; h++) {
      for (int64_t i = 0; i < S; i++) {
        const size_t qrow = (krow0 + (size_t)i) * (size_t)qdim + (size_t)(h * D);
        const float *q = a->q + qrow, *dout = a->dout + qrow;
        float *dq = a->dq + qrow;
        memset(dq, 0, sizeof(float) * (size_t)D);
        if (a->lse[(krow0 + (size_t)i) * (size_t)H + (size_t)h] == -INFINITY) continue; /* sees no key */
        /* the probabilities exactly as the forward computed them (recomputing
         * from the f32 log-sum-exp would cost accuracy the reference keeps) */
        float m = -INFINITY;
        for (int64_t j = 0; j <= i; j++) {
          if (!key_visible(a, b, i, j)) {
            p[j] = -INFINITY;
            continue;
          }
          p[j] = dotf(q, kbase + (size_t)j * (size_t)kvdim, D) * a->scale;
          if (p[j] > m) m = p[j];
        }
        double sum = 0.0;
        for (int64_t j = 0; j <= i; j++) {
          if (p[j] == -INFINITY) continue;
          p[j] = expf(p[j] - m);
          sum += p[j];
        }
        const float inv = (float)(1.0 / sum);
        double dsum = 0.0;
        for (int64_t j = 0; j <= i; j++) {
          if (p[j] == -INFINITY) {
            p[j] = 0.0f;
            continue;
          }
          p[j] *= inv;
          dp[j] = dotf(dout, vbase + (size_t)j * (size_t)kvdim, D);
          dsum += (double)p[j] * dp[j];
        }
        for (int64_t j = 0; j <= i; j++) {
          if (p[j] == 0.0f) continue;
          const float ds = (float)((double)p[j] * ((double)dp[j] - dsum)) * a->scale;
          const float *kj = kbase + (size_t)j * (size_t)kvdim;
          float *dkj = dkbase + (size_t)j * (size_t)kvdim, *dvj = dvbase + (size_t)j * (size_t)kvdim;
          for (int64_t d = 0; d < D; d++) {
            dq[d] += ds * kj[d];
            dkj[d] += ds * q[d];
            dvj[d] += p[j] * dout[d];
          }
        }
      }
    }
  }
}

ftq_status ftq_cpu_attention_backward(void *be, const ftq_attention_args *a) {
  ftq_cpu *cpu = be;
  FTQ_TRY(check_attention(a, 1));
  attn_job j = {a, NULL};
  FTQ_TRY(scratch(a, cpu, &j.scratch));
  ftq_parallel_for(cpu->pool, (size_t)a->batch * (size_t)a->n_kv_heads, 1, attn_bwd_items, &j);
  return FTQ_OK;
}

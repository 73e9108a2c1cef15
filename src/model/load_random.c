/* Models with random weights from a configuration alone (tests and
 * benchmarks of any shape). Initialised as transformers' _init_weights does
 * for Llama-family models: linear and embedding weights ~ N(0,
 * initializer_range^2), the pad token's embedding row zero, norms one,
 * biases zero. Element i of weight slot k gets the i-th normal of Philox
 * stream k under the seed, so values depend only on the seed and shape. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/context.h"
#include "core/error.h"
#include "core/half.h"
#include "core/rng.h"
#include "model/model_load.h"

typedef struct fill_job {
  uint64_t seed, stream;
  double std;
  int normal; /* else constant `value` */
  float value;
  ftq_dtype dtype;
  void *dst;
} fill_job;

/* Box-Muller on two 24-bit uniforms: element i uses words 2(i%2), 2(i%2)+1
 * of Philox block i/2. */
static inline double normal_at(uint64_t seed, uint64_t stream, uint64_t i) {
  uint32_t w[4];
  ftq_rng_block(seed, stream, i >> 1, w);
  int k = (int)(i & 1) * 2;
  double u1 = ((double)(w[k] >> 8) + 1.0) * (1.0 / 16777216.0); /* (0, 1] */
  double u2 = (double)(w[k + 1] >> 8) * (1.0 / 16777216.0);
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static void fill_range(void *arg, size_t begin, size_t end, int worker) {
  const fill_job *j = arg;
  (void)worker;
  for (size_t i = begin; i < end; i++) {
    float v = j->normal ? (float)(j->std * normal_at(j->seed, j->stream, i)) : j->value;
    if (j->dtype == FTQ_DTYPE_F32) {
      memcpy((char *)j->dst + 4 * i, &v, 4);
    } else {
      uint16_t h = j->dtype == FTQ_DTYPE_F16 ? ftq_f32_to_f16(v) : ftq_f32_to_bf16(v);
      memcpy((char *)j->dst + 2 * i, &h, 2);
    }
  }
}

ftq_status ftq_model_build_random(ftq_context *ctx, const ftq_model_config *cfg, uint64_t seed,
                                  const ftq_options *opts, struct ftq_model **out) {
  *out = NULL;
  double t0 = ftq_load_clock();
  ftq_dtype dt;
  FTQ_TRY(ftq_model_option_dtype(opts, &dt));
  if (dt == FTQ_DTYPE_COUNT) dt = cfg->torch_dtype;
  ftq_weight_slot *slots;
  size_t n_slots;
  FTQ_TRY(ftq_model_weight_slots(cfg, &slots, &n_slots));
  struct ftq_model *m = NULL;
  ftq_scratch buf = {0}, conv = {0};
  ftq_status st = ftq_model_new(ctx, cfg, &m);
  for (size_t k = 0; k < n_slots && st == FTQ_OK; k++) {
    const ftq_weight_slot *s = &slots[k];
    size_t n = (size_t)(s->ndim == 2 ? s->shape[0] * s->shape[1] : s->shape[0]);
    void *host = ftq_scratch_get(&buf, n * ftq_dtype_size(dt), s->name);
    if (!host) {
      st = FTQ_ERR_OUT_OF_MEMORY;
      break;
    }
    int normal = s->kind == FTQ_W_EMBED || s->kind == FTQ_W_PROJ || s->kind == FTQ_W_LM_HEAD;
    int is_norm = s->kind == FTQ_W_ATTN_NORM || s->kind == FTQ_W_FFN_NORM || s->kind == FTQ_W_FINAL_NORM;
    fill_job j = {seed, (uint64_t)k, cfg->initializer_range, normal, is_norm ? 1.0f : 0.0f, dt, host};
    ftq_parallel_for(ctx->pool, n, (size_t)1 << 14, fill_range, &j);
    if (s->kind == FTQ_W_EMBED && cfg->pad_token_id >= 0) /* nn.Embedding(padding_idx) */
      memset((char *)host + (size_t)cfg->pad_token_id * (size_t)cfg->hidden_size * ftq_dtype_size(dt), 0,
             (size_t)cfg->hidden_size * ftq_dtype_size(dt));
    st = ftq_model_store_slot(m, s, host, dt, dt, &conv, opts);
  }
  ftq_scratch_free(&buf);
  ftq_scratch_free(&conv);
  free(slots);
  if (st != FTQ_OK) {
    ftq_model_free(m);
    return st;
  }
  char detail[64];
  snprintf(detail, sizeof detail, "seed %llu", (unsigned long long)seed);
  ftq_model_log_summary(m, "random initialisation", detail, t0);
  *out = m;
  return FTQ_OK;
}

/* Tiny Llama models with random weights for tests that need no reference
 * file: the configuration is given, weights are drawn from splitmix64 and
 * installed by Hugging Face name (host copies are kept so a test can
 * recompute the model independently). */
#ifndef FTQ_TEST_RANDOM_MODEL_H
#define FTQ_TEST_RANDOM_MODEL_H

#include "model/graph.h"
#include "model/model_build.h"
#include "cpu_context.h"

/* Host copies of every weight, f32, by role. */
typedef struct rand_weights {
  float *emb, *final_norm, *head;
  float **norm1, **norm2;     /* [L] */
  float **w[FTQ_PROJ_COUNT];  /* [L] */
  float **b[FTQ_PROJ_COUNT];  /* [L], q/k/v/o only with attention_bias */
} rand_weights;

static inline float *rand_fill(uint64_t *s, size_t n, float scale, float offset) {
  float *x = malloc(n * sizeof(float));
  for (size_t i = 0; i < n; i++) x[i] = offset + scale * test_rand_uniform(s);
  return x;
}

static inline void rand_set(struct ftq_model *m, const char *name, int ndim, int64_t d0, int64_t d1, const float *x) {
  int64_t shape[2] = {d0, d1};
  REQUIRE_OK(ftq_model_set_hf_tensor(m, name, FTQ_DTYPE_F32, ndim, shape, x));
}

static inline void rand_weights_free(rand_weights *w, int64_t L) {
  free(w->emb);
  free(w->final_norm);
  free(w->head);
  for (int64_t l = 0; l < L; l++) {
    free(w->norm1[l]);
    free(w->norm2[l]);
    for (int p = 0; p < FTQ_PROJ_COUNT; p++) {
      free(w->w[p][l]);
      free(w->b[p][l]);
    }
  }
  free(w->norm1);
  free(w->norm2);
  for (int p = 0; p < FTQ_PROJ_COUNT; p++) {
    free(w->w[p]);
    free(w->b[p]);
  }
}

/* A model of configuration c with random weights (uniform, scaled like a
 * trained model's: linear weights ~ 1/sqrt(in), norms around 1). */
static inline struct ftq_model *rand_model(ftq_context *ctx, const ftq_model_config *c, uint64_t seed,
                                           rand_weights *out) {
  struct ftq_model *m;
  REQUIRE_OK(ftq_model_new(ctx, c, &m));
  uint64_t s = seed;
  const int64_t L = c->num_hidden_layers, H = c->hidden_size, V = c->vocab_size;
  rand_weights w;
  memset(&w, 0, sizeof w);
  w.emb = rand_fill(&s, (size_t)(V * H), 1.0f, 0.0f);
  rand_set(m, "model.embed_tokens.weight", 2, V, H, w.emb);
  w.final_norm = rand_fill(&s, (size_t)H, 0.3f, 1.0f);
  rand_set(m, "model.norm.weight", 1, H, 0, w.final_norm);
  if (!c->tie_word_embeddings) {
    w.head = rand_fill(&s, (size_t)(V * H), 1.7f / sqrtf((float)H), 0.0f);
    rand_set(m, "lm_head.weight", 2, V, H, w.head);
  }
  w.norm1 = calloc((size_t)L, sizeof(float *));
  w.norm2 = calloc((size_t)L, sizeof(float *));
  for (int p = 0; p < FTQ_PROJ_COUNT; p++) {
    w.w[p] = calloc((size_t)L, sizeof(float *));
    w.b[p] = calloc((size_t)L, sizeof(float *));
  }
  char name[128];
  for (int64_t l = 0; l < L; l++) {
    w.norm1[l] = rand_fill(&s, (size_t)H, 0.3f, 1.0f);
    snprintf(name, sizeof name, "model.layers.%lld.input_layernorm.weight", (long long)l);
    rand_set(m, name, 1, H, 0, w.norm1[l]);
    w.norm2[l] = rand_fill(&s, (size_t)H, 0.3f, 1.0f);
    snprintf(name, sizeof name, "model.layers.%lld.post_attention_layernorm.weight", (long long)l);
    rand_set(m, name, 1, H, 0, w.norm2[l]);
    for (int p = 0; p < FTQ_PROJ_COUNT; p++) {
      int64_t o, i;
      ftq_model_proj_shape(c, (ftq_proj)p, &o, &i);
      const char *block = p <= FTQ_PROJ_O ? "self_attn" : "mlp";
      w.w[p][l] = rand_fill(&s, (size_t)(o * i), 1.7f / sqrtf((float)i), 0.0f);
      snprintf(name, sizeof name, "model.layers.%lld.%s.%s.weight", (long long)l, block, ftq_proj_name((ftq_proj)p));
      rand_set(m, name, 2, o, i, w.w[p][l]);
      if (c->attention_bias && p <= FTQ_PROJ_O) {
        w.b[p][l] = rand_fill(&s, (size_t)o, 0.1f, 0.0f);
        snprintf(name, sizeof name, "model.layers.%lld.%s.%s.bias", (long long)l, block, ftq_proj_name((ftq_proj)p));
        rand_set(m, name, 1, o, 0, w.b[p][l]);
      }
    }
  }
  if (out) *out = w;
  else rand_weights_free(&w, L);
  return m;
}

/* A small default configuration. */
static inline ftq_model_config rand_config(int64_t H, int64_t I, int64_t L, int64_t heads, int64_t kv, int64_t V) {
  ftq_model_config c;
  memset(&c, 0, sizeof c);
  snprintf(c.architecture, sizeof c.architecture, "LlamaForCausalLM");
  c.hidden_size = H;
  c.intermediate_size = I;
  c.num_hidden_layers = L;
  c.num_attention_heads = heads;
  c.num_key_value_heads = kv;
  c.vocab_size = V;
  c.max_position_embeddings = 512;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 10000.0;
  c.bos_token_id = 1;
  c.eos_token_ids[0] = 2;
  c.n_eos_token_ids = 1;
  c.pad_token_id = -1;
  c.torch_dtype = FTQ_DTYPE_F32;
  ftq_model_config_finish(&c);
  return c;
}

#endif /* FTQ_TEST_RANDOM_MODEL_H */

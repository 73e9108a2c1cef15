/* Model object lifetime and configuration checks (shared by every loader). */
#include "model/model.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "model/graph.h"

void ftq_model_config_finish(ftq_model_config *cfg) {
  if (cfg->num_key_value_heads <= 0) cfg->num_key_value_heads = cfg->num_attention_heads;
  if (cfg->head_dim <= 0 && cfg->num_attention_heads > 0) cfg->head_dim = cfg->hidden_size / cfg->num_attention_heads;
}

ftq_status ftq_model_config_check(const ftq_model_config *c) {
#define POSITIVE(f)                                                                                 \
  if (c->f <= 0) return ftq_error(FTQ_ERR_FORMAT, "model config: " #f " = %lld must be positive", \
                                  (long long)c->f)
  POSITIVE(hidden_size);
  POSITIVE(intermediate_size);
  POSITIVE(num_hidden_layers);
  POSITIVE(num_attention_heads);
  POSITIVE(num_key_value_heads);
  POSITIVE(head_dim);
  POSITIVE(vocab_size);
#undef POSITIVE
  if (c->num_attention_heads % c->num_key_value_heads)
    return ftq_error(FTQ_ERR_FORMAT, "model config: num_attention_heads = %lld is not a multiple of num_key_value_heads = %lld",
                     (long long)c->num_attention_heads, (long long)c->num_key_value_heads);
  if (c->head_dim % 2)
    return ftq_error(FTQ_ERR_UNSUPPORTED, "model config: head_dim = %lld must be even for rotary embeddings",
                     (long long)c->head_dim);
  if (!(c->rms_norm_eps > 0) || !(c->rms_norm_eps < 1))
    return ftq_error(FTQ_ERR_FORMAT, "model config: rms_norm_eps = %g must be in (0, 1)", c->rms_norm_eps);
  if (!(c->rope_theta > 0)) return ftq_error(FTQ_ERR_FORMAT, "model config: rope_theta = %g must be positive", c->rope_theta);
  if (c->rope_scaling != FTQ_ROPE_DEFAULT && !(c->rope_factor > 0))
    return ftq_error(FTQ_ERR_FORMAT, "model config: rope_scaling.factor = %g must be positive", c->rope_factor);
  if (c->rope_scaling == FTQ_ROPE_LLAMA3 &&
      (!(c->rope_low_freq_factor > 0) || !(c->rope_high_freq_factor > c->rope_low_freq_factor) ||
       c->rope_original_max_position <= 0))
    return ftq_error(FTQ_ERR_FORMAT,
                     "model config: llama3 rope_scaling needs 0 < low_freq_factor (%g) < high_freq_factor (%g) and "
                     "original_max_position_embeddings > 0 (%lld)",
                     c->rope_low_freq_factor, c->rope_high_freq_factor, (long long)c->rope_original_max_position);
  /* sizes that overflow 64-bit element counts are malformed, not just big */
  if (c->hidden_size > (1 << 20) || c->intermediate_size > (1 << 22) || c->vocab_size > (1 << 24) ||
      c->num_hidden_layers > 1024 || c->num_attention_heads > 1024 || c->head_dim > 4096)
    return ftq_error(FTQ_ERR_UNSUPPORTED, "model config: sizes beyond what libftq supports (hidden %lld, intermediate "
                     "%lld, vocab %lld, layers %lld)", (long long)c->hidden_size, (long long)c->intermediate_size,
                     (long long)c->vocab_size, (long long)c->num_hidden_layers);
  return FTQ_OK;
}

ftq_status ftq_model_new(ftq_context *ctx, const ftq_model_config *cfg, struct ftq_model **out) {
  *out = NULL;
  FTQ_TRY(ftq_model_config_check(cfg));
  struct ftq_model *m = ftq_calloc(1, sizeof *m, "model");
  if (!m) return FTQ_ERR_OUT_OF_MEMORY;
  m->layers = ftq_calloc((size_t)cfg->num_hidden_layers, sizeof *m->layers, "model layers");
  if (!m->layers) {
    free(m);
    return FTQ_ERR_OUT_OF_MEMORY;
  }
  m->ctx = ctx;
  m->cfg = *cfg;
  *out = m;
  return FTQ_OK;
}

void ftq_model_free(struct ftq_model *m) {
  if (!m) return;
  ftq_context *ctx = m->ctx;
  ftq_graph_cache_release(m);
  if (m->layers) {
    for (int64_t l = 0; l < m->cfg.num_hidden_layers; l++) {
      ftq_layer *L = &m->layers[l];
      ftq_tensor_free(ctx, &L->attn_norm);
      ftq_tensor_free(ctx, &L->ffn_norm);
      for (int p = 0; p < FTQ_PROJ_COUNT; p++) {
        ftq_qtensor_release(&L->proj[p]);
        ftq_tensor_free(ctx, &L->bias[p]);
      }
    }
    free(m->layers);
  }
  ftq_tensor_free(ctx, &m->tok_embeddings);
  ftq_tensor_free(ctx, &m->final_norm);
  ftq_tensor_free(ctx, &m->lm_head);
  free(m->source_path);
  free(m);
}

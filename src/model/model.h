/* The model object: configuration plus base weights on a context's device.
 * Linear weights are ftq_qtensors (quantized or not, see quant/qtensor.h);
 * embeddings, norms and the LM head keep their stored precision. The graph
 * code (src/model) reads this struct; loaders (src/io via model_load.c)
 * fill it. */
#ifndef FTQ_MODEL_MODEL_H
#define FTQ_MODEL_MODEL_H

#include "core/tensor.h"
#include "model/config.h"
#include "quant/qtensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The seven linear projections of a decoder layer, in PEFT's naming. */
typedef enum ftq_proj {
  FTQ_PROJ_Q = 0,    /* self_attn.q_proj  [n_heads*head_dim, hidden] */
  FTQ_PROJ_K = 1,    /* self_attn.k_proj  [n_kv_heads*head_dim, hidden] */
  FTQ_PROJ_V = 2,    /* self_attn.v_proj  [n_kv_heads*head_dim, hidden] */
  FTQ_PROJ_O = 3,    /* self_attn.o_proj  [hidden, n_heads*head_dim] */
  FTQ_PROJ_GATE = 4, /* mlp.gate_proj     [intermediate, hidden] */
  FTQ_PROJ_UP = 5,   /* mlp.up_proj       [intermediate, hidden] */
  FTQ_PROJ_DOWN = 6, /* mlp.down_proj     [hidden, intermediate] */
  FTQ_PROJ_COUNT = 7
} ftq_proj;

/* "q_proj", ... as PEFT's target_modules name them. */
const char *ftq_proj_name(ftq_proj p);

typedef struct ftq_layer {
  ftq_tensor attn_norm;             /* input_layernorm.weight [hidden] */
  ftq_tensor ffn_norm;              /* post_attention_layernorm.weight [hidden] */
  ftq_qtensor proj[FTQ_PROJ_COUNT]; /* base weights, frozen */
  ftq_tensor bias[FTQ_PROJ_COUNT];  /* only with attention_bias (data NULL otherwise) */
} ftq_layer;

struct ftq_model {
  ftq_context *ctx;
  ftq_model_config cfg;
  ftq_tensor tok_embeddings; /* model.embed_tokens.weight [vocab, hidden] */
  ftq_layer *layers;         /* [num_hidden_layers] */
  ftq_tensor final_norm;     /* model.norm.weight [hidden] */
  ftq_tensor lm_head;        /* lm_head.weight [vocab, hidden]; data NULL when tied */
  struct ftq_lora *active_lora; /* adapter the graph applies, or NULL (src/lora; not owned) */
  struct ftq_graph_cache *graph_cache; /* arenas the graph reuses between calls (model/graph.c) */
  char *source_path;         /* the path ftq_model_load() was given (heap), NULL for other models: PEFT's
                                base_model_name_or_path and where a merged model copies tokenizer files from */
};

#ifdef __cplusplus
}
#endif


#ifdef __cplusplus
extern "C" {
#endif

/* Checks a configuration's values against each other (positive sizes,
 * heads dividing, GQA groups whole, ...); errors name the field. */
ftq_status ftq_model_config_check(const ftq_model_config *cfg);

/* Fills the defaults config.json leaves implicit (num_key_value_heads,
 * head_dim) before ftq_model_config_check. */
void ftq_model_config_finish(ftq_model_config *cfg);

/* Allocates the model object and its layer array; no weight buffers yet
 * (loaders and initialisers fill them). */
ftq_status ftq_model_new(ftq_context *ctx, const ftq_model_config *cfg, struct ftq_model **out);

/* Frees every weight buffer and the object. NULL is a no-op. */
void ftq_model_free(struct ftq_model *m);

#ifdef __cplusplus
}
#endif

#endif /* FTQ_MODEL_MODEL_H */

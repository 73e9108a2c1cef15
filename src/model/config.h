/* Architecture configuration of a Llama-family model, with the fields and
 * names of Hugging Face's config.json (LlamaConfig). */
#ifndef FTQ_MODEL_CONFIG_H
#define FTQ_MODEL_CONFIG_H

#include <stdint.h>

#include "core/dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ftq_rope_scaling_type {
  FTQ_ROPE_DEFAULT = 0, /* no scaling */
  FTQ_ROPE_LINEAR = 1,  /* positions divided by `factor` */
  FTQ_ROPE_LLAMA3 = 2   /* Llama 3.1 frequency-dependent scaling */
} ftq_rope_scaling_type;

#define FTQ_MAX_EOS_IDS 8

typedef struct ftq_model_config {
  char architecture[64];   /* "LlamaForCausalLM", "MistralForCausalLM", ... */
  int64_t hidden_size;
  int64_t intermediate_size;
  int64_t num_hidden_layers;
  int64_t num_attention_heads;
  int64_t num_key_value_heads; /* GQA; = num_attention_heads when absent */
  int64_t head_dim;            /* = hidden_size / num_attention_heads when absent */
  int64_t vocab_size;
  int64_t max_position_embeddings;
  double rms_norm_eps;
  double rope_theta;
  ftq_rope_scaling_type rope_scaling;
  double rope_factor;                 /* linear, llama3 */
  double rope_low_freq_factor;        /* llama3 */
  double rope_high_freq_factor;       /* llama3 */
  int64_t rope_original_max_position; /* llama3: original_max_position_embeddings */
  int tie_word_embeddings;
  int attention_bias;                 /* q/k/v/o biases (Qwen2: q/k/v only) */
  int64_t bos_token_id;               /* -1 when absent */
  int64_t eos_token_ids[FTQ_MAX_EOS_IDS];
  int n_eos_token_ids;
  int64_t pad_token_id;               /* -1 when absent */
  ftq_dtype torch_dtype;              /* stored precision of the checkpoint */
  double initializer_range;           /* std of the normal init (transformers' _init_weights) */
  int64_t sliding_window;             /* Mistral: attention window in tokens; 0 = none. The graph
                                         must refuse sequences longer than a non-zero window. */
} ftq_model_config;

#ifdef __cplusplus
}
#endif

#endif /* FTQ_MODEL_CONFIG_H */

/* Building a model tensor by tensor from host memory (Hugging Face names). */
#ifndef FTQ_MODEL_MODEL_BUILD_H
#define FTQ_MODEL_MODEL_BUILD_H

#include "model/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Copies `host` (dtype f32/f16/bf16, the HF shape) into the weight named as
 * in a Hugging Face Llama checkpoint: model.embed_tokens.weight,
 * model.norm.weight, lm_head.weight, model.layers.N.{input_layernorm,
 * post_attention_layernorm}.weight, model.layers.N.self_attn.{q,k,v,o}_proj.
 * {weight,bias}, model.layers.N.mlp.{gate,up,down}_proj.weight. Linear
 * weights are stored unquantized (NONE qtensors). Replaces a previous value.
 * FTQ_ERR_NOT_FOUND for other names, FTQ_ERR_SHAPE for wrong shapes. */
ftq_status ftq_model_set_hf_tensor(struct ftq_model *m, const char *name, ftq_dtype dtype, int ndim,
                                   const int64_t *shape, const void *host);

/* Installs a (quantized) qtensor as layer `layer`'s projection p; takes
 * ownership of its buffers (q is zeroed) on success. */
ftq_status ftq_model_set_linear(struct ftq_model *m, int64_t layer, ftq_proj p, ftq_qtensor *q);

/* [out, in] of projection p under a configuration. */
void ftq_model_proj_shape(const ftq_model_config *c, ftq_proj p, int64_t *out, int64_t *in);

#ifdef __cplusplus
}
#endif

#endif /* FTQ_MODEL_MODEL_BUILD_H */

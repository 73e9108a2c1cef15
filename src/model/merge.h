/* Merging a LoRA adapter into the base weights, W' = dequant(W) + scaling B A,
 * on the context's device: the one computation behind merged weights on the
 * public API, merged model folders (merge.c) and quantization-aware training
 * (qat.c, which fake-quantizes the same W'). */
#ifndef FTQ_MODEL_MERGE_H
#define FTQ_MODEL_MERGE_H

#include <stdint.h>

#include "lora/lora.h"
#include "model/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* dst (device, f32 [out, in]) = dequant(w) in f32, plus scaling * B A when
 * `lm` is not NULL (B [out, r] @ A [r, in], one GEMM with beta 1). */
ftq_status ftq_merge_weight(ftq_context *ctx, const ftq_qtensor *w, const ftq_lora_module *lm, int64_t r, float scaling,
                            float *dst);

#ifdef __cplusplus
}
#endif

#endif /* FTQ_MODEL_MERGE_H */

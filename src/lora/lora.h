/* LoRA adapters (PEFT's LoraConfig semantics): per targeted projection of
 * every decoder layer an A [r, in] and a B [out, r] in f32, with f32
 * gradients. y = base(x) + scaling * B(A(dropout(x))). Internal view of the
 * public ftq_lora handle (include/libftq/ftq_lora.h). */
#ifndef FTQ_LORA_LORA_H
#define FTQ_LORA_LORA_H

#include <stdint.h>

#include "core/tensor.h"
#include "libftq/ftq_lora.h"
#include "model/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Philox streams of the adapter's initial values (namespace 1 in the top
 * byte; see docs/model.md for every namespace libftq uses). */
#define FTQ_RNG_NS_LORA_INIT (1ull << 56)

typedef struct ftq_lora_module {
  ftq_tensor a, b;           /* [r, in], [out, r]; data NULL when the projection is not targeted */
  ftq_tensor grad_a, grad_b; /* same shapes */
} ftq_lora_module;

struct ftq_lora {
  struct ftq_model *model;
  char name[64];             /* PEFT's adapter name ("default") */
  int64_t r;
  double lora_alpha;
  float lora_dropout;
  int use_rslora;
  float scaling;             /* lora_alpha / r, or / sqrt(r) with use_rslora */
  unsigned targets;          /* bit p set: projection p is adapted */
  char init[16];             /* "true" | "false" | "gaussian" */
  uint64_t seed;
  ftq_lora_module *modules;  /* [num_hidden_layers * FTQ_PROJ_COUNT], layer-major */
  size_t n_tensors;          /* 2 per adapted module */
  int qat;                   /* quantization-aware: the graph runs fake_quant(dequant(W) + scaling B A) (model/qat.h) */
  ftq_qconfig qat_cfg;       /* QAT quantization of projections whose base weight is not quantized */
};

/* The module of (layer, proj), or NULL when that projection is not adapted. */
static inline const ftq_lora_module *ftq_lora_module_at(const struct ftq_lora *l, int64_t layer, int proj) {
  if (!l || !(l->targets & (1u << proj))) return NULL;
  return &l->modules[layer * FTQ_PROJ_COUNT + proj];
}

/* The model's active adapter, or NULL. */
struct ftq_lora *ftq_model_active_lora(const struct ftq_model *m);

#ifdef __cplusplus
}
#endif

#endif /* FTQ_LORA_LORA_H */

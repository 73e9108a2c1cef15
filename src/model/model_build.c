/* Filling a model's weights one tensor at a time by Hugging Face name, from
 * host memory: what tests, benchmarks and loaders use to build a model
 * without a file format in between. Linear weights become unquantized
 * (NONE) qtensors here; quantized ones are installed with
 * ftq_model_set_linear. */
#include "model/model_build.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

static ftq_status expect_shape(const char *name, int ndim, const int64_t *shape, int want_ndim, int64_t d0,
                               int64_t d1) {
  if (ndim != want_ndim || shape[0] != d0 || (want_ndim == 2 && shape[1] != d1)) {
    char got[64];
    if (ndim == 1) snprintf(got, sizeof got, "[%lld]", (long long)shape[0]);
    else if (ndim == 2) snprintf(got, sizeof got, "[%lld, %lld]", (long long)shape[0], (long long)shape[1]);
    else snprintf(got, sizeof got, "%d dimensions", ndim);
    if (want_ndim == 1)
      return ftq_error(FTQ_ERR_SHAPE, "tensor '%s' is %s, expected [%lld]", name, got, (long long)d0);
    return ftq_error(FTQ_ERR_SHAPE, "tensor '%s' is %s, expected [%lld, %lld]", name, got, (long long)d0,
                     (long long)d1);
  }
  return FTQ_OK;
}

static ftq_status store_plain(struct ftq_model *m, ftq_tensor *t, const char *name, ftq_dtype dtype, int ndim,
                              const int64_t *shape, const void *host) {
  if (dtype != FTQ_DTYPE_F32 && dtype != FTQ_DTYPE_F16 && dtype != FTQ_DTYPE_BF16)
    return ftq_error(FTQ_ERR_UNSUPPORTED, "tensor '%s': dtype %s (f32, f16 or bf16 expected)", name,
                     ftq_dtype_name(dtype));
  ftq_tensor_free(m->ctx, t);
  FTQ_TRY(ftq_tensor_alloc(m->ctx, FTQ_MEM_WEIGHTS, dtype, ndim, shape, name, t));
  ftq_status st = ftq_tensor_upload(m->ctx, t, host);
  if (st != FTQ_OK) ftq_tensor_free(m->ctx, t);
  return st;
}

void ftq_model_proj_shape(const ftq_model_config *c, ftq_proj p, int64_t *out, int64_t *in) {
  const int64_t H = c->hidden_size, I = c->intermediate_size;
  const int64_t q = c->num_attention_heads * c->head_dim, kv = c->num_key_value_heads * c->head_dim;
  switch (p) {
    case FTQ_PROJ_Q: *out = q, *in = H; break;
    case FTQ_PROJ_K:
    case FTQ_PROJ_V: *out = kv, *in = H; break;
    case FTQ_PROJ_O: *out = H, *in = q; break;
    case FTQ_PROJ_GATE:
    case FTQ_PROJ_UP: *out = I, *in = H; break;
    default: *out = H, *in = I; break;
  }
}

ftq_status ftq_model_set_linear(struct ftq_model *m, int64_t layer, ftq_proj p, ftq_qtensor *q) {
  FTQ_CHECK_ARG(m && q && layer >= 0 && layer < m->cfg.num_hidden_layers && (unsigned)p < FTQ_PROJ_COUNT,
                "ftq_model_set_linear: bad arguments");
  int64_t out, in;
  ftq_model_proj_shape(&m->cfg, p, &out, &in);
  if (q->ndim != 2 || q->shape[0] != out || q->shape[1] != in || q->ctx != m->ctx)
    return ftq_error(FTQ_ERR_SHAPE, "layer %lld %s: weight must be [%lld, %lld] on the model's context",
                     (long long)layer, ftq_proj_name(p), (long long)out, (long long)in);
  ftq_qtensor_release(&m->layers[layer].proj[p]);
  m->layers[layer].proj[p] = *q;
  memset(q, 0, sizeof *q);
  return FTQ_OK;
}

ftq_status ftq_model_set_hf_tensor(struct ftq_model *m, const char *name, ftq_dtype dtype, int ndim,
                                   const int64_t *shape, const void *host) {
  FTQ_CHECK_ARG(m && name && shape && host, "ftq_model_set_hf_tensor: arguments must not be NULL");
  const ftq_model_config *c = &m->cfg;
  const int64_t H = c->hidden_size, V = c->vocab_size;
  if (strcmp(name, "model.embed_tokens.weight") == 0) {
    FTQ_TRY(expect_shape(name, ndim, shape, 2, V, H));
    return store_plain(m, &m->tok_embeddings, name, dtype, ndim, shape, host);
  }
  if (strcmp(name, "lm_head.weight") == 0) {
    FTQ_TRY(expect_shape(name, ndim, shape, 2, V, H));
    return store_plain(m, &m->lm_head, name, dtype, ndim, shape, host);
  }
  if (strcmp(name, "model.norm.weight") == 0) {
    FTQ_TRY(expect_shape(name, ndim, shape, 1, H, 0));
    return store_plain(m, &m->final_norm, name, dtype, ndim, shape, host);
  }
  long long layer;
  int used = 0;
  if (sscanf(name, "model.layers.%lld.%n", &layer, &used) != 1 || used == 0 || layer < 0 ||
      layer >= c->num_hidden_layers)
    return ftq_error(FTQ_ERR_NOT_FOUND, "tensor '%s' is not a Llama weight of this model", name);
  const char *rest = name + used;
  ftq_layer *L = &m->layers[layer];
  if (strcmp(rest, "input_layernorm.weight") == 0) {
    FTQ_TRY(expect_shape(name, ndim, shape, 1, H, 0));
    return store_plain(m, &L->attn_norm, name, dtype, ndim, shape, host);
  }
  if (strcmp(rest, "post_attention_layernorm.weight") == 0) {
    FTQ_TRY(expect_shape(name, ndim, shape, 1, H, 0));
    return store_plain(m, &L->ffn_norm, name, dtype, ndim, shape, host);
  }
  for (int p = 0; p < FTQ_PROJ_COUNT; p++) {
    char w[64], b[64];
    const char *block = p <= FTQ_PROJ_O ? "self_attn" : "mlp";
    snprintf(w, sizeof w, "%s.%s.weight", block, ftq_proj_name((ftq_proj)p));
    snprintf(b, sizeof b, "%s.%s.bias", block, ftq_proj_name((ftq_proj)p));
    int64_t out, in;
    ftq_model_proj_shape(c, (ftq_proj)p, &out, &in);
    if (strcmp(rest, w) == 0) {
      FTQ_TRY(expect_shape(name, ndim, shape, 2, out, in));
      ftq_qtensor q;
      FTQ_TRY(ftq_qtensor_init_plain(m->ctx, dtype, out, in, host, name, &q));
      return ftq_model_set_linear(m, layer, (ftq_proj)p, &q);
    }
    if (strcmp(rest, b) == 0) {
      FTQ_TRY(expect_shape(name, ndim, shape, 1, out, 0));
      return store_plain(m, &L->bias[p], name, dtype, ndim, shape, host);
    }
  }
  return ftq_error(FTQ_ERR_NOT_FOUND, "tensor '%s' is not a Llama weight of this model", name);
}

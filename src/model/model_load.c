/* Storing loaded weights on the device: the load options, the one function
 * base linear weights go through (ftq_model_store_linear: where
 * quantization at load plugs in), non-linear weights uploaded in bounded
 * chunks, and threaded host-side dtype conversion. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/context.h"
#include "core/error.h"
#include "core/half.h"
#include "core/options.h"
#include "model/model_load.h"
#include "quant/qtensor.h"

static const ftq_option_def model_option_defs[] = {
    {"torch_dtype", "model", FTQ_OPTION_STRING, "auto", 0, 0, "auto|float32|float16|bfloat16", 0,
     "precision model weights are kept in (from_pretrained's torch_dtype); auto = as stored in the checkpoint"},
};
FTQ_OPTION_TABLE(model, model_option_defs);

ftq_status ftq_model_option_dtype(const ftq_options *opts, ftq_dtype *out) {
  const char *v;
  FTQ_TRY(ftq_options_get_string(opts, "torch_dtype", &v));
  if (strcmp(v, "float32") == 0) *out = FTQ_DTYPE_F32;
  else if (strcmp(v, "float16") == 0) *out = FTQ_DTYPE_F16;
  else if (strcmp(v, "bfloat16") == 0) *out = FTQ_DTYPE_BF16;
  else *out = FTQ_DTYPE_COUNT;
  return FTQ_OK;
}

const char *ftq_hf_proj_name(int64_t layer, ftq_proj p, const char *suffix, char *buf, size_t len) {
  snprintf(buf, len, "model.layers.%lld.%s.%s.%s", (long long)layer, p <= FTQ_PROJ_O ? "self_attn" : "mlp",
           ftq_proj_name(p), suffix);
  return buf;
}

void *ftq_scratch_get(ftq_scratch *s, size_t bytes, const char *what) {
  if (bytes <= s->cap) return s->p;
  free(s->p);
  s->cap = 0;
  s->p = ftq_malloc(bytes ? bytes : 1, what);
  if (s->p) s->cap = bytes;
  return s->p;
}

void ftq_scratch_free(ftq_scratch *s) {
  free(s->p);
  s->p = NULL;
  s->cap = 0;
}

/* ---------------------------------------------------------------------- */
/* Host conversion                                                          */

typedef struct convert_job {
  void *dst;
  ftq_dtype dt;
  const void *src;
  ftq_dtype st;
} convert_job;

static inline float load_elem(const void *src, ftq_dtype t, size_t i) {
  switch (t) {
    case FTQ_DTYPE_F32: {
      float f;
      memcpy(&f, (const char *)src + 4 * i, 4);
      return f;
    }
    case FTQ_DTYPE_F16: {
      uint16_t h;
      memcpy(&h, (const char *)src + 2 * i, 2);
      return ftq_f16_to_f32(h);
    }
    case FTQ_DTYPE_BF16: {
      uint16_t h;
      memcpy(&h, (const char *)src + 2 * i, 2);
      return ftq_bf16_to_f32(h);
    }
    default: {
      double d;
      memcpy(&d, (const char *)src + 8 * i, 8);
      return (float)d;
    }
  }
}

static void convert_range(void *arg, size_t begin, size_t end, int worker) {
  const convert_job *j = arg;
  (void)worker;
  if (j->dt == j->st) {
    size_t es = ftq_dtype_size(j->dt);
    memcpy((char *)j->dst + begin * es, (const char *)j->src + begin * es, (end - begin) * es);
    return;
  }
  for (size_t i = begin; i < end; i++) {
    float f = load_elem(j->src, j->st, i);
    switch (j->dt) {
      case FTQ_DTYPE_F32: memcpy((char *)j->dst + 4 * i, &f, 4); break;
      case FTQ_DTYPE_F16: {
        uint16_t h = ftq_f32_to_f16(f);
        memcpy((char *)j->dst + 2 * i, &h, 2);
        break;
      }
      default: {
        uint16_t h = ftq_f32_to_bf16(f);
        memcpy((char *)j->dst + 2 * i, &h, 2);
        break;
      }
    }
  }
}

static int float_dtype(ftq_dtype t) {
  return t == FTQ_DTYPE_F32 || t == FTQ_DTYPE_F16 || t == FTQ_DTYPE_BF16;
}

ftq_status ftq_host_convert(ftq_context *ctx, void *dst, ftq_dtype dst_dtype, const void *src, ftq_dtype src_dtype,
                            size_t n) {
  if (!float_dtype(dst_dtype) || !(float_dtype(src_dtype) || src_dtype == FTQ_DTYPE_F64))
    return ftq_error(FTQ_ERR_UNSUPPORTED, "conversion %s -> %s is not supported", ftq_dtype_name(src_dtype),
                     ftq_dtype_name(dst_dtype));
  convert_job j = {dst, dst_dtype, src, src_dtype};
  ftq_parallel_for(ctx ? ctx->pool : NULL, n, (size_t)1 << 16, convert_range, &j);
  return FTQ_OK;
}

/* ---------------------------------------------------------------------- */
/* Storing weights                                                          */

ftq_status ftq_model_store_linear(struct ftq_model *m, int64_t layer, ftq_proj proj, const void *host, ftq_dtype dtype,
                                  int64_t rows, int64_t cols, const ftq_options *opts) {
  char what[96];
  ftq_hf_proj_name(layer, proj, "weight", what, sizeof what);
  if (layer < 0 || layer >= m->cfg.num_hidden_layers || (unsigned)proj >= FTQ_PROJ_COUNT)
    return ftq_error(FTQ_ERR_INTERNAL, "store_linear: %s is not a weight of this model", what);
  ftq_qtensor *q = &m->layers[layer].proj[proj];
  ftq_qtensor_release(q);
  /* quantized as the options say (load_in_4bit / load_in_8bit, ...);
   * a plain copy otherwise */
  return ftq_qtensor_quantize_host(m->ctx, opts, host, dtype, rows, cols, what, q);
}

ftq_status ftq_model_store_tensor(struct ftq_model *m, ftq_tensor *dst, const char *name, const void *host,
                                  ftq_dtype src_dtype, ftq_dtype dst_dtype, int ndim, const int64_t *shape) {
  ftq_context *ctx = m->ctx;
  ftq_tensor_free(ctx, dst);
  FTQ_TRY(ftq_tensor_alloc(ctx, FTQ_MEM_WEIGHTS, dst_dtype, ndim, shape, name, dst));
  ftq_status st = FTQ_OK;
  if (src_dtype == dst_dtype) {
    st = ftq_tensor_upload(ctx, dst, host);
  } else {
    /* bounded host memory: convert and upload 1M elements at a time */
    const size_t chunk = (size_t)1 << 20;
    size_t n = (size_t)ftq_tensor_numel(dst), es = ftq_dtype_size(dst_dtype), ss = ftq_dtype_size(src_dtype);
    void *tmp = ftq_malloc((n < chunk ? n : chunk) * es + 1, name);
    if (!tmp) st = FTQ_ERR_OUT_OF_MEMORY;
    for (size_t off = 0; off < n && st == FTQ_OK; off += chunk) {
      size_t k = n - off < chunk ? n - off : chunk;
      st = ftq_host_convert(ctx, tmp, dst_dtype, (const char *)host + off * ss, src_dtype, k);
      if (st == FTQ_OK) st = ctx->be->copy(ctx->be_ctx, (char *)dst->data + off * es, tmp, k * es, FTQ_COPY_H2D);
    }
    free(tmp);
  }
  if (st != FTQ_OK) {
    ftq_tensor_free(ctx, dst);
    return ftq_error_context(st, "storing %s", name);
  }
  return FTQ_OK;
}

/* ---------------------------------------------------------------------- */
/* The weight list                                                          */

static int64_t proj_rows(const ftq_model_config *c, ftq_proj p) {
  switch (p) {
    case FTQ_PROJ_Q: return c->num_attention_heads * c->head_dim;
    case FTQ_PROJ_K: case FTQ_PROJ_V: return c->num_key_value_heads * c->head_dim;
    case FTQ_PROJ_O: case FTQ_PROJ_DOWN: return c->hidden_size;
    default: return c->intermediate_size;
  }
}

static int64_t proj_cols(const ftq_model_config *c, ftq_proj p) {
  switch (p) {
    case FTQ_PROJ_O: return c->num_attention_heads * c->head_dim;
    case FTQ_PROJ_DOWN: return c->intermediate_size;
    default: return c->hidden_size;
  }
}

/* Projections with a bias: none, q/k/v (Qwen2) or q/k/v/o (Llama's attention_bias). */
static int has_bias(const ftq_model_config *c, ftq_proj p) {
  if (!c->attention_bias || p > FTQ_PROJ_O) return 0;
  return p != FTQ_PROJ_O || strcmp(c->architecture, "Qwen2ForCausalLM") != 0;
}

ftq_status ftq_model_weight_slots(const ftq_model_config *c, ftq_weight_slot **slots, size_t *n) {
  size_t per_layer = 2 + 2 * FTQ_PROJ_COUNT, cap = 3 + (size_t)c->num_hidden_layers * per_layer;
  ftq_weight_slot *s = ftq_calloc(cap, sizeof *s, "weight list");
  if (!s) return FTQ_ERR_OUT_OF_MEMORY;
  size_t k = 0;
  s[k] = (ftq_weight_slot){FTQ_W_EMBED, -1, 0, "model.embed_tokens.weight", 2, {c->vocab_size, c->hidden_size}};
  k++;
  for (int64_t l = 0; l < c->num_hidden_layers; l++) {
    s[k] = (ftq_weight_slot){FTQ_W_ATTN_NORM, l, 0, "", 1, {c->hidden_size, 0}};
    snprintf(s[k++].name, sizeof s->name, "model.layers.%lld.input_layernorm.weight", (long long)l);
    for (int p = 0; p < FTQ_PROJ_COUNT; p++) {
      s[k] = (ftq_weight_slot){FTQ_W_PROJ, l, (ftq_proj)p, "", 2, {proj_rows(c, (ftq_proj)p), proj_cols(c, (ftq_proj)p)}};
      ftq_hf_proj_name(l, (ftq_proj)p, "weight", s[k].name, sizeof s->name);
      k++;
      if (has_bias(c, (ftq_proj)p)) {
        s[k] = (ftq_weight_slot){FTQ_W_BIAS, l, (ftq_proj)p, "", 1, {proj_rows(c, (ftq_proj)p), 0}};
        ftq_hf_proj_name(l, (ftq_proj)p, "bias", s[k].name, sizeof s->name);
        k++;
      }
    }
    s[k] = (ftq_weight_slot){FTQ_W_FFN_NORM, l, 0, "", 1, {c->hidden_size, 0}};
    snprintf(s[k++].name, sizeof s->name, "model.layers.%lld.post_attention_layernorm.weight", (long long)l);
  }
  s[k++] = (ftq_weight_slot){FTQ_W_FINAL_NORM, -1, 0, "model.norm.weight", 1, {c->hidden_size, 0}};
  if (!c->tie_word_embeddings)
    s[k++] = (ftq_weight_slot){FTQ_W_LM_HEAD, -1, 0, "lm_head.weight", 2, {c->vocab_size, c->hidden_size}};
  *slots = s;
  *n = k;
  return FTQ_OK;
}

long ftq_model_find_slot(const ftq_weight_slot *slots, size_t n, const char *name) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(slots[i].name, name) == 0) return (long)i;
  return -1;
}

ftq_status ftq_model_store_slot(struct ftq_model *m, const ftq_weight_slot *s, const void *host, ftq_dtype src_dtype,
                                ftq_dtype dst_dtype, ftq_scratch *scratch, const ftq_options *opts) {
  if (s->kind == FTQ_W_PROJ) {
    const void *src = host;
    if (src_dtype != dst_dtype) {
      size_t n = (size_t)(s->shape[0] * s->shape[1]);
      void *buf = ftq_scratch_get(scratch, n * ftq_dtype_size(dst_dtype), s->name);
      if (!buf) return FTQ_ERR_OUT_OF_MEMORY;
      FTQ_TRY(ftq_host_convert(m->ctx, buf, dst_dtype, host, src_dtype, n));
      src = buf;
    }
    return ftq_model_store_linear(m, s->layer, s->proj, src, dst_dtype, s->shape[0], s->shape[1], opts);
  }
  ftq_tensor *dst = NULL;
  switch (s->kind) {
    case FTQ_W_EMBED: dst = &m->tok_embeddings; break;
    case FTQ_W_ATTN_NORM: dst = &m->layers[s->layer].attn_norm; break;
    case FTQ_W_FFN_NORM: dst = &m->layers[s->layer].ffn_norm; break;
    case FTQ_W_BIAS: dst = &m->layers[s->layer].bias[s->proj]; break;
    case FTQ_W_FINAL_NORM: dst = &m->final_norm; break;
    case FTQ_W_LM_HEAD: dst = &m->lm_head; break;
    default: return ftq_error(FTQ_ERR_INTERNAL, "store_slot: bad kind %d", (int)s->kind);
  }
  return ftq_model_store_tensor(m, dst, s->name, host, src_dtype, dst_dtype, s->ndim, s->shape);
}

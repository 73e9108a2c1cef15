/* Internals of model loading shared by the Hugging Face, GGUF and random
 * paths (model_load.c, load_config.c, load_hf.c, load_gguf.c,
 * load_random.c). The public entry points are in libftq/ftq_model.h. */
#ifndef FTQ_MODEL_MODEL_LOAD_H
#define FTQ_MODEL_MODEL_LOAD_H

#include <stddef.h>
#include <stdint.h>

#include "io/gguf.h"
#include "libftq/ftq_options.h"
#include "model/model.h"

/* ---- configuration (load_config.c) ---- */

/* Parses a config.json text into cfg (defaults of the architecture's
 * transformers config class for absent optional fields, then
 * ftq_model_config_finish + ftq_model_config_check). Errors name `what`, the
 * field and the value. Without "architectures" and "model_type" the text is
 * taken as LlamaForCausalLM when `default_llama` is set, else it is an error. */
ftq_status ftq_hf_config_parse(const char *text, size_t len, const char *what, int default_llama,
                               ftq_model_config *cfg);

/* The configuration a GGUF file's metadata describes. *permuted_qk is set
 * when llama.cpp's converter permuted the q/k rows ("llama" files). */
ftq_status ftq_gguf_read_config(const ftq_gguf *g, ftq_model_config *cfg, int *permuted_qk);

/* config.json text of a configuration (heap, free()); NULL with the error
 * set when out of memory. */
char *ftq_model_config_to_json(const ftq_model_config *cfg);

/* "llama", "mistral", "qwen2" for a supported architecture, else NULL. */
const char *ftq_model_type_of(const char *architecture);
/* "float32", "float16", "bfloat16" (torch names). */
const char *ftq_torch_dtype_name(ftq_dtype d);

/* ---- storing weights (model_load.c) ---- */

/* The one function every base linear weight goes through, from every
 * loader and from random initialisation: `host` holds [rows, cols] values
 * of `dtype` (f32/f16/bf16) in host memory (possibly inside a read-only
 * file mapping). It becomes layer `layer`'s projection `proj`. This is where
 * quantization at load plugs in (the quantizer reads its options from
 * `opts`); today it stores an unquantized NONE-scheme qtensor. */
ftq_status ftq_model_store_linear(struct ftq_model *m, int64_t layer, ftq_proj proj, const void *host, ftq_dtype dtype,
                                  int64_t rows, int64_t cols, const ftq_options *opts);

/* A non-linear weight (embedding, norm, bias, LM head): allocates `dst` on
 * the device in dst_dtype and fills it from `host` (src_dtype), converting
 * in bounded chunks. */
ftq_status ftq_model_store_tensor(struct ftq_model *m, ftq_tensor *dst, const char *name, const void *host,
                                  ftq_dtype src_dtype, ftq_dtype dst_dtype, int ndim, const int64_t *shape);

/* Host-side conversion between f32/f16/bf16/f64 sources and f32/f16/bf16
 * destinations, threaded over ctx's pool. */
ftq_status ftq_host_convert(ftq_context *ctx, void *dst, ftq_dtype dst_dtype, const void *src, ftq_dtype src_dtype,
                            size_t n);

/* The `torch_dtype` load option: the dtype, or FTQ_DTYPE_COUNT for "auto". */
ftq_status ftq_model_option_dtype(const ftq_options *opts, ftq_dtype *out);

/* Hugging Face names: "model.layers.3.self_attn.q_proj.weight" into buf. */
const char *ftq_hf_proj_name(int64_t layer, ftq_proj p, const char *suffix, char *buf, size_t len);

/* The weights a configuration needs, in load order, with their Hugging
 * Face names and shapes. Both loaders walk this list. */
typedef enum ftq_weight_kind {
  FTQ_W_EMBED = 0,      /* model.embed_tokens.weight [vocab, hidden] */
  FTQ_W_ATTN_NORM = 1,  /* layer's input_layernorm.weight [hidden] */
  FTQ_W_PROJ = 2,       /* layer's projection `proj` [out, in] */
  FTQ_W_BIAS = 3,       /* layer's projection bias [out] */
  FTQ_W_FFN_NORM = 4,   /* layer's post_attention_layernorm.weight [hidden] */
  FTQ_W_FINAL_NORM = 5, /* model.norm.weight [hidden] */
  FTQ_W_LM_HEAD = 6     /* lm_head.weight [vocab, hidden] (absent when tied) */
} ftq_weight_kind;

typedef struct ftq_weight_slot {
  ftq_weight_kind kind;
  int64_t layer;
  ftq_proj proj;
  char name[96];
  int ndim;
  int64_t shape[2];
} ftq_weight_slot;

/* The slot list of a configuration (free() it). */
ftq_status ftq_model_weight_slots(const ftq_model_config *cfg, ftq_weight_slot **slots, size_t *n);
/* Index of the slot named `name`, or -1 (linear search: lists are a few
 * hundred entries and this runs once per file tensor). */
long ftq_model_find_slot(const ftq_weight_slot *slots, size_t n, const char *name);

/* Stores `host` (src_dtype, the slot's shape) into the slot's place in the
 * model in dst_dtype: linear weights through ftq_model_store_linear (after a
 * conversion into `scratch` when the dtypes differ), the rest through
 * ftq_model_store_tensor. */
typedef struct ftq_scratch ftq_scratch;
ftq_status ftq_model_store_slot(struct ftq_model *m, const ftq_weight_slot *slot, const void *host, ftq_dtype src_dtype,
                                ftq_dtype dst_dtype, ftq_scratch *scratch, const ftq_options *opts);

/* A reusable host buffer (grows, never shrinks) for conversions. */
struct ftq_scratch {
  void *p;
  size_t cap;
};
void *ftq_scratch_get(ftq_scratch *s, size_t bytes, const char *what);
void ftq_scratch_free(ftq_scratch *s);

/* Seconds on a monotonic clock, for load timings. */
double ftq_load_clock(void);
/* Logs the summary line of a loaded model: architecture, shapes, parameter
 * counts, stored dtypes, device bytes and the time since `t0`
 * (ftq_load_clock()). */
void ftq_model_log_summary(const struct ftq_model *m, const char *source, const char *detail, double t0);

/* Parameter counts and device bytes by ftq_param_kind (model_api.c). */
int64_t ftq_model_count_params(const struct ftq_model *m, int kind);
size_t ftq_model_count_bytes(const struct ftq_model *m, int kind);

/* ---- the loaders ---- */
ftq_status ftq_model_load_hf(ftq_context *ctx, const char *path, const ftq_options *opts, struct ftq_model **out);
ftq_status ftq_model_load_gguf(ftq_context *ctx, const char *path, const ftq_options *opts, struct ftq_model **out);
ftq_status ftq_model_build_random(ftq_context *ctx, const ftq_model_config *cfg, uint64_t seed,
                                  const ftq_options *opts, struct ftq_model **out);

#endif /* FTQ_MODEL_MODEL_LOAD_H */

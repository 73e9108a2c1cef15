/* Loading a GGUF file: the configuration from its metadata, llama.cpp
 * tensor names mapped to the Hugging Face layout, quantized tensors
 * dequantized to fp32 row by row, and llama.cpp's rotary permutation of the
 * q/k rows undone so the weights equal the Hugging Face checkpoint's.
 *
 * The permutation: llama.cpp's converter (LlamaModel.permute) reorders the
 * rows of q_proj (with n_head) and k_proj (with n_head_kv) so that within
 * each head the two rotary halves interleave: GGUF row h*hd + 2*j + i holds
 * Hugging Face row h*hd + i*hd/2 + j (i in {0,1}, j < hd/2). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/context.h"
#include "core/error.h"
#include "core/log.h"
#include "io/ggml_quant.h"
#include "model/model_load.h"

static const char *const gguf_proj[FTQ_PROJ_COUNT] = {"attn_q", "attn_k", "attn_v", "attn_output",
                                                      "ffn_gate", "ffn_up", "ffn_down"};

static void gguf_name(const ftq_weight_slot *s, char *buf, size_t len) {
  long long l = (long long)s->layer;
  switch (s->kind) {
    case FTQ_W_EMBED: snprintf(buf, len, "token_embd.weight"); break;
    case FTQ_W_ATTN_NORM: snprintf(buf, len, "blk.%lld.attn_norm.weight", l); break;
    case FTQ_W_FFN_NORM: snprintf(buf, len, "blk.%lld.ffn_norm.weight", l); break;
    case FTQ_W_PROJ: snprintf(buf, len, "blk.%lld.%s.weight", l, gguf_proj[s->proj]); break;
    case FTQ_W_BIAS: snprintf(buf, len, "blk.%lld.%s.bias", l, gguf_proj[s->proj]); break;
    case FTQ_W_FINAL_NORM: snprintf(buf, len, "output_norm.weight"); break;
    default: snprintf(buf, len, "output.weight"); break;
  }
}

/* Rows to un-permute: the head count for q/k of permuted files, else 0. */
static int64_t permute_heads(const ftq_weight_slot *s, const ftq_model_config *c, int permuted_qk) {
  if (!permuted_qk || (s->kind != FTQ_W_PROJ && s->kind != FTQ_W_BIAS)) return 0;
  if (s->proj == FTQ_PROJ_Q) return c->num_attention_heads;
  if (s->proj == FTQ_PROJ_K) return c->num_key_value_heads;
  return 0;
}

/* The GGUF row that holds Hugging Face row r. */
static inline int64_t source_row(int64_t r, int64_t head_dim) {
  int64_t h = r / head_dim, rem = r % head_dim, half = head_dim / 2;
  return h * head_dim + 2 * (rem % half) + rem / half;
}

typedef struct rows_job {
  const uint8_t *src;
  size_t row_bytes;
  uint32_t type;
  int64_t cols;
  int64_t head_dim; /* 0: rows in order */
  int dequant;      /* 1: dequantize to f32; 0: copy row bytes */
  void *dst;
  size_t dst_row_bytes;
} rows_job;

static void rows_range(void *arg, size_t begin, size_t end, int worker) {
  const rows_job *j = arg;
  (void)worker;
  for (size_t r = begin; r < end; r++) {
    size_t sr = j->head_dim ? (size_t)source_row((int64_t)r, j->head_dim) : r;
    const uint8_t *src = j->src + sr * j->row_bytes;
    void *dst = (char *)j->dst + r * j->dst_row_bytes;
    if (j->dequant) ftq_ggml_dequantize(j->type, src, dst, (size_t)j->cols); /* type checked before */
    else memcpy(dst, src, j->row_bytes);
  }
}

static ftq_dtype plain_dtype(uint32_t type) {
  switch (type) {
    case FTQ_GGML_F32: return FTQ_DTYPE_F32;
    case FTQ_GGML_F16: return FTQ_DTYPE_F16;
    case FTQ_GGML_BF16: return FTQ_DTYPE_BF16;
    default: return FTQ_DTYPE_COUNT;
  }
}

typedef struct src_tensor {
  uint64_t index;
  uint32_t type;
  const void *data;
  size_t bytes;
} src_tensor;

static ftq_status check_tensor(const ftq_gguf *g, const ftq_weight_slot *s, const char *name, src_tensor *t) {
  const char *path = ftq_gguf_path(g);
  if (ftq_gguf_find_tensor(g, name, &t->index) != FTQ_OK)
    return ftq_error(FTQ_ERR_NOT_FOUND, "%s: tensor %s (for %s) is missing", path, name, s->name);
  uint32_t nd;
  uint64_t ne[4];
  FTQ_TRY(ftq_gguf_tensor_info(g, t->index, NULL, &t->type, &nd, ne, &t->data, &t->bytes));
  const ftq_ggml_type_info *ti = ftq_ggml_type(t->type);
  if (!ti->can_dequantize)
    return ftq_error(FTQ_ERR_UNSUPPORTED, "%s: tensor %s has GGML type %s, which libftq cannot dequantize", path, name, ti->name);
  int ok = nd == (uint32_t)s->ndim && ne[2] == 1 && ne[3] == 1;
  if (s->ndim == 2) ok = ok && ne[0] == (uint64_t)s->shape[1] && ne[1] == (uint64_t)s->shape[0];
  else ok = ok && ne[0] == (uint64_t)s->shape[0] && ne[1] == 1;
  if (!ok)
    return ftq_error(FTQ_ERR_SHAPE, "%s: tensor %s has ne [%llu, %llu, %llu, %llu] (%u dims); %s needs [%lld, %lld]", path,
                     name, (unsigned long long)ne[0], (unsigned long long)ne[1], (unsigned long long)ne[2],
                     (unsigned long long)ne[3], nd, s->name, (long long)s->shape[0],
                     (long long)(s->ndim == 2 ? s->shape[1] : 1));
  return FTQ_OK;
}

ftq_status ftq_model_load_gguf(ftq_context *ctx, const char *path, const ftq_options *opts, struct ftq_model **out) {
  *out = NULL;
  double t0 = ftq_load_clock();
  ftq_dtype want;
  FTQ_TRY(ftq_model_option_dtype(opts, &want));
  ftq_gguf *g;
  FTQ_TRY(ftq_gguf_open(path, &g));
  ftq_model_config cfg;
  int permuted = 0;
  ftq_weight_slot *slots = NULL;
  size_t n_slots = 0;
  src_tensor *src = NULL;
  struct ftq_model *m = NULL;
  ftq_scratch rows = {0}, conv = {0};
  char name[128];
  ftq_status st = ftq_gguf_read_config(g, &cfg, &permuted);
  if (st == FTQ_OK) st = ftq_model_weight_slots(&cfg, &slots, &n_slots);
  if (st == FTQ_OK && !(src = calloc(n_slots ? n_slots : 1, sizeof *src)))
    st = ftq_error(FTQ_ERR_OUT_OF_MEMORY, "out of host memory");
  for (size_t i = 0; i < n_slots && st == FTQ_OK; i++) {
    gguf_name(&slots[i], name, sizeof name);
    st = check_tensor(g, &slots[i], name, &src[i]);
  }
  if (st == FTQ_OK && ftq_gguf_tensor_count(g) > n_slots)
    FTQ_LOGW(ctx, "%s: %llu tensor(s) the graph does not use were ignored", path,
             (unsigned long long)(ftq_gguf_tensor_count(g) - n_slots));
  if (st == FTQ_OK) st = ftq_model_new(ctx, &cfg, &m);
  for (size_t i = 0; i < n_slots && st == FTQ_OK; i++) {
    const ftq_weight_slot *s = &slots[i];
    const src_tensor *t = &src[i];
    int64_t rows_n = s->ndim == 2 ? s->shape[0] : 1, cols = s->ndim == 2 ? s->shape[1] : s->shape[0];
    int64_t heads = permute_heads(s, &cfg, permuted);
    ftq_dtype plain = plain_dtype(t->type);
    ftq_dtype host_dtype = plain != FTQ_DTYPE_COUNT ? plain : FTQ_DTYPE_F32;
    const void *host = t->data;
    if (heads && s->ndim == 1 && plain == FTQ_DTYPE_COUNT) {
      gguf_name(s, name, sizeof name);
      st = ftq_error(FTQ_ERR_UNSUPPORTED, "%s: tensor %s: a quantized bias is not supported", path, name);
      break;
    }
    if (plain == FTQ_DTYPE_COUNT || heads) {
      /* dequantize and/or reorder rows into a host buffer */
      if (heads && s->ndim == 1) { /* a bias: one value per row */
        rows_n = s->shape[0];
        cols = 1;
      }
      size_t es = ftq_dtype_size(host_dtype);
      void *buf = ftq_scratch_get(&rows, (size_t)(rows_n * cols) * es, s->name);
      if (!buf) {
        st = FTQ_ERR_OUT_OF_MEMORY;
        break;
      }
      rows_job j = {t->data, t->bytes / (size_t)rows_n, t->type, cols, heads ? cfg.head_dim : 0,
                    plain == FTQ_DTYPE_COUNT, buf, (size_t)cols * es};
      ftq_parallel_for(ctx->pool, (size_t)rows_n, 16, rows_range, &j);
      host = buf;
    }
    ftq_dtype dst = want != FTQ_DTYPE_COUNT ? want : host_dtype;
    st = ftq_model_store_slot(m, s, host, host_dtype, dst, &conv, opts);
    if (st != FTQ_OK) {
      st = ftq_error_context(st, "loading %s", path);
    } else {
      gguf_name(s, name, sizeof name);
      FTQ_LOGD(ctx, "%s <- %s: %s -> %s%s, %zu bytes in the file", s->name, name, ftq_ggml_type(t->type)->name,
               ftq_dtype_name(dst), heads ? " (rotary permutation undone)" : "", t->bytes);
    }
    ftq_gguf_release_tensor(g, t->index);
  }
  ftq_scratch_free(&rows);
  ftq_scratch_free(&conv);
  char detail[64];
  snprintf(detail, sizeof detail, "GGUF v%u", ftq_gguf_version(g));
  if (st == FTQ_OK) ftq_model_log_summary(m, path, detail, t0);
  if (st == FTQ_OK) *out = m;
  else ftq_model_free(m);
  free(src);
  free(slots);
  ftq_gguf_close(g);
  return st;
}

/* The Llama graph, written once over the backend table: token embedding;
 * per layer RMSNorm, attention (GQA, RoPE, causal + padding + packed
 * sequence masks), residual, RMSNorm, SwiGLU MLP, residual; final RMSNorm;
 * LM head + cross-entropy chunked over the vocabulary. The backward passes
 * activation gradients through the frozen (dequantized) base weights and
 * accumulates gradients of the active LoRA adapter only; with gradient
 * checkpointing only each layer's input is kept and the layer is recomputed
 * (dropout masks are functions of (seed, stream, element), so the
 * recomputation is bit-identical). Buffers come from two arenas, sized by the
 * same code that carves them (so the plan is never wrong) and kept by the
 * model between calls. */
#include "model/graph.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/log.h"
#include "core/options.h"
#include "lora/lora.h"
#include "model/model_build.h"
#include "model/qat.h"
#include "quant/qtensor.h"

static const ftq_option_def graph_option_defs[] = {
    {"gradient_checkpointing", "train", FTQ_OPTION_BOOL, "false", 0, 0, NULL, 0,
     "keep only each decoder layer's input during the forward pass and recompute the layer in the backward"},
    {"fp16", "train", FTQ_OPTION_BOOL, "false", 0, 0, NULL, 0,
     "CUDA: run the matrix products with the base weights, attention and the LM head in fp16 instead of bf16 "
     "(f32 accumulation either way; the CPU computes in f32)"},
};
FTQ_OPTION_TABLE(graph, graph_option_defs);

ftq_status ftq_graph_settings_init(const ftq_options *opts, ftq_graph_settings *s) {
  FTQ_CHECK_ARG(s, "ftq_graph_settings_init: settings must not be NULL");
  memset(s, 0, sizeof *s);
  s->training = 1;
  FTQ_TRY(ftq_options_get_bool(opts, "fp16", &s->fp16));
  return ftq_options_get_bool(opts, "gradient_checkpointing", &s->gradient_checkpointing);
}

struct ftq_kv_cache {
  struct ftq_model *m;
  int64_t capacity, length;
  ftq_tensor *k, *v; /* [layers] of [capacity, n_kv_heads * head_dim] f32, rotated keys */
};

/* The activations of one layer. R is the layer's input (residual stream),
 * xn1/rstd1 its attention RMSNorm, q/k (rotated)/v, a the attention output,
 * lse its log-sum-exp, Rmid = R + o_proj(a), xn2/rstd2 the MLP RMSNorm,
 * g/u the gate/up projections, act = silu(g) * u, t[p] the LoRA
 * intermediate dropout(x) A^T of projection p. */
typedef struct acts {
  float *R, *xn1, *rstd1, *q, *k, *v, *a, *lse, *Rmid, *xn2, *rstd2, *g, *u, *act;
  float *t[FTQ_PROJ_COUNT];
  uint8_t *mask[FTQ_PROJ_COUNT]; /* LoRA dropout keep bits (training with dropout) */
} acts;

/* Carves buffers from an arena, or only adds up their sizes when the arena
 * is NULL (planning). */
typedef struct bump {
  ftq_arena *arena;
  size_t total;
  ftq_status st;
} bump;

static void *take(bump *b, size_t bytes) {
  if (!b->arena) {
    b->total += ftq_arena_round(bytes);
    return NULL;
  }
  if (b->st != FTQ_OK) return NULL;
  void *p = NULL;
  b->st = ftq_arena_alloc(b->arena, bytes, &p);
  return p;
}

static float *takef(bump *b, int64_t n) { return take(b, (size_t)n * sizeof(float)); }

typedef struct graph {
  struct ftq_model *m;
  ftq_context *ctx;
  const ftq_backend *be;
  void *bectx;
  const ftq_model_config *c;
  struct ftq_lora *lora;
  int64_t rows, S, T;      /* rows x S tokens in this call, T = rows * S */
  int backward, ckpt, training, want_logits, fp16;
  uint64_t seed, step;
  int64_t Hd, Q, KVd, I, V, r, chunk;
  /* device inputs */
  int32_t *ids, *pos, *valid, *seq, *targets;
  float *inv_freq;
  /* activations: per layer (+1 for the final norm) or one scratch set */
  acts *layer;             /* host array [L + 1] */
  acts scratch;
  float *tmp;              /* [T, Hd]: o_proj / down_proj outputs */
  float *logits, *token_loss;
  /* backward */
  float *dR, *dxn, *dbig, *dq, *dk, *dv;
  void *work;
  size_t work_bytes;
  float *qat_w;            /* QAT adapter: one fake-quantized merged weight [out, in] (model/qat.h) */
  /* decoding */
  ftq_kv_cache *cache;
  int64_t past;
} graph;

/* ---------------------------------------------------------------------- */
/* checks                                                                   */

static ftq_status need_op(const graph *g, int present, const char *name) {
  if (present) return FTQ_OK;
  return ftq_error(FTQ_ERR_UNSUPPORTED,
                   "the %s backend does not implement the model operation '%s' yet; run the model on a \"cpu\" "
                   "context",
                   g->be->name, name);
}

static ftq_status check_ops(const graph *g) {
  const ftq_backend *b = g->be;
#define OP(x) FTQ_TRY(need_op(g, b->x != NULL, #x))
  OP(embedding);
  OP(rmsnorm);
  OP(linear);
  OP(rope);
  OP(attention);
  OP(swiglu);
  OP(lm_head);
  OP(axpby);
  if (g->backward) {
    OP(rmsnorm_backward);
    OP(linear_backward);
    OP(attention_backward);
    OP(swiglu_backward);
  }
#undef OP
  return FTQ_OK;
}

static ftq_status check_weights(const struct ftq_model *m) {
  const ftq_model_config *c = &m->cfg;
  const int64_t Hd = c->hidden_size, Q = c->num_attention_heads * c->head_dim,
                KVd = c->num_key_value_heads * c->head_dim, I = c->intermediate_size;
  if (!m->tok_embeddings.data || !m->final_norm.data)
    return ftq_error(FTQ_ERR_STATE, "model: %s is missing",
                     !m->tok_embeddings.data ? "model.embed_tokens.weight" : "model.norm.weight");
  if (!c->tie_word_embeddings && !m->lm_head.data)
    return ftq_error(FTQ_ERR_STATE, "model: lm_head.weight is missing (and tie_word_embeddings is false)");
  const int64_t shapes[FTQ_PROJ_COUNT][2] = {{Q, Hd}, {KVd, Hd}, {KVd, Hd}, {Hd, Q}, {I, Hd}, {I, Hd}, {Hd, I}};
  for (int64_t l = 0; l < c->num_hidden_layers; l++) {
    const ftq_layer *L = &m->layers[l];
    if (!L->attn_norm.data || !L->ffn_norm.data)
      return ftq_error(FTQ_ERR_STATE, "model: layer %lld: a norm weight is missing", (long long)l);
    for (int p = 0; p < FTQ_PROJ_COUNT; p++) {
      const ftq_qtensor *q = &L->proj[p];
      if (!q->ctx || q->ndim != 2 || q->shape[0] != shapes[p][0] || q->shape[1] != shapes[p][1])
        return ftq_error(FTQ_ERR_STATE, "model: layer %lld: %s weight is missing or not [%lld, %lld]", (long long)l,
                         ftq_proj_name((ftq_proj)p), (long long)shapes[p][0], (long long)shapes[p][1]);
    }
  }
  return FTQ_OK;
}

/* ---------------------------------------------------------------------- */
/* buffers                                                                  */

static void carve_acts(graph *g, bump *b, acts *A, int with_R) {
  const int64_t T = g->T;
  memset(A, 0, sizeof *A);
  if (with_R) A->R = takef(b, T * g->Hd);
  A->xn1 = takef(b, T * g->Hd);
  A->rstd1 = takef(b, T);
  A->q = takef(b, T * g->Q);
  A->k = takef(b, T * g->KVd);
  A->v = takef(b, T * g->KVd);
  A->a = takef(b, T * g->Q);
  A->lse = takef(b, T * g->c->num_attention_heads);
  A->Rmid = takef(b, T * g->Hd);
  A->xn2 = takef(b, T * g->Hd);
  A->rstd2 = takef(b, T);
  A->g = takef(b, T * g->I);
  A->u = takef(b, T * g->I);
  A->act = takef(b, T * g->I);
  for (int p = 0; p < FTQ_PROJ_COUNT; p++)
    if (ftq_lora_module_at(g->lora, 0, p)) {
      A->t[p] = takef(b, T * g->r);
      if (g->backward && g->training && g->lora->lora_dropout > 0.0f) {
        int64_t out, in;
        ftq_model_proj_shape(g->c, (ftq_proj)p, &out, &in);
        A->mask[p] = take(b, ftq_dropout_mask_bytes(T, in));
      }
    }
}

static const ftq_tensor *head_weight(const struct ftq_model *m) {
  return m->cfg.tie_word_embeddings || !m->lm_head.data ? &m->tok_embeddings : &m->lm_head;
}

static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }

/* Carves (or, with NULL arenas, sizes) every buffer of a call. */
static void carve(graph *g, bump *ab, bump *wb) {
  const int64_t T = g->T, L = g->c->num_hidden_layers;
  /* inputs */
  g->ids = take(wb, (size_t)T * 4);
  g->pos = take(wb, (size_t)T * 4);
  g->valid = take(wb, (size_t)T * 4);
  g->seq = take(wb, (size_t)T * 4);
  g->targets = take(wb, (size_t)T * 4);
  g->inv_freq = takef(wb, g->c->head_dim / 2);
  g->tmp = takef(wb, T * g->Hd);
  g->token_loss = takef(wb, T);
  /* activations */
  if (g->backward && !g->ckpt) {
    for (int64_t l = 0; l < L; l++) carve_acts(g, ab, &g->layer[l], 1);
  } else {
    if (g->backward)
      for (int64_t l = 0; l < L; l++) g->layer[l].R = takef(ab, T * g->Hd);
    carve_acts(g, ab, &g->scratch, !g->backward);
  }
  /* the final norm's input and output */
  acts *F = &g->layer[L];
  memset(F, 0, sizeof *F);
  if (g->backward) {
    F->R = takef(ab, T * g->Hd);
    F->xn1 = g->ckpt ? g->scratch.xn1 : takef(ab, T * g->Hd);
    F->rstd1 = g->ckpt ? g->scratch.rstd1 : takef(ab, T);
  }
  if (g->want_logits) g->logits = takef(ab, T * g->V);
  if (g->backward) {
    g->dR = takef(wb, T * g->Hd);
    g->dxn = takef(wb, T * g->Hd);
    g->dbig = takef(wb, T * (g->I > g->Q ? g->I : g->Q));
    g->dq = takef(wb, T * g->Q);
    g->dk = takef(wb, T * g->KVd);
    g->dv = takef(wb, T * g->KVd);
  }
  /* one scratch for the operations, used one after the other */
  const int64_t kv_len = g->cache ? g->past + g->S : g->S;
  size_t w = ftq_attention_work_bytes(g->rows, g->c->num_attention_heads, g->S, kv_len);
  w = max_sz(w, ftq_lm_head_work_bytes(T, g->Hd, g->chunk, head_weight(g->m)->dtype));
  for (int64_t l = 0; l < L; l++)
    for (int p = 0; p < FTQ_PROJ_COUNT; p++) {
      const ftq_qtensor *q = &g->m->layers[l].proj[p];
      int dequant = !(q->scheme == FTQ_QSCHEME_NONE && q->plain.dtype == FTQ_DTYPE_F32);
      w = max_sz(w, ftq_linear_work_bytes(T, q->shape[1], q->shape[0], g->r, dequant));
    }
  g->work_bytes = w;
  g->work = take(wb, w);
  if (g->lora && g->lora->qat) {
    int64_t most = 0;
    for (int p = 0; p < FTQ_PROJ_COUNT; p++) {
      int64_t out, in;
      ftq_model_proj_shape(g->c, (ftq_proj)p, &out, &in);
      if (ftq_lora_module_at(g->lora, 0, p) && out * in > most) most = out * in;
    }
    g->qat_w = takef(wb, most);
  }
}

static int64_t auto_chunk(int64_t T, int64_t V, int64_t requested) {
  if (requested > 0) return requested < V ? requested : V;
  /* an [T, chunk] f32 slice of at most ~32 MiB, at least 256 columns */
  int64_t c = (int64_t)((32u << 20) / (4u * (size_t)(T > 0 ? T : 1)));
  if (c < 256) c = 256;
  return c < V ? c : V;
}

static ftq_status graph_init(graph *g, struct ftq_model *m, int64_t rows, int64_t S, const ftq_graph_settings *s,
                             int backward, int want_logits) {
  memset(g, 0, sizeof *g);
  g->m = m;
  g->ctx = m->ctx;
  g->be = m->ctx->be;
  g->bectx = m->ctx->be_ctx;
  g->c = &m->cfg;
  g->lora = m->active_lora;
  g->rows = rows;
  g->S = S;
  g->T = rows * S;
  g->backward = backward;
  g->ckpt = backward && s && s->gradient_checkpointing;
  g->training = s && s->training;
  g->want_logits = want_logits;
  g->fp16 = s ? s->fp16 : 0;
  g->seed = s ? s->seed : 0;
  g->step = s ? s->step : 0;
  g->Hd = g->c->hidden_size;
  g->Q = g->c->num_attention_heads * g->c->head_dim;
  g->KVd = g->c->num_key_value_heads * g->c->head_dim;
  g->I = g->c->intermediate_size;
  g->V = g->c->vocab_size;
  g->r = g->lora ? g->lora->r : 0;
  g->chunk = auto_chunk(g->T, g->V, s ? s->vocab_chunk : 0);
  if (g->step >= (1ull << 40)) return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "graph: step %llu too large (2^40 max)",
                                               (unsigned long long)g->step);
  g->layer = ftq_calloc((size_t)g->c->num_hidden_layers + 1, sizeof *g->layer, "graph activations");
  return g->layer ? FTQ_OK : FTQ_ERR_OUT_OF_MEMORY;
}

/* The model keeps its two arenas between calls (grown when a call needs
 * more), so steady-state steps and decoding allocate nothing. */
struct ftq_graph_cache {
  ftq_arena act, work;
};

void ftq_graph_cache_release(struct ftq_model *m) {
  if (!m || !m->graph_cache) return;
  ftq_arena_release(m->ctx, &m->graph_cache->act);
  ftq_arena_release(m->ctx, &m->graph_cache->work);
  free(m->graph_cache);
  m->graph_cache = NULL;
}

static ftq_status ensure(ftq_context *ctx, ftq_arena *a, ftq_memory_category cat, size_t bytes, const char *name) {
  if (a->buf.bytes >= bytes) {
    ftq_arena_reset(a, 0);
    return FTQ_OK;
  }
  ftq_arena_release(ctx, a);
  return ftq_arena_init(ctx, a, cat, bytes, name);
}

static ftq_status graph_alloc(graph *g) {
  bump ab = {NULL, 0, FTQ_OK}, wb = {NULL, 0, FTQ_OK};
  carve(g, &ab, &wb);
  memset(g->layer, 0, sizeof *g->layer * ((size_t)g->c->num_hidden_layers + 1));
  struct ftq_model *m = g->m;
  if (!m->graph_cache) {
    m->graph_cache = ftq_calloc(1, sizeof *m->graph_cache, "graph arenas");
    if (!m->graph_cache) return FTQ_ERR_OUT_OF_MEMORY;
  }
  ftq_arena *aa = &m->graph_cache->act, *wa = &m->graph_cache->work;
  FTQ_TRY(ensure(g->ctx, aa, FTQ_MEM_ACTIVATIONS, ab.total, "graph activations"));
  FTQ_TRY(ensure(g->ctx, wa, FTQ_MEM_WORKSPACE, wb.total, "graph workspace"));
  bump a2 = {aa, 0, FTQ_OK}, w2 = {wa, 0, FTQ_OK};
  carve(g, &a2, &w2);
  return a2.st != FTQ_OK ? a2.st : w2.st;
}

/* ---------------------------------------------------------------------- */
/* inputs                                                                   */

static ftq_status upload_i32(graph *g, int32_t *dst, const int32_t *src) {
  return g->be->copy(g->bectx, dst, src, (size_t)g->T * sizeof(int32_t), FTQ_COPY_H2D);
}

/* Positions, padding, sequence ids and shifted targets on the host, then
 * uploaded. Returns the number of counted targets. */
static ftq_status upload_batch(graph *g, const ftq_graph_batch *b, int64_t *counted) {
  const int64_t T = g->T, S = g->S;
  int32_t *h = ftq_malloc((size_t)T * sizeof(int32_t), "batch staging");
  if (!h) return FTQ_ERR_OUT_OF_MEMORY;
  ftq_status st = upload_i32(g, g->ids, b->input_ids);
  /* positions: given, or 0.. per row restarting at each new sequence id */
  for (int64_t i = 0; st == FTQ_OK && i < T; i++) {
    int64_t t = i % S;
    if (b->position_ids) {
      h[i] = b->position_ids[i];
      if (h[i] < 0) st = ftq_error(FTQ_ERR_INVALID_ARGUMENT, "batch: position_ids[%lld] = %d is negative",
                                   (long long)i, (int)h[i]);
    } else {
      h[i] = (t == 0 || (b->seq_ids && b->seq_ids[i] != b->seq_ids[i - 1])) ? 0 : h[i - 1] + 1;
    }
  }
  if (st == FTQ_OK) st = upload_i32(g, g->pos, h);
  for (int64_t i = 0; st == FTQ_OK && i < T; i++) h[i] = b->attention_mask ? (b->attention_mask[i] != 0) : 1;
  if (st == FTQ_OK) st = upload_i32(g, g->valid, h);
  for (int64_t i = 0; st == FTQ_OK && i < T; i++) h[i] = b->seq_ids ? b->seq_ids[i] : 0;
  if (st == FTQ_OK) st = upload_i32(g, g->seq, h);
  /* target of position t = label of t+1 in the same row and sequence */
  int64_t n = 0;
  for (int64_t i = 0; st == FTQ_OK && i < T; i++) {
    int64_t t = i % S;
    int32_t y = FTQ_IGNORE_INDEX;
    if (b->labels && t + 1 < S && (!b->seq_ids || b->seq_ids[i + 1] == b->seq_ids[i])) y = b->labels[i + 1];
    if (y != FTQ_IGNORE_INDEX && (y < 0 || y >= g->V))
      st = ftq_error(FTQ_ERR_INVALID_ARGUMENT, "batch: label %d at row %lld, position %lld is outside [0, %lld)",
                     (int)y, (long long)(i / S), (long long)(t + 1), (long long)g->V);
    h[i] = y;
    n += y != FTQ_IGNORE_INDEX;
  }
  if (st == FTQ_OK) st = upload_i32(g, g->targets, h);
  free(h);
  *counted = n;
  return st;
}

static ftq_status upload_inv_freq(graph *g) {
  float *h = ftq_malloc((size_t)(g->c->head_dim / 2) * sizeof(float), "rope frequencies");
  if (!h) return FTQ_ERR_OUT_OF_MEMORY;
  ftq_rope_inv_freq(g->c, h);
  ftq_status st = g->be->copy(g->bectx, g->inv_freq, h, (size_t)(g->c->head_dim / 2) * sizeof(float), FTQ_COPY_H2D);
  free(h);
  return st;
}

/* ---------------------------------------------------------------------- */
/* layers                                                                   */

static uint64_t dropout_stream(const graph *g, int64_t layer, int proj) {
  return FTQ_RNG_NS_DROPOUT | (g->step << 16) | (uint64_t)(layer * 8 + proj);
}

static void linear_setup(const graph *g, int64_t l, int p, ftq_linear_args *a, const float *x, float *t) {
  const ftq_layer *L = &g->m->layers[l];
  const ftq_qtensor *w = &L->proj[p];
  memset(a, 0, sizeof *a);
  a->n = g->T;
  a->out = w->shape[0];
  a->in = w->shape[1];
  a->w = w;
  if (L->bias[p].data) {
    a->bias = L->bias[p].data;
    a->bias_type = L->bias[p].dtype;
  }
  const ftq_lora_module *lm = ftq_lora_module_at(g->lora, l, p);
  if (lm) {
    a->r = g->r;
    a->lora_a = lm->a.data;
    a->lora_b = lm->b.data;
    a->scaling = g->lora->scaling;
    a->dropout = g->training ? g->lora->lora_dropout : 0.0f;
    a->seed = g->seed;
    a->stream = dropout_stream(g, l, p);
    a->t = t;
  }
  a->x = x;
  a->work = g->work;
  a->work_bytes = g->work_bytes;
  a->fp16 = g->fp16;
}

static ftq_status linear_fwd(graph *g, int64_t l, int p, acts *A, const float *x, float *y) {
  ftq_linear_args a;
  linear_setup(g, l, p, &a, x, A->t[p]);
  a.mask = A->mask[p];
  a.y = y;
  if (g->qat_w && a.r > 0) return ftq_qat_linear_forward(g->lora, l, p, &a, g->qat_w);
  return g->be->linear(g->bectx, &a);
}

static ftq_status linear_bwd(graph *g, int64_t l, int p, acts *A, const float *x, const float *dy, float *dx,
                             int accumulate) {
  ftq_linear_args a;
  linear_setup(g, l, p, &a, x, A->t[p]);
  a.mask = A->mask[p];
  a.dy = dy;
  a.dx = dx;
  a.accumulate_dx = accumulate;
  const ftq_lora_module *lm = ftq_lora_module_at(g->lora, l, p);
  if (lm) {
    a.grad_a = lm->grad_a.data;
    a.grad_b = lm->grad_b.data;
  }
  if (g->qat_w && a.r > 0) return ftq_qat_linear_backward(g->lora, l, p, &a, g->qat_w);
  return g->be->linear_backward(g->bectx, &a);
}

static void attention_setup(const graph *g, int64_t l, ftq_attention_args *a, const acts *A) {
  memset(a, 0, sizeof *a);
  a->batch = g->rows;
  a->q_len = g->S;
  a->n_heads = g->c->num_attention_heads;
  a->n_kv_heads = g->c->num_key_value_heads;
  a->head_dim = g->c->head_dim;
  a->scale = (float)(1.0 / sqrt((double)g->c->head_dim));
  a->q = A->q;
  if (g->cache) {
    a->kv_len = g->past + g->S;
    a->kv_stride = g->cache->capacity;
    a->k = g->cache->k[l].data;
    a->v = g->cache->v[l].data;
  } else {
    a->kv_len = a->kv_stride = g->S;
    a->k = A->k;
    a->v = A->v;
    a->key_valid = g->valid;
    a->seq_ids = g->seq;
  }
  a->out = A->a;
  a->lse = g->backward ? A->lse : NULL;
  a->work = g->work;
  a->work_bytes = g->work_bytes;
  a->fp16 = g->fp16;
}

/* Layer l from A->R and A->xn1/rstd1 (its attention norm, already done).
 * With R_next, ends with the fused residual add + the next norm:
 * R_next = Rmid + down(...), xn1_next = norm_next(R_next). */
static ftq_status layer_forward(graph *g, int64_t l, acts *A, float *R_next, float *xn1_next, float *rstd1_next) {
  const ftq_model_config *c = g->c;
  const ftq_layer *L = &g->m->layers[l];
  const float eps = (float)c->rms_norm_eps;
  FTQ_TRY(linear_fwd(g, l, FTQ_PROJ_Q, A, A->xn1, A->q));
  FTQ_TRY(linear_fwd(g, l, FTQ_PROJ_K, A, A->xn1, A->k));
  FTQ_TRY(linear_fwd(g, l, FTQ_PROJ_V, A, A->xn1, A->v));
  FTQ_TRY(g->be->rope(g->bectx, A->q, g->T, g->Q, c->num_attention_heads, c->head_dim, g->pos, g->inv_freq, 0));
  FTQ_TRY(g->be->rope(g->bectx, A->k, g->T, g->KVd, c->num_key_value_heads, c->head_dim, g->pos, g->inv_freq, 0));
  if (g->cache) { /* append the new keys and values */
    size_t off = (size_t)g->past * (size_t)g->KVd, bytes = (size_t)g->T * (size_t)g->KVd * sizeof(float);
    FTQ_TRY(g->be->copy(g->bectx, (float *)g->cache->k[l].data + off, A->k, bytes, FTQ_COPY_D2D));
    FTQ_TRY(g->be->copy(g->bectx, (float *)g->cache->v[l].data + off, A->v, bytes, FTQ_COPY_D2D));
  }
  ftq_attention_args at;
  attention_setup(g, l, &at, A);
  FTQ_TRY(g->be->attention(g->bectx, &at));
  FTQ_TRY(linear_fwd(g, l, FTQ_PROJ_O, A, A->a, g->tmp));
  FTQ_TRY(g->be->rmsnorm(g->bectx, g->T, g->Hd, eps, A->R, g->tmp, A->Rmid, L->ffn_norm.data, L->ffn_norm.dtype,
                         A->xn2, A->rstd2));
  FTQ_TRY(linear_fwd(g, l, FTQ_PROJ_GATE, A, A->xn2, A->g));
  FTQ_TRY(linear_fwd(g, l, FTQ_PROJ_UP, A, A->xn2, A->u));
  FTQ_TRY(g->be->swiglu(g->bectx, (size_t)g->T * (size_t)g->I, A->g, A->u, A->act));
  if (!R_next) /* recomputation: the backward needs only down_proj's LoRA intermediate */
    return A->t[FTQ_PROJ_DOWN] ? linear_fwd(g, l, FTQ_PROJ_DOWN, A, A->act, NULL) : FTQ_OK;
  FTQ_TRY(linear_fwd(g, l, FTQ_PROJ_DOWN, A, A->act, g->tmp));
  const ftq_tensor *wn = l + 1 < c->num_hidden_layers ? &g->m->layers[l + 1].attn_norm : &g->m->final_norm;
  return g->be->rmsnorm(g->bectx, g->T, g->Hd, eps, A->Rmid, g->tmp, R_next, wn->data, wn->dtype, xn1_next,
                        rstd1_next);
}

/* Given g->dR = dL/d(layer output), leaves dL/d(layer input) in g->dR and
 * adds the layer's LoRA gradients. */
static ftq_status layer_backward(graph *g, int64_t l, acts *A) {
  const ftq_model_config *c = g->c;
  const ftq_layer *L = &g->m->layers[l];
  /* MLP: out = Rmid + down(silu(gate(xn2)) * up(xn2)) */
  FTQ_TRY(linear_bwd(g, l, FTQ_PROJ_DOWN, A, A->act, g->dR, g->dbig, 0));
  FTQ_TRY(g->be->swiglu_backward(g->bectx, (size_t)g->T * (size_t)g->I, A->g, A->u, g->dbig, A->g, A->u));
  FTQ_TRY(linear_bwd(g, l, FTQ_PROJ_GATE, A, A->xn2, A->g, g->dxn, 0));
  FTQ_TRY(linear_bwd(g, l, FTQ_PROJ_UP, A, A->xn2, A->u, g->dxn, 1));
  FTQ_TRY(g->be->rmsnorm_backward(g->bectx, g->T, g->Hd, A->Rmid, L->ffn_norm.data, L->ffn_norm.dtype, A->rstd2,
                                  g->dxn, g->dR, 1));
  /* attention: Rmid = R + o(attn(rope(q(xn1)), rope(k(xn1)), v(xn1))) */
  FTQ_TRY(linear_bwd(g, l, FTQ_PROJ_O, A, A->a, g->dR, g->dbig, 0));
  ftq_attention_args at;
  attention_setup(g, l, &at, A);
  at.dout = g->dbig;
  at.dq = g->dq;
  at.dk = g->dk;
  at.dv = g->dv;
  FTQ_TRY(g->be->attention_backward(g->bectx, &at));
  FTQ_TRY(g->be->rope(g->bectx, g->dq, g->T, g->Q, c->num_attention_heads, c->head_dim, g->pos, g->inv_freq, 1));
  FTQ_TRY(g->be->rope(g->bectx, g->dk, g->T, g->KVd, c->num_key_value_heads, c->head_dim, g->pos, g->inv_freq, 1));
  FTQ_TRY(linear_bwd(g, l, FTQ_PROJ_Q, A, A->xn1, g->dq, g->dxn, 0));
  FTQ_TRY(linear_bwd(g, l, FTQ_PROJ_K, A, A->xn1, g->dk, g->dxn, 1));
  FTQ_TRY(linear_bwd(g, l, FTQ_PROJ_V, A, A->xn1, g->dv, g->dxn, 1));
  return g->be->rmsnorm_backward(g->bectx, g->T, g->Hd, A->R, L->attn_norm.data, L->attn_norm.dtype, A->rstd1,
                                 g->dxn, g->dR, 1);
}

/* Embedding + the first layer's norm into A (its R and xn1/rstd1). */
static ftq_status embed(graph *g, acts *A) {
  const ftq_tensor *E = &g->m->tok_embeddings;
  const ftq_tensor *w0 = &g->m->layers[0].attn_norm;
  FTQ_TRY(g->be->embedding(g->bectx, g->ids, g->T, E->data, E->dtype, g->V, g->Hd, A->R));
  return g->be->rmsnorm(g->bectx, g->T, g->Hd, (float)g->c->rms_norm_eps, A->R, NULL, NULL, w0->data, w0->dtype,
                        A->xn1, A->rstd1);
}

/* The forward pass over every layer; leaves the final norm's output in
 * layer[L].xn1 (backward) or scratch.xn1 (inference). */
static ftq_status forward_layers(graph *g) {
  const int64_t L = g->c->num_hidden_layers;
  if (!g->backward) {
    acts *A = &g->scratch;
    for (int64_t l = 0; l < L; l++) FTQ_TRY(layer_forward(g, l, A, A->R, A->xn1, A->rstd1));
    return FTQ_OK;
  }
  for (int64_t l = 0; l < L; l++) {
    acts *A = g->ckpt ? &g->scratch : &g->layer[l];
    if (g->ckpt) A->R = g->layer[l].R;
    acts *N = &g->layer[l + 1]; /* the next layer's input, or the final norm's */
    FTQ_TRY(layer_forward(g, l, A, N->R, g->ckpt ? g->scratch.xn1 : N->xn1, g->ckpt ? g->scratch.rstd1 : N->rstd1));
  }
  return FTQ_OK;
}

static ftq_status lm_head(graph *g, const float *h, int64_t n, float grad_scale, float *dh, float *logits,
                          const int32_t *targets, double *loss_sum, int64_t *count) {
  const ftq_tensor *W = head_weight(g->m);
  ftq_lm_head_args a;
  memset(&a, 0, sizeof a);
  a.n = n;
  a.dim = g->Hd;
  a.vocab = g->V;
  a.h = h;
  a.w = W->data;
  a.w_type = W->dtype;
  a.targets = targets;
  a.grad_scale = grad_scale;
  a.loss_sum = loss_sum;
  a.count = count;
  a.token_loss = targets ? g->token_loss : NULL;
  a.dh = dh;
  a.logits = logits;
  a.vocab_chunk = g->chunk;
  a.work = g->work;
  a.work_bytes = g->work_bytes;
  a.fp16 = g->fp16;
  return g->be->lm_head(g->bectx, &a);
}

static ftq_status check_batch(const struct ftq_model *m, const ftq_graph_batch *b, int need_labels) {
  FTQ_CHECK_ARG(m && b && b->input_ids, "graph: model, batch and input_ids must not be NULL");
  FTQ_CHECK_ARG(b->n_rows > 0 && b->seq_len > 0, "batch: %lld rows of %lld tokens", (long long)b->n_rows,
                (long long)b->seq_len);
  FTQ_CHECK_ARG(!need_labels || b->labels, "batch: labels are required for the backward pass");
  if (b->n_rows > INT32_MAX / b->seq_len) return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "batch: too many tokens");
  FTQ_TRY(check_weights(m));
  return FTQ_OK;
}

static void graph_free(graph *g) { free(g->layer); }

static ftq_status finish_loss(ftq_graph_result *res, double loss_sum, int64_t count, double norm) {
  if (!res) return FTQ_OK;
  res->loss_sum = loss_sum;
  res->n_items = count;
  res->loss = norm > 0 ? loss_sum / norm : NAN;
  return FTQ_OK;
}

/* ---------------------------------------------------------------------- */
/* entry points                                                             */

static ftq_status run_forward_backward(graph *g, const ftq_graph_batch *b, const ftq_graph_settings *s,
                                       ftq_graph_result *res, float *token_loss, float *d_embeddings) {
  const int64_t L = g->c->num_hidden_layers;
  int64_t counted;
  FTQ_TRY(upload_batch(g, b, &counted));
  FTQ_TRY(upload_inv_freq(g));
  const double norm = s && s->num_items > 0 ? s->num_items : (double)counted;
  acts *A0 = g->ckpt ? &g->scratch : &g->layer[0];
  if (g->ckpt) A0->R = g->layer[0].R;
  FTQ_TRY(embed(g, A0));
  FTQ_TRY(forward_layers(g));
  acts *F = &g->layer[L];
  double loss_sum = 0.0;
  int64_t count = 0;
  FTQ_TRY(lm_head(g, F->xn1, g->T, norm > 0 ? (float)(1.0 / norm) : 0.0f, g->dxn, NULL, g->targets, &loss_sum,
                  &count));
  if (token_loss) FTQ_TRY(g->be->copy(g->bectx, token_loss, g->token_loss, (size_t)g->T * 4, FTQ_COPY_D2H));
  /* final norm, then the layers in reverse */
  FTQ_TRY(g->be->rmsnorm_backward(g->bectx, g->T, g->Hd, F->R, g->m->final_norm.data, g->m->final_norm.dtype,
                                  F->rstd1, g->dxn, g->dR, 0));
  for (int64_t l = L - 1; l >= 0; l--) {
    acts *A = &g->layer[l];
    if (g->ckpt) { /* recompute the layer from its saved input */
      A = &g->scratch;
      A->R = g->layer[l].R;
      const ftq_tensor *w = &g->m->layers[l].attn_norm;
      FTQ_TRY(g->be->rmsnorm(g->bectx, g->T, g->Hd, (float)g->c->rms_norm_eps, A->R, NULL, NULL, w->data, w->dtype,
                             A->xn1, A->rstd1));
      FTQ_TRY(layer_forward(g, l, A, NULL, NULL, NULL));
    }
    FTQ_TRY(layer_backward(g, l, A));
    if (s && s->layer_grads_done) FTQ_TRY(s->layer_grads_done(s->hook_user, l));
  }
  if (d_embeddings)
    FTQ_TRY(g->be->copy(g->bectx, d_embeddings, g->dR, (size_t)g->T * (size_t)g->Hd * 4, FTQ_COPY_D2H));
  return finish_loss(res, loss_sum, count, norm);
}

ftq_status ftq_graph_forward_backward(struct ftq_model *m, const ftq_graph_batch *b, const ftq_graph_settings *s,
                                      ftq_graph_result *res, float *token_loss, float *d_embeddings) {
  FTQ_TRY(check_batch(m, b, 1));
  graph g;
  ftq_status st = graph_init(&g, m, b->n_rows, b->seq_len, s, 1, 0);
  if (st == FTQ_OK) st = check_ops(&g);
  if (st == FTQ_OK) st = graph_alloc(&g);
  if (st == FTQ_OK) st = run_forward_backward(&g, b, s, res, token_loss, d_embeddings);
  graph_free(&g);
  return st == FTQ_OK ? st : ftq_error_context(st, "forward/backward of a %lld x %lld batch", (long long)b->n_rows,
                                               (long long)b->seq_len);
}

static ftq_status run_forward(graph *g, const ftq_graph_batch *b, const ftq_graph_settings *s, ftq_graph_result *res,
                              float *token_loss, float *logits) {
  int64_t counted;
  FTQ_TRY(upload_batch(g, b, &counted));
  FTQ_TRY(upload_inv_freq(g));
  const double norm = s && s->num_items > 0 ? s->num_items : (double)counted;
  FTQ_TRY(embed(g, &g->scratch));
  FTQ_TRY(forward_layers(g));
  double loss_sum = 0.0;
  int64_t count = 0;
  FTQ_TRY(lm_head(g, g->scratch.xn1, g->T, 0.0f, NULL, logits ? g->logits : NULL, b->labels ? g->targets : NULL,
                  &loss_sum, &count));
  if (logits)
    FTQ_TRY(g->be->copy(g->bectx, logits, g->logits, (size_t)g->T * (size_t)g->V * 4, FTQ_COPY_D2H));
  if (b->labels && token_loss)
    FTQ_TRY(g->be->copy(g->bectx, token_loss, g->token_loss, (size_t)g->T * 4, FTQ_COPY_D2H));
  return b->labels ? finish_loss(res, loss_sum, count, norm) : FTQ_OK;
}

ftq_status ftq_graph_forward(struct ftq_model *m, const ftq_graph_batch *b, const ftq_graph_settings *s,
                             ftq_graph_result *res, float *token_loss, float *logits) {
  FTQ_TRY(check_batch(m, b, 0));
  FTQ_CHECK_ARG(logits || b->labels, "ftq_graph_forward: ask for logits or give labels");
  graph g;
  ftq_status st = graph_init(&g, m, b->n_rows, b->seq_len, s, 0, logits != NULL);
  if (st == FTQ_OK) st = check_ops(&g);
  if (st == FTQ_OK) st = graph_alloc(&g);
  if (st == FTQ_OK) st = run_forward(&g, b, s, res, token_loss, logits);
  graph_free(&g);
  return st == FTQ_OK ? st : ftq_error_context(st, "forward of a %lld x %lld batch", (long long)b->n_rows,
                                               (long long)b->seq_len);
}

ftq_status ftq_graph_plan(const struct ftq_model *m, int64_t rows, int64_t seq_len, const ftq_graph_settings *s,
                          int backward, size_t *activation_bytes, size_t *workspace_bytes) {
  FTQ_CHECK_ARG(m && rows > 0 && seq_len > 0, "ftq_graph_plan: bad arguments");
  graph g;
  FTQ_TRY(graph_init(&g, (struct ftq_model *)m, rows, seq_len, s, backward, 0));
  bump ab = {NULL, 0, FTQ_OK}, wb = {NULL, 0, FTQ_OK};
  carve(&g, &ab, &wb);
  free(g.layer);
  if (activation_bytes) *activation_bytes = ab.total;
  if (workspace_bytes) *workspace_bytes = wb.total;
  return FTQ_OK;
}

/* ---------------------------------------------------------------------- */
/* KV cache                                                                 */

ftq_status ftq_kv_cache_create(struct ftq_model *m, int64_t capacity, ftq_kv_cache **out) {
  FTQ_CHECK_ARG(m && out && capacity > 0, "ftq_kv_cache_create: bad arguments");
  *out = NULL;
  const int64_t L = m->cfg.num_hidden_layers, KVd = m->cfg.num_key_value_heads * m->cfg.head_dim;
  ftq_kv_cache *c = ftq_calloc(1, sizeof *c, "KV cache");
  if (!c) return FTQ_ERR_OUT_OF_MEMORY;
  c->m = m;
  c->capacity = capacity;
  c->k = ftq_calloc((size_t)L, sizeof *c->k, "KV cache");
  c->v = ftq_calloc((size_t)L, sizeof *c->v, "KV cache");
  ftq_status st = c->k && c->v ? FTQ_OK : FTQ_ERR_OUT_OF_MEMORY;
  int64_t shape[2] = {capacity, KVd};
  for (int64_t l = 0; st == FTQ_OK && l < L; l++) {
    st = ftq_tensor_alloc(m->ctx, FTQ_MEM_ACTIVATIONS, FTQ_DTYPE_F32, 2, shape, "KV cache keys", &c->k[l]);
    if (st == FTQ_OK)
      st = ftq_tensor_alloc(m->ctx, FTQ_MEM_ACTIVATIONS, FTQ_DTYPE_F32, 2, shape, "KV cache values", &c->v[l]);
  }
  if (st != FTQ_OK) {
    ftq_kv_cache_destroy(c);
    return st;
  }
  *out = c;
  return FTQ_OK;
}

void ftq_kv_cache_destroy(ftq_kv_cache *c) {
  if (!c) return;
  for (int64_t l = 0; l < c->m->cfg.num_hidden_layers; l++) {
    if (c->k) ftq_tensor_free(c->m->ctx, &c->k[l]);
    if (c->v) ftq_tensor_free(c->m->ctx, &c->v[l]);
  }
  free(c->k);
  free(c->v);
  free(c);
}

int64_t ftq_kv_cache_length(const ftq_kv_cache *c) { return c ? c->length : 0; }
void ftq_kv_cache_reset(ftq_kv_cache *c) {
  if (c) c->length = 0;
}

static ftq_status run_decode(graph *g, const int32_t *ids, int64_t n, float *logits_last, float *logits_all) {
  int32_t *pos = ftq_malloc((size_t)n * sizeof(int32_t), "positions");
  if (!pos) return FTQ_ERR_OUT_OF_MEMORY;
  for (int64_t i = 0; i < n; i++) pos[i] = (int32_t)(g->past + i);
  ftq_status st = upload_i32(g, g->ids, ids);
  if (st == FTQ_OK) st = upload_i32(g, g->pos, pos);
  free(pos);
  FTQ_TRY(st);
  FTQ_TRY(upload_inv_freq(g));
  FTQ_TRY(embed(g, &g->scratch));
  FTQ_TRY(forward_layers(g));
  const float *h = g->scratch.xn1;
  if (logits_all) {
    FTQ_TRY(lm_head(g, h, n, 0.0f, NULL, g->logits, NULL, NULL, NULL));
    FTQ_TRY(g->be->copy(g->bectx, logits_all, g->logits, (size_t)n * (size_t)g->V * 4, FTQ_COPY_D2H));
    if (logits_last)
      memcpy(logits_last, logits_all + (size_t)(n - 1) * (size_t)g->V, (size_t)g->V * sizeof(float));
  } else if (logits_last) {
    FTQ_TRY(lm_head(g, h + (size_t)(n - 1) * (size_t)g->Hd, 1, 0.0f, NULL, g->logits, NULL, NULL, NULL));
    FTQ_TRY(g->be->copy(g->bectx, logits_last, g->logits, (size_t)g->V * 4, FTQ_COPY_D2H));
  }
  g->cache->length += n;
  return FTQ_OK;
}

ftq_status ftq_graph_decode(struct ftq_model *m, ftq_kv_cache *c, const int32_t *ids, int64_t n, float *logits_last,
                            float *logits_all) {
  FTQ_CHECK_ARG(m && c && ids && n > 0 && c->m == m, "ftq_graph_decode: bad arguments");
  if (c->length + n > c->capacity)
    return ftq_error(FTQ_ERR_INVALID_ARGUMENT, "KV cache: %lld + %lld positions exceed its capacity %lld",
                     (long long)c->length, (long long)n, (long long)c->capacity);
  FTQ_TRY(check_weights(m));
  graph g;
  ftq_status st = graph_init(&g, m, 1, n, NULL, 0, logits_all || logits_last);
  if (st == FTQ_OK) {
    g.cache = c;
    g.past = c->length;
    st = check_ops(&g);
  }
  if (st == FTQ_OK) st = graph_alloc(&g);
  if (st == FTQ_OK) st = run_decode(&g, ids, n, logits_last, logits_all);
  graph_free(&g);
  return st == FTQ_OK ? st : ftq_error_context(st, "decoding %lld tokens at position %lld", (long long)n,
                                               (long long)c->length);
}

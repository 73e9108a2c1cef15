/* The backend table: the operations the graph code calls, implemented once
 * per device (src/cpu for the fp32 reference, cuda/ for NVIDIA GPUs). Not
 * exported. Both backends implement every entry with the same names and
 * argument order; nothing outside a backend knows how it does its work.
 *
 * Conventions:
 * - Every operation takes the backend's per-context state `be` first.
 * - Pointers to tensors are device pointers of that backend (host memory for
 *   the CPU backend); scalar results come back in host memory.
 * - Matrices are row-major; `ld*` is the distance in elements between rows.
 * - Errors come back as ftq_status with the message already set.
 *
 * The CUDA backend is built as a loadable module (libftq-cuda.so), so the
 * table is also the ABI between libftq and that module; FTQ_BACKEND_ABI
 * changes whenever the table or the host table below changes. */
#ifndef FTQ_BACKEND_H
#define FTQ_BACKEND_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "libftq/ftq_comm.h"
#include "libftq/ftq_context.h"
#include "libftq/ftq_status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FTQ_BACKEND_ABI 4

typedef enum ftq_copy_kind {
  FTQ_COPY_H2D = 0, /* host -> device */
  FTQ_COPY_D2H = 1, /* device -> host */
  FTQ_COPY_D2D = 2  /* device -> device */
} ftq_copy_kind;

typedef enum ftq_reduce_op {
  FTQ_REDUCE_SUM = 0,    /* sum of x */
  FTQ_REDUCE_SUMSQ = 1,  /* sum of x^2 (for L2 norms) */
  FTQ_REDUCE_ABSMAX = 2  /* max |x|; NaN if any element is NaN */
} ftq_reduce_op;

/* C = alpha * op(A) @ op(B) + beta * C for `batch` matrices, row-major.
 * op(A) is m x k (A is stored k x m when trans_a), op(B) is k x n (stored
 * n x k when trans_b), C is m x n. Strides between batch items are in
 * elements. Accumulation is fp32. CPU: all types f32. CUDA: a/b f32, f16 or
 * bf16 (the same type), c f32 or the type of a. beta == 0 never reads C. */
typedef struct ftq_gemm_args {
  int trans_a, trans_b;
  int64_t m, n, k;
  float alpha, beta;
  const void *a;
  ftq_dtype a_type;
  int64_t lda, stride_a;
  const void *b;
  ftq_dtype b_type;
  int64_t ldb, stride_b;
  void *c;
  ftq_dtype c_type;
  int64_t ldc, stride_c;
  int64_t batch; /* >= 1 */
} ftq_gemm_args;

/* AdamW update rules. */
typedef enum ftq_adamw_mode {
  FTQ_ADAMW_BNB = 0,  /* bitsandbytes 32-bit: eps*sqrt(bc2) in the denominator, decay after the step */
  FTQ_ADAMW_TORCH = 1 /* torch.optim.AdamW: decay first, bias corrections applied explicitly */
} ftq_adamw_mode;

/* One AdamW update of n fp32 parameters in place. The scalars that depend
 * only on the step are computed once on the host (so every backend uses the
 * same values); the kernels use plain fp32 multiplies and adds (no FMA), so
 * the CPU and CUDA backends agree bit for bit. m and v may be host memory
 * from host_alloc (paged optimizer states), which the CUDA kernel reads
 * and writes over the bus. */
typedef struct ftq_adamw_args {
  float *param;
  const float *grad;
  float *m, *v;
  size_t n;
  ftq_adamw_mode mode;
  float grad_scale;  /* gradients are multiplied by this first (clipping) */
  float beta1, beta2;
  float one_minus_beta1, one_minus_beta2;
  /* BNB: p += step_size * m / (sqrt(v) + eps_c2); then p *= decay_factor */
  /* TORCH: p *= decay_factor first; p += step_size * m / (sqrt(v) / bc2_sqrt + eps) */
  float step_size;   /* negative */
  float eps;         /* TORCH: eps; BNB: eps * sqrt(1 - beta2^t) */
  float bc2_sqrt;    /* TORCH only */
  float decay_factor;/* 1 - lr * weight_decay (1 when no decay) */
} ftq_adamw_args;
/* Blockwise 4-bit data laid out as bitsandbytes does (qlora-spec §1-§2):
 * the tensor flattened row-major, block b = elements [b*bs, (b+1)*bs), two
 * codes per byte with the even element in the high nibble. The arithmetic
 * is that of bitsandbytes' CUDA kernels, which are built with fast math:
 * flush-to-zero, and the per-block reciprocal of PTX rcp.approx.ftz.f32
 * (docs/quantization.md). All pointers are device pointers. */
typedef struct ftq_q4_desc {
  int scheme;          /* FTQ_QSCHEME_NF4 or FTQ_QSCHEME_FP4 (quant/qtensor.h) */
  int64_t n;           /* elements */
  int64_t blocksize;   /* 32..4096, a power of two */
  uint8_t *packed;     /* [(n + 1) / 2] */
  float *absmax;       /* [n_blocks] fp32 (quantize writes it; dequantize reads it unless nested) */
  /* double quantization: the absmax stored as 8-bit codes of (absmax - offset) */
  int nested;
  uint8_t *qabsmax;    /* [n_blocks] */
  float *absmax2;      /* [ceil(n_blocks / blocksize2)] */
  float *code2;        /* [256] the signed dynamic map, ascending */
  int64_t blocksize2;  /* 256 in bitsandbytes */
  float offset;        /* mean of the fp32 absmax, added back after decoding */
} ftq_q4_desc;

/* How quantize_8bit centres its input before quantizing. */
typedef enum ftq_center_mode {
  FTQ_CENTER_NONE = 0,  /* quantize x as it is */
  FTQ_CENTER_MEAN = 1,  /* subtract the mean of x, written to *offset */
  FTQ_CENTER_GIVEN = 2  /* subtract *offset */
} ftq_center_mode;

/* INT8 (qlora-spec §3.3): the tensor seen as rows x cols, one scale (and
 * zero point) per group of `group` consecutive elements of a row; the last
 * group of a row may be shorter. Per tensor: rows 1, group n; per output
 * channel: group = cols. */
typedef struct ftq_int8_desc {
  int asymmetric;        /* 0: int8 in [-127, 127], 1: uint8 with a zero point */
  int64_t rows, cols;
  int64_t group;
  void *q;               /* int8 or uint8 [rows * cols] */
  float *scales;         /* [rows * ceil(cols / group)] */
  int32_t *zero_points;  /* same count; asymmetric only */
  int params_given;      /* quantize with the scales / zero points as they are (calibrated) */
  uint8_t *mask;         /* optional [rows * cols]: 1 where x was not clipped */
} ftq_int8_desc;
struct ftq_qtensor; /* quant/qtensor.h: a (possibly) quantized weight */

/* ---- model operations -------------------------------------------------
 * The Llama graph (src/model) runs through the operations below, defined
 * where a fast backend fuses. Activations and gradients are f32, row-major,
 * one row per token. A backend that lacks one leaves its entry NULL and the
 * graph refuses with FTQ_ERR_UNSUPPORTED naming it.
 *
 * Compute precision: the CPU backend computes everything in f32. The CUDA
 * backend runs the matrix products with the frozen base weights, attention
 * and the LM head on the tensor cores in bf16 (fp16 where the argument
 * struct's `fp16` is set), accumulating in f32; LoRA products, norms,
 * softmax statistics and every gradient of a trained parameter stay f32.
 * Operations are ordered on the context's stream: a call may return before
 * its work is done, except where it writes host memory. */

/* Quantized linear with LoRA, y = x W^T + bias + scaling * B(A(dropout(x))).
 * W is a frozen ftq_qtensor [out, in] of any scheme; A [r, in] and B [out, r]
 * are the f32 LoRA parameters. The dropout mask keeps element e = row*in +
 * col of x iff ftq_rng_uniform(seed, stream, e) >= dropout, scaling kept
 * values by 1/(1 - dropout), so it is the same on every backend and on
 * recomputation. r == 0 means no LoRA on this projection. */
typedef struct ftq_linear_args {
  int64_t n;                   /* tokens (rows of x) */
  int64_t in, out;
  const struct ftq_qtensor *w; /* [out, in] */
  const void *bias;            /* [out] of bias_type, or NULL */
  ftq_dtype bias_type;
  int64_t r;                   /* LoRA rank; 0: none */
  const float *lora_a;         /* [r, in] */
  const float *lora_b;         /* [out, r] */
  float scaling;
  float dropout;               /* in [0, 1) */
  uint64_t seed, stream;
  const float *x;              /* [n, in] */
  float *t;                    /* [n, r]: dropout(x) A^T; forward writes it, backward reads it */
  uint8_t *mask;               /* dropout keep bits, rows of (in + 7) / 8 bytes (bit c % 8 of byte c / 8):
                                  the forward writes them and the backward reads them when non-NULL
                                  (else the backward regenerates the mask); see ftq_dropout_mask_bytes */
  /* forward */
  float *y;                    /* [n, out]; NULL: only t (for recomputation) */
  /* backward */
  const float *dy;             /* [n, out] */
  float *dx;                   /* [n, in], or NULL when not needed */
  int accumulate_dx;           /* dx += ... instead of dx = ... */
  float *grad_a, *grad_b;      /* += dL/dA, dL/dB; NULL: not wanted */
  void *work;                  /* scratch of ftq_linear_work_bytes() bytes */
  size_t work_bytes;
  int fp16;                    /* GPU: fp16 instead of bf16 for the base product (CPU: ignored) */
} ftq_linear_args;

/* Bytes of a linear operation's dropout keep bits for n rows of in inputs. */
static inline size_t ftq_dropout_mask_bytes(int64_t n, int64_t in) { return (size_t)n * (((size_t)in + 7u) / 8u); }

/* Scratch a linear operation may use. CPU, in f32 and in this order: the
 * dropped input [n, in], dy B [n, r], and (dequantize != 0: the weight is
 * not an unquantized f32 tensor) the dequantized weight [out, in]. CUDA:
 * the same two f32 buffers, the weight in the compute dtype [out, in] and
 * the input (or dy) in the compute dtype [n, max(in, out)]. */
static inline size_t ftq_linear_work_bytes(int64_t n, int64_t in, int64_t out, int64_t r, int dequantize) {
  const size_t nn = (size_t)n, ni = (size_t)in, no = (size_t)out;
  return 4u * (nn * ni + nn * (size_t)r) + (dequantize ? 4u : 2u) * no * ni + 2u * nn * (ni > no ? ni : no) +
         5u * 256u;
}

/* Causal self-attention over rotated q/k (GQA: query head h reads kv head
 * h / (n_heads / n_kv_heads)). Row b of the batch holds q_len queries and
 * kv_len >= q_len keys; query i sits at key index kv_len - q_len + i and
 * sees key j iff j <= that index, key_valid[b, j] != 0 (right padding) and
 * seq_ids[b, j] == seq_ids[b, index] (packed sequences). A query that sees
 * no key gets a zero output. Scores are scale * q.k, softmax in f32. */
typedef struct ftq_attention_args {
  int64_t batch, q_len, kv_len;
  int64_t n_heads, n_kv_heads, head_dim;
  float scale;
  const float *q;              /* [batch, q_len, n_heads * head_dim] */
  const float *k, *v;          /* [batch, kv_stride rows, n_kv_heads * head_dim] */
  int64_t kv_stride;           /* rows between batch items of k/v (>= kv_len) */
  const int32_t *key_valid;    /* [batch, kv_len] or NULL: every key valid */
  const int32_t *seq_ids;      /* [batch, kv_len] or NULL: one sequence per row */
  float *out;                  /* [batch, q_len, n_heads * head_dim] */
  float *lse;                  /* [batch, q_len, n_heads] log-sum-exp (natural log; -inf where a query sees no
                                  key); may be NULL in forward */
  /* backward (kv_len == q_len, kv_stride == kv_len); it also reads out and lse as the forward wrote them */
  const float *dout;
  float *dq, *dk, *dv;         /* written (not accumulated), shapes of q, k, v */
  void *work;                  /* scratch of ftq_attention_work_bytes() bytes */
  size_t work_bytes;
  int fp16;                    /* GPU: fp16 instead of bf16 for the products (CPU: ignored) */
} ftq_attention_args;

/* Queries per block of the attention's scratch: a block's scores are
 * [block, kv_len] f32. */
static inline int64_t ftq_attention_q_block(int64_t q_len, int64_t kv_len) {
  int64_t b = (int64_t)((1u << 20) / (size_t)(kv_len > 0 ? kv_len : 1));
  if (b < 16) b = 16;
  return b < q_len ? b : (q_len > 0 ? q_len : 1);
}

/* Scratch of the attention of `batch` rows of n_heads heads. CPU: two
 * [block, kv_len] f32 score matrices. CUDA: rowsum(dout * out) per query
 * and head for the backward, [batch, q_len, n_heads] f32. */
static inline size_t ftq_attention_work_bytes(int64_t batch, int64_t n_heads, int64_t q_len, int64_t kv_len) {
  size_t b = (size_t)ftq_attention_q_block(q_len, kv_len);
  size_t cpu = 8u * b * (size_t)(kv_len > 0 ? kv_len : 1), gpu = 4u * (size_t)batch * (size_t)n_heads * (size_t)q_len;
  return (cpu > gpu ? cpu : gpu) + 256u;
}

/* LM head + cross-entropy, chunked over the vocabulary so the [n, vocab]
 * logits never exist at once: logits = h W^T (W [vocab, dim] of w_type);
 * for every target t_i != -100, loss_i = logsumexp(logits_i) - logits_i[t_i].
 * Backward in the same call: dh = grad_scale * (softmax - onehot) W over the
 * counted rows (zero elsewhere). With `logits` set, writes the full logits
 * instead (inference: no dh; targets may then be NULL). */
typedef struct ftq_lm_head_args {
  int64_t n, dim, vocab;
  const float *h;              /* [n, dim] */
  const void *w;               /* [vocab, dim] */
  ftq_dtype w_type;
  const int32_t *targets;      /* [n], -100 = ignored; NULL: no loss */
  float grad_scale;            /* dL/d(loss sum), e.g. 1 / counted tokens */
  double *loss_sum;            /* host: sum of loss_i over counted rows */
  int64_t *count;              /* host: counted rows */
  float *token_loss;           /* [n] loss_i (0 where ignored), or NULL */
  float *dh;                   /* [n, dim] written, or NULL: no backward */
  float *logits;               /* [n, vocab] or NULL */
  int64_t vocab_chunk;         /* columns per chunk */
  void *work;                  /* scratch of ftq_lm_head_work_bytes() bytes */
  size_t work_bytes;
  int fp16;                    /* GPU: fp16 instead of bf16 for the products (CPU: ignored) */
} ftq_lm_head_args;

/* Scratch of the LM head, in this order: an [n, vocab_chunk] f32 slice of
 * logits, 4 doubles per row, and a chunk of the weight converted
 * [vocab_chunk, dim] (CPU: to f32, when w_type is not f32). CUDA adds h and
 * the chunk's exp(logit - max) in the compute dtype and one f32 per row. */
static inline size_t ftq_lm_head_work_bytes(int64_t n, int64_t dim, int64_t vocab_chunk, ftq_dtype w_type) {
  (void)w_type;
  const size_t nn = (size_t)n, c = (size_t)vocab_chunk, d = (size_t)dim;
  return 4u * nn * c + 8u * 4u * nn + 4u * c * d + 2u * nn * d + 2u * nn * c + 4u * nn + 7u * 256u;
}

/* What a backend needs to set a context up. */
/* ---- communicators ------------------------------------------------------
 * What one kind of communicator implements (src/dist/comm.h dispatches).
 * `impl` is the kind's state. Buffers are device memory of the context the
 * communicator was made on (host memory for the CPU). Every call that
 * waits gives up after the timeout given at creation, and notices a peer
 * that aborted or exited; it then returns FTQ_ERR_TIMEOUT (nothing came),
 * FTQ_ERR_COMM (a peer left, died or aborted) or FTQ_ERR_NCCL (NCCL failed) with the message set, naming
 * `what` and the peer where known. After a failure the caller aborts. */
typedef struct ftq_comm_ops {
  const char *name; /* "shm", "nccl" */
  /* In-place sum over the ranks of n_bufs f32 buffers (counts[i]
   * elements), issued as one group. May return before it is done (NCCL:
   * on a communication stream, after the work issued so far on the
   * context's stream); `wait` completes it. Every rank gets the same bits. */
  ftq_status (*allreduce_f32)(void *impl, float *const *bufs, const size_t *counts, size_t n_bufs, const char *what);
  /* Buffer i (bytes[i] bytes) from rank roots[i] to every rank, as one group; asynchronous as above. */
  ftq_status (*broadcast)(void *impl, void *const *bufs, const size_t *bytes, const int *roots, size_t n_bufs,
                          const char *what);
  /* The context's stream waits for every operation issued so far; the host
   * blocks until they are complete (polling for errors and the timeout). */
  ftq_status (*wait)(void *impl, const char *what);
  /* Host values, blocking; the same bits on every rank. */
  ftq_status (*allreduce_host)(void *impl, double *values, size_t n, ftq_comm_reduce op, const char *what);
  ftq_status (*barrier)(void *impl, const char *what);
  /* Non-blocking health query. */
  ftq_status (*check)(void *impl);
  /* Makes pending and later operations fail here and on the peers; safe
   * from another thread. */
  void (*abort)(void *impl);
  void (*destroy)(void *impl);
} ftq_comm_ops;

typedef struct ftq_backend_config {
  int device_index;       /* CUDA device ordinal; 0 for CPU */
  int num_threads;        /* CPU worker threads (>= 1) */
  size_t workspace_bytes; /* cuBLASLt workspace */
  const ftq_context *ctx; /* for logging through the host table */
} ftq_backend_config;

typedef struct ftq_backend {
  int abi;     /* FTQ_BACKEND_ABI */
  size_t size; /* sizeof(ftq_backend) of the build that made it */
  const char *name;

  /* ---- lifecycle ---- */
  ftq_status (*device_count)(int *count);
  /* Writes a description (e.g. "cuda:0 NVIDIA H100 ...") into name/len. */
  ftq_status (*create)(const ftq_backend_config *cfg, void **be, char *name, size_t name_len);
  void (*destroy)(void *be);
  ftq_status (*device_memory)(void *be, size_t *free_bytes, size_t *total_bytes);
  ftq_status (*synchronize)(void *be);

  /* ---- memory ---- */
  ftq_status (*alloc)(void *be, size_t bytes, void **ptr);
  void (*free)(void *be, void *ptr);
  /* Host memory the device reads fast (pinned for CUDA; plain for CPU). */
  ftq_status (*host_alloc)(void *be, size_t bytes, void **ptr);
  void (*host_free)(void *be, void *ptr);
  ftq_status (*copy)(void *be, void *dst, const void *src, size_t bytes, ftq_copy_kind kind);

  /* ---- elementwise and reductions (n elements, contiguous) ---- */
  /* x[i] = value converted to `type` (any float type, or integer types
   * for integral values). */
  ftq_status (*fill)(void *be, void *x, ftq_dtype type, size_t n, float value);
  /* dst[i] = (dst_type) src[i]; float types f32/f16/bf16, round to nearest even. */
  ftq_status (*convert)(void *be, void *dst, ftq_dtype dst_type, const void *src, ftq_dtype src_type, size_t n);
  /* y = a * x + b * y (f32). b == 0 never reads y. */
  ftq_status (*axpby)(void *be, size_t n, float a, const float *x, float b, float *y);
  /* result = op over x (float types), accumulated in double on the CPU and
   * in fp32 per thread + double across blocks on CUDA. */
  ftq_status (*reduce)(void *be, ftq_reduce_op op, const void *x, ftq_dtype type, size_t n, double *result);

  /* ---- matrix products ---- */
  ftq_status (*gemm)(void *be, const ftq_gemm_args *args);

  /* ---- optimizer (src/optim) ---- */
  ftq_status (*adamw)(void *be, const ftq_adamw_args *args);
  /* ---- quantization (src/quant/quant_cpu.c, cuda/quant.cu) ---- */
  /* Codes of x (n elements of f32/f16/bf16) into d->packed, and the fp32
   * absmax into d->absmax. With d->nested the absmax is double-quantized
   * instead (d->absmax unused): d->code2 (device) is filled from the host
   * table code2_host, the codes go to d->qabsmax / d->absmax2, and *offset
   * (host) receives the mean that was subtracted (ftq_quant_mean's order). */
  ftq_status (*quantize_4bit)(void *be, const ftq_q4_desc *d, const void *x, ftq_dtype x_type, const float *code2_host,
                              float *offset);
  /* Blockwise 8-bit with a sorted 256-entry code (bitsandbytes'
   * quantize_blockwise) of x (f32, n elements) centred as `center` says;
   * *offset is a host float. */
  ftq_status (*quantize_8bit)(void *be, const float *x, size_t n, int64_t blocksize, const float *code,
                              ftq_center_mode center, float *offset, uint8_t *q, float *absmax);
  /* out (f32/f16/bf16, n elements) = LUT[code] * absmax of each block,
   * decoding the absmax first when d->nested. */
  ftq_status (*dequantize_4bit)(void *be, const ftq_q4_desc *d, void *out, ftq_dtype out_type);
  /* INT8 codes of x; computes the scales / zero points per group unless
   * d->params_given. *clipped (host) receives the count of values that fell
   * outside the code range. */
  ftq_status (*quantize_int8)(void *be, const ftq_int8_desc *d, const void *x, ftq_dtype x_type, int64_t *clipped);
  ftq_status (*dequantize_int8)(void *be, const ftq_int8_desc *d, void *out, ftq_dtype out_type);
  /* out[i] = mask[i] ? x[i] : 0 (the straight-through gradient of a
   * fake-quantized value); x and out of `type`, mask NULL keeps every x. */
  ftq_status (*mask_select)(void *be, size_t n, const uint8_t *mask, const void *x, ftq_dtype type, void *out);
  /* ---- model operations (see the argument structs above) ---- */
  /* out[i, :] = f32(table[ids[i], :]); ids outside [0, vocab) are an error. */
  ftq_status (*embedding)(void *be, const int32_t *ids, int64_t n, const void *table, ftq_dtype table_type,
                          int64_t vocab, int64_t dim, float *out);
  /* RMSNorm with the residual add in front: with delta, sum = x + delta
   * (sum may alias x) and s = sum, else s = x; rstd = 1 / sqrt(mean(s^2) +
   * eps) and y = w * (s * rstd), as HF's LlamaRMSNorm in f32. rstd [rows]
   * may be NULL. */
  ftq_status (*rmsnorm)(void *be, int64_t rows, int64_t dim, float eps, const float *x, const float *delta,
                        float *sum, const void *w, ftq_dtype w_type, float *y, float *rstd);
  /* dx (+)= d(RMSNorm)/dx . dy at x with the saved rstd. */
  ftq_status (*rmsnorm_backward)(void *be, int64_t rows, int64_t dim, const float *x, const void *w,
                                 ftq_dtype w_type, const float *rstd, const float *dy, float *dx, int accumulate);
  ftq_status (*linear)(void *be, const ftq_linear_args *args);
  ftq_status (*linear_backward)(void *be, const ftq_linear_args *args);
  /* Rotary embedding in place on x [n, row_stride] holding n_heads heads of
   * head_dim from column 0: pairs (i, i + head_dim/2) rotate by angle
   * f32(positions[t]) * inv_freq[i] (HF's rotate_half). inverse != 0 rotates
   * back (the backward of the forward rotation). */
  ftq_status (*rope)(void *be, float *x, int64_t n, int64_t row_stride, int64_t n_heads, int64_t head_dim,
                     const int32_t *positions, const float *inv_freq, int inverse);
  ftq_status (*attention)(void *be, const ftq_attention_args *args);
  ftq_status (*attention_backward)(void *be, const ftq_attention_args *args);
  /* out = silu(gate) * up over n elements; the backward may write dgate
   * over gate and dup over up. */
  ftq_status (*swiglu)(void *be, size_t n, const float *gate, const float *up, float *out);
  ftq_status (*swiglu_backward)(void *be, size_t n, const float *gate, const float *up, const float *dout,
                                float *dgate, float *dup);
  ftq_status (*lm_head)(void *be, const ftq_lm_head_args *args);

  /* ---- communicators (NULL when the backend has none, e.g. CUDA without NCCL) ---- */
  /* A new id payload of `len` bytes (NCCL: ncclGetUniqueId; len >= 128). */
  ftq_status (*comm_id_create)(unsigned char *payload, size_t len);
  /* Joins the communicator `payload` names as rank of size on this
   * backend context; blocks until every rank joined or timeout_s passed. */
  ftq_status (*comm_create)(void *be, const unsigned char *payload, size_t len, int rank, int size, double timeout_s,
                            void **impl, const ftq_comm_ops **ops);
} ftq_backend;

/* Services libftq gives a backend module: error text and logging, so the
 * module writes into the same thread-local message and log callback. */
typedef struct ftq_host_api {
  int abi;
  const char *version; /* FTQ_VERSION_STRING of libftq */
  ftq_status (*verror)(ftq_status status, const char *fmt, va_list ap);
  void (*log)(const ftq_context *ctx, ftq_log_level level, const char *msg);
  /* ftq_qtensor_dequantize (quant/qtensor.h): a weight of any scheme into
   * dst (numel elements of dst_dtype) on the weight's context, so the
   * linear operation needs no copy of the quantization layouts. */
  ftq_status (*dequantize)(const struct ftq_qtensor *q, ftq_dtype dst_dtype, void *dst);
} ftq_host_api;

/* Entry point a CUDA module exports. Returns NULL (with the message set
 * through host->verror) when the module cannot serve this host. */
typedef const ftq_backend *(*ftq_backend_entry_fn)(const ftq_host_api *host);
#define FTQ_BACKEND_ENTRY_NAME "ftq_cuda_module_entry"

/* In libftq: the CPU backend, and the CUDA backend (loads the module on
 * first use; FTQ_ERR_NO_DEVICE with the reason when it cannot). */
const ftq_backend *ftq_backend_cpu(void);
ftq_status ftq_backend_cuda(const ftq_backend **out);

#ifdef __cplusplus
}
#endif

#endif /* FTQ_BACKEND_H */

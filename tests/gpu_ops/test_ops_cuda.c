/* Every model operation of the CUDA backend against the CPU backend (the
 * fp32 reference) on fresh random inputs of several shapes, odd sizes
 * included; every GPU output is poisoned (NaN, or 0xff bytes) before each
 * call so an unwritten element fails the comparison. Tolerances follow the
 * compute dtype (relative Frobenius error): f32-only paths (norms, RoPE,
 * SwiGLU, the LoRA products and gradients) 1e-4; products on the tensor
 * cores in bf16 2e-2, fp16 5e-3. FTQ_TEST_QUICK=1 (compute-sanitizer runs)
 * keeps one small shape per operation. Skips (77) without a CUDA device. */
#include "core/context.h"
#include "core/half.h"
#include "quant/qtensor.h"
#include "test_util.h"

static ftq_context *cpu, *gpu;
static int quick;
static uint64_t seed = 12345;
static double worst_bf16 = 0, worst_f32 = 0;

#define TOL_F32 1e-4
#define TOL_BF16 2e-2
#define TOL_F16 5e-3

/* ---- buffers ---------------------------------------------------------- */

static void *dev(size_t bytes) {
  void *p = NULL;
  REQUIRE_OK(gpu->be->alloc(gpu->be_ctx, bytes ? bytes : 1, &p));
  return p;
}
static void *up(const void *h, size_t bytes) {
  void *d = dev(bytes);
  if (bytes) REQUIRE_OK(gpu->be->copy(gpu->be_ctx, d, h, bytes, FTQ_COPY_H2D));
  return d;
}
static void down(void *h, const void *d, size_t bytes) {
  if (bytes) REQUIRE_OK(gpu->be->copy(gpu->be_ctx, h, d, bytes, FTQ_COPY_D2H));
}
static void dfree(void *d) { gpu->be->free(gpu->be_ctx, d); }
static void poison(void *d, size_t n_f32) { REQUIRE_OK(gpu->be->fill(gpu->be_ctx, d, FTQ_DTYPE_F32, n_f32, NAN)); }
static void poison_bytes(void *d, size_t n) { REQUIRE_OK(gpu->be->fill(gpu->be_ctx, d, FTQ_DTYPE_U8, n, 255)); }

static float *rnd(size_t n, float scale, float offset) {
  float *x = malloc(sizeof(float) * (n ? n : 1));
  for (size_t i = 0; i < n; i++) x[i] = offset + scale * test_rand_uniform(&seed);
  return x;
}
/* Rounds x to bf16 in place and returns the encoded copy. */
static uint16_t *to_bf16(float *x, size_t n) {
  uint16_t *e = malloc(2 * (n ? n : 1));
  for (size_t i = 0; i < n; i++) e[i] = ftq_f32_to_bf16(x[i]), x[i] = ftq_bf16_to_f32(e[i]);
  return e;
}
static float *get(const void *d, size_t n) {
  float *h = malloc(sizeof(float) * (n ? n : 1));
  down(h, d, sizeof(float) * n);
  return h;
}

/* Compares a GPU result (device) with the CPU's (host). */
static void cmp(const char *what, const void *d_got, const float *want, size_t n, double tol) {
  float *got = get(d_got, n);
  double e = test_rel_error_f32(got, want, n);
  if (tol <= TOL_F32 && e > worst_f32) worst_f32 = e;
  if (tol > TOL_F32 && e > worst_bf16) worst_bf16 = e;
  printf("  %-72s %.2e%s\n", what, e, e <= tol ? "" : "  <-- FAIL");
  CHECK_MSG(e <= tol, "%s: relative error %.3g > %.1g", what, e, tol);
  free(got);
}

/* ---- embedding --------------------------------------------------------- */

static void test_embedding(int64_t n, int64_t vocab, int64_t dim, ftq_dtype t) {
  float *table = rnd((size_t)(vocab * dim), 1, 0);
  uint16_t *tb = t == FTQ_DTYPE_BF16 ? to_bf16(table, (size_t)(vocab * dim)) : NULL;
  int32_t *ids = malloc(sizeof(int32_t) * (size_t)n);
  for (int64_t i = 0; i < n; i++) ids[i] = (int32_t)(test_rand_u64(&seed) % (uint64_t)vocab);
  const void *th = tb ? (const void *)tb : (const void *)table;
  size_t tbytes = (size_t)(vocab * dim) * (tb ? 2 : 4);
  float *want = malloc(sizeof(float) * (size_t)(n * dim));
  CHECK_OK(cpu->be->embedding(cpu->be_ctx, ids, n, th, t, vocab, dim, want));
  int32_t *dids = up(ids, 4 * (size_t)n);
  void *dt = up(th, tbytes);
  float *dout = dev(sizeof(float) * (size_t)(n * dim));
  poison(dout, (size_t)(n * dim));
  CHECK_OK(gpu->be->embedding(gpu->be_ctx, dids, n, dt, t, vocab, dim, dout));
  float *got = get(dout, (size_t)(n * dim));
  CHECK_MSG(memcmp(got, want, sizeof(float) * (size_t)(n * dim)) == 0, "embedding %s n=%lld dim=%lld differs",
            ftq_dtype_name(t), (long long)n, (long long)dim);
  printf("  %-72s exact\n", "embedding");
  ids[n / 2] = (int32_t)vocab; /* out of range: an error naming the position */
  REQUIRE_OK(gpu->be->copy(gpu->be_ctx, dids, ids, 4 * (size_t)n, FTQ_COPY_H2D));
  CHECK_STATUS(gpu->be->embedding(gpu->be_ctx, dids, n, dt, t, vocab, dim, dout), FTQ_ERR_INVALID_ARGUMENT);
  CHECK_ERROR_MENTIONS("token id");
  dfree(dids), dfree(dt), dfree(dout);
  free(table), free(tb), free(ids), free(want), free(got);
}

/* ---- RMSNorm ------------------------------------------------------------ */

static void test_rmsnorm(int64_t rows, int64_t dim, ftq_dtype wt, int with_delta, int alias) {
  const size_t n = (size_t)(rows * dim);
  float *x = rnd(n, 2, 0), *delta = rnd(n, 1, 0), *w = rnd((size_t)dim, 0.3f, 1);
  uint16_t *wb = wt == FTQ_DTYPE_BF16 ? to_bf16(w, (size_t)dim) : NULL;
  const void *wh = wb ? (const void *)wb : (const void *)w;
  float *y = malloc(4 * n), *rs = malloc(4 * (size_t)rows), *sum = malloc(4 * n), *xc = malloc(4 * n);
  memcpy(xc, x, 4 * n);
  float *sum_c = alias ? xc : sum;
  CHECK_OK(cpu->be->rmsnorm(cpu->be_ctx, rows, dim, 1e-5f, xc, with_delta ? delta : NULL, with_delta ? sum_c : NULL,
                            wh, wt, y, rs));
  float *dx = up(x, 4 * n), *dd = up(delta, 4 * n), *dsum = alias ? dx : dev(4 * n), *dy = dev(4 * n);
  float *drs = dev(4 * (size_t)rows);
  void *dw = up(wh, (size_t)dim * (wb ? 2 : 4));
  poison(dy, n), poison(drs, (size_t)rows);
  if (!alias) poison(dsum, n);
  CHECK_OK(gpu->be->rmsnorm(gpu->be_ctx, rows, dim, 1e-5f, dx, with_delta ? dd : NULL, with_delta ? dsum : NULL, dw,
                            wt, dy, drs));
  char what[160];
  snprintf(what, sizeof what, "rmsnorm %lldx%lld w %s%s%s: y", (long long)rows, (long long)dim, ftq_dtype_name(wt),
           with_delta ? " +residual" : "", alias ? " (sum over x)" : "");
  cmp(what, dy, y, n, TOL_F32);
  cmp("  rstd", drs, rs, (size_t)rows, TOL_F32);
  if (with_delta) cmp("  sum", dsum, sum_c, n, 1e-7);
  /* backward from the same rstd and x (the sum when residual) */
  const float *xin = with_delta ? sum_c : x;
  float *g = rnd(n, 1, 0), *dx0 = rnd(n, 1, 0);
  for (int acc = 0; acc < 2; acc++) {
    float *want = malloc(4 * n);
    memcpy(want, dx0, 4 * n);
    CHECK_OK(cpu->be->rmsnorm_backward(cpu->be_ctx, rows, dim, xin, wh, wt, rs, g, want, acc));
    float *dxin = up(xin, 4 * n), *drs2 = up(rs, 4 * (size_t)rows), *dg = up(g, 4 * n);
    float *dgx = acc ? up(dx0, 4 * n) : dev(4 * n);
    if (!acc) poison(dgx, n);
    CHECK_OK(gpu->be->rmsnorm_backward(gpu->be_ctx, rows, dim, dxin, dw, wt, drs2, dg, dgx, acc));
    cmp(acc ? "  backward (accumulate)" : "  backward", dgx, want, n, TOL_F32);
    dfree(dxin), dfree(drs2), dfree(dg), dfree(dgx);
    free(want);
  }
  dfree(dx), dfree(dd), dfree(dy), dfree(drs), dfree(dw);
  if (!alias) dfree(dsum);
  free(x), free(delta), free(w), free(wb), free(y), free(rs), free(sum), free(xc), free(g), free(dx0);
}

/* ---- RoPE, SwiGLU ---------------------------------------------------------- */

static void test_rope(int64_t n, int64_t heads, int64_t hd, int64_t extra) {
  const int64_t stride = heads * hd + extra;
  const size_t ne = (size_t)(n * stride);
  float *x = rnd(ne, 1, 0), *inv = malloc(sizeof(float) * (size_t)(hd / 2));
  for (int64_t i = 0; i < hd / 2; i++) inv[i] = (float)pow(10000.0, -2.0 * (double)i / (double)hd);
  int32_t *pos = malloc(4 * (size_t)n);
  for (int64_t t = 0; t < n; t++) pos[t] = (int32_t)(test_rand_u64(&seed) % 4096);
  float *dx = up(x, 4 * ne), *dinv = up(inv, 4 * (size_t)(hd / 2));
  int32_t *dpos = up(pos, 4 * (size_t)n);
  for (int inverse = 0; inverse < 2; inverse++) {
    CHECK_OK(cpu->be->rope(cpu->be_ctx, x, n, stride, heads, hd, pos, inv, inverse));
    CHECK_OK(gpu->be->rope(gpu->be_ctx, dx, n, stride, heads, hd, dpos, dinv, inverse));
    char what[128];
    snprintf(what, sizeof what, "rope %lld tokens x %lld heads x %lld (+%lld)%s", (long long)n, (long long)heads,
             (long long)hd, (long long)extra, inverse ? " inverse" : "");
    cmp(what, dx, x, ne, TOL_F32);
  }
  dfree(dx), dfree(dinv), dfree(dpos);
  free(x), free(inv), free(pos);
}

static void test_swiglu(size_t n) {
  float *g = rnd(n, 6, 0), *u = rnd(n, 2, 0), *d = rnd(n, 1, 0), *out = malloc(4 * n);
  float *dg = malloc(4 * n), *du = malloc(4 * n);
  CHECK_OK(cpu->be->swiglu(cpu->be_ctx, n, g, u, out));
  CHECK_OK(cpu->be->swiglu_backward(cpu->be_ctx, n, g, u, d, dg, du));
  float *dG = up(g, 4 * n), *dU = up(u, 4 * n), *dD = up(d, 4 * n), *dO = dev(4 * n);
  poison(dO, n);
  CHECK_OK(gpu->be->swiglu(gpu->be_ctx, n, dG, dU, dO));
  char what[64];
  snprintf(what, sizeof what, "swiglu n=%zu", n);
  cmp(what, dO, out, n, TOL_F32);
  /* the backward in place over gate and up, as the graph calls it */
  CHECK_OK(gpu->be->swiglu_backward(gpu->be_ctx, n, dG, dU, dD, dG, dU));
  cmp("  backward dgate (in place)", dG, dg, n, TOL_F32);
  cmp("  backward dup (in place)", dU, du, n, TOL_F32);
  dfree(dG), dfree(dU), dfree(dD), dfree(dO);
  free(g), free(u), free(d), free(out), free(dg), free(du);
}

/* ---- linear with LoRA ---------------------------------------------------- */

typedef enum { W_F32, W_BF16, W_NF4, W_INT8 } wkind;
static const char *wkind_name[] = {"f32", "bf16", "nf4+dq", "int8"};

static void make_weight(ftq_context *ctx, wkind k, const float *w, const uint16_t *wb, int64_t out, int64_t in,
                        ftq_qtensor *q) {
  if (k == W_F32) {
    REQUIRE_OK(ftq_qtensor_init_plain(ctx, FTQ_DTYPE_F32, out, in, w, "test weight", q));
  } else if (k == W_BF16) {
    REQUIRE_OK(ftq_qtensor_init_plain(ctx, FTQ_DTYPE_BF16, out, in, wb, "test weight", q));
  } else {
    ftq_options *o;
    REQUIRE_OK(ftq_options_create(&o));
    if (k == W_NF4) {
      REQUIRE_OK(ftq_options_set_bool(o, "load_in_4bit", 1));
      REQUIRE_OK(ftq_options_set_string(o, "bnb_4bit_quant_type", "nf4"));
      REQUIRE_OK(ftq_options_set_bool(o, "bnb_4bit_use_double_quant", 1));
    } else {
      REQUIRE_OK(ftq_options_set_bool(o, "load_in_8bit", 1));
    }
    REQUIRE_OK(ftq_qtensor_quantize_host(ctx, o, w, FTQ_DTYPE_F32, out, in, "test weight", q));
    ftq_options_destroy(o);
  }
}

static void test_linear(int64_t n, int64_t in, int64_t out, int64_t r, wkind wk, float dropout, int bias, int fp16) {
  const double tol = fp16 ? TOL_F16 : TOL_BF16;
  float *w = rnd((size_t)(out * in), 1.7f / sqrtf((float)in), 0);
  uint16_t *wb = to_bf16(w, (size_t)(out * in)); /* f32 weights are bf16-representable too: same inputs either way */
  ftq_qtensor qc, qg;
  make_weight(cpu, wk, w, wb, out, in, &qc);
  make_weight(gpu, wk, w, wb, out, in, &qg);
  float *A = rnd((size_t)(r * in), 1.0f / sqrtf((float)in), 0), *B = rnd((size_t)(out * r), 0.5f, 0);
  float *x = rnd((size_t)(n * in), 1, 0), *b = rnd((size_t)out, 0.5f, 0), *dy = rnd((size_t)(n * out), 1, 0);
  const size_t ws = ftq_linear_work_bytes(n, in, out, r, 1), mb = ftq_dropout_mask_bytes(n, in);
  ftq_linear_args a;
  memset(&a, 0, sizeof a);
  a.n = n, a.in = in, a.out = out, a.r = r, a.scaling = 2.0f / (float)(r ? r : 1), a.dropout = dropout;
  a.seed = 0x1234567890abcdefull, a.stream = (2ull << 56) | (7ull << 16) | 3u;
  a.bias_type = FTQ_DTYPE_F32;
  a.fp16 = fp16;
  /* CPU */
  ftq_linear_args c = a;
  float *y = malloc(4 * (size_t)(n * out)), *t = malloc(4 * (size_t)(n * (r ? r : 1)));
  uint8_t *mask = malloc(mb ? mb : 1);
  void *work = malloc(ws);
  c.w = &qc, c.bias = bias ? b : NULL, c.lora_a = A, c.lora_b = B, c.x = x, c.t = t, c.y = y;
  c.mask = dropout > 0 ? mask : NULL, c.work = work, c.work_bytes = ws;
  CHECK_OK(cpu->be->linear(cpu->be_ctx, &c));
  /* GPU */
  ftq_linear_args d = a;
  float *dA = up(A, 4 * (size_t)(r * in)), *dB = up(B, 4 * (size_t)(out * r)), *dx = up(x, 4 * (size_t)(n * in));
  float *db = up(b, 4 * (size_t)out), *dY = dev(4 * (size_t)(n * out)), *dT = dev(4 * (size_t)(n * (r ? r : 1)));
  uint8_t *dM = dev(mb ? mb : 1);
  void *dW = dev(ws);
  poison(dY, (size_t)(n * out)), poison(dT, (size_t)(n * r)), poison_bytes(dM, mb);
  d.w = &qg, d.bias = bias ? db : NULL, d.lora_a = dA, d.lora_b = dB, d.x = dx, d.t = dT, d.y = dY;
  d.mask = dropout > 0 ? dM : NULL, d.work = dW, d.work_bytes = ws;
  CHECK_OK(gpu->be->linear(gpu->be_ctx, &d));
  char what[160];
  snprintf(what, sizeof what, "linear %s n=%lld in=%lld out=%lld r=%lld drop=%.2f%s%s: y", wkind_name[wk],
           (long long)n, (long long)in, (long long)out, (long long)r, dropout, bias ? " bias" : "",
           fp16 ? " fp16" : "");
  cmp(what, dY, y, (size_t)(n * out), tol);
  if (r > 0) {
    cmp("  t = dropout(x) A^T (f32)", dT, t, (size_t)(n * r), TOL_F32);
    if (dropout > 0) {
      uint8_t *gm = malloc(mb);
      down(gm, dM, mb);
      CHECK_MSG(memcmp(gm, mask, mb) == 0, "linear: dropout keep bits differ from the CPU's");
      printf("  %-72s %s\n", "  dropout keep bits = CPU's", memcmp(gm, mask, mb) == 0 ? "yes" : "NO  <-- FAIL");
      free(gm);
    }
    /* recomputation: t only */
    poison(dT, (size_t)(n * r));
    ftq_linear_args d2 = d;
    d2.y = NULL;
    d2.mask = NULL;
    CHECK_OK(gpu->be->linear(gpu->be_ctx, &d2));
    cmp("  t recomputed (y NULL, mask regenerated)", dT, t, (size_t)(n * r), TOL_F32);
  }
  /* backward: dx accumulated onto random values, LoRA gradients added */
  float *dx0 = rnd((size_t)(n * in), 1, 0), *ga0 = rnd((size_t)(r * in), 1, 0), *gb0 = rnd((size_t)(out * r), 1, 0);
  for (int variant = 0; variant < 2; variant++) { /* 0: mask bits given, accumulate; 1: regenerate, overwrite */
    float *gx = malloc(4 * (size_t)(n * in)), *ga = malloc(4 * (size_t)(r * in + 1)), *gb = malloc(4 * (size_t)(out * r + 1));
    memcpy(gx, dx0, 4 * (size_t)(n * in));
    memcpy(ga, ga0, 4 * (size_t)(r * in));
    memcpy(gb, gb0, 4 * (size_t)(out * r));
    ftq_linear_args cb = c;
    cb.y = NULL, cb.dy = dy, cb.dx = gx, cb.accumulate_dx = !variant, cb.grad_a = r ? ga : NULL;
    cb.grad_b = r ? gb : NULL, cb.mask = variant ? NULL : c.mask;
    CHECK_OK(cpu->be->linear_backward(cpu->be_ctx, &cb));
    float *ddy = up(dy, 4 * (size_t)(n * out)), *dgx = up(dx0, 4 * (size_t)(n * in));
    float *dga = up(ga0, 4 * (size_t)(r * in)), *dgb = up(gb0, 4 * (size_t)(out * r));
    if (variant) poison(dgx, (size_t)(n * in));
    ftq_linear_args gbk = d;
    gbk.y = NULL, gbk.dy = ddy, gbk.dx = dgx, gbk.accumulate_dx = !variant, gbk.grad_a = r ? dga : NULL;
    gbk.grad_b = r ? dgb : NULL, gbk.mask = variant ? NULL : d.mask;
    /* each backend's own t from its forward (dT holds the GPU's) */
    CHECK_OK(gpu->be->linear_backward(gpu->be_ctx, &gbk));
    cmp(variant ? "  backward dx (mask regenerated, overwrite)" : "  backward dx (mask bits, accumulate)", dgx, gx,
        (size_t)(n * in), tol);
    if (r > 0) {
      cmp("  grad A (accumulated, f32)", dga, ga, (size_t)(r * in), TOL_F32);
      cmp("  grad B (accumulated, f32)", dgb, gb, (size_t)(out * r), TOL_F32);
    }
    dfree(ddy), dfree(dgx), dfree(dga), dfree(dgb);
    free(gx), free(ga), free(gb);
  }
  dfree(dA), dfree(dB), dfree(dx), dfree(db), dfree(dY), dfree(dT), dfree(dM), dfree(dW);
  ftq_qtensor_release(&qc);
  ftq_qtensor_release(&qg);
  free(w), free(wb), free(A), free(B), free(x), free(b), free(dy), free(y), free(t), free(mask), free(work);
  free(dx0), free(ga0), free(gb0);
}

/* ---- attention ----------------------------------------------------------- */

/* lse: equal where both are -inf (a query that sees no key), else close. */
static void cmp_lse(const char *what, const void *d_got, const float *want, size_t n) {
  float *got = get(d_got, n);
  double worst = 0;
  int bad = 0;
  for (size_t i = 0; i < n; i++) {
    if (isinf(want[i]) || isinf(got[i])) {
      bad += !(isinf(want[i]) && isinf(got[i]) && want[i] < 0 && got[i] < 0);
      continue;
    }
    double e = fabs((double)got[i] - want[i]);
    if (!(e <= worst)) worst = e;
  }
  printf("  %-72s %.2e abs%s\n", what, worst, worst <= 2e-2 && !bad ? "" : "  <-- FAIL");
  CHECK_MSG(worst <= 2e-2 && !bad, "%s: lse differs (worst %.3g, %d -inf mismatches)", what, worst, bad);
  free(got);
}

static void test_attention(int64_t B, int64_t q_len, int64_t kv_len, int64_t kv_stride, int64_t H, int64_t KV,
                           int64_t D, int pad, int packed, int fp16) {
  const double tol = fp16 ? TOL_F16 : TOL_BF16;
  const int backward = q_len == kv_len && kv_stride == kv_len;
  const size_t nq = (size_t)(B * q_len * H * D), nkv = (size_t)(B * kv_stride * KV * D), nl = (size_t)(B * q_len * H);
  float *q = rnd(nq, 2, 0), *k = rnd(nkv, 2, 0), *v = rnd(nkv, 1, 0), *dO = rnd(nq, 1, 0);
  int32_t *valid = NULL, *seq = NULL;
  if (pad) { /* right padding of a few keys per row; key 0 of row 0 invalid: query 0 sees no key */
    valid = malloc(4 * (size_t)(B * kv_len));
    for (int64_t b = 0; b < B; b++)
      for (int64_t j = 0; j < kv_len; j++) valid[b * kv_len + j] = j < kv_len - 3 * (b + 1) && !(b == 0 && j == 0);
  }
  if (packed) { /* two or three sequences per row */
    seq = malloc(4 * (size_t)(B * kv_len));
    for (int64_t b = 0; b < B; b++)
      for (int64_t j = 0; j < kv_len; j++) seq[b * kv_len + j] = (int32_t)(j < kv_len / 3 ? 0 : j < kv_len / 2 + b ? 1 : 2);
  }
  ftq_attention_args a;
  memset(&a, 0, sizeof a);
  a.batch = B, a.q_len = q_len, a.kv_len = kv_len, a.kv_stride = kv_stride, a.n_heads = H, a.n_kv_heads = KV;
  a.head_dim = D, a.scale = (float)(1.0 / sqrt((double)D)), a.fp16 = fp16;
  const size_t ws = ftq_attention_work_bytes(B, H, q_len, kv_len);
  ftq_attention_args c = a;
  float *out = malloc(4 * nq), *lse = malloc(4 * nl), *gq = malloc(4 * nq), *gk = malloc(4 * nkv), *gv = malloc(4 * nkv);
  void *work = malloc(ws);
  c.q = q, c.k = k, c.v = v, c.key_valid = valid, c.seq_ids = seq, c.out = out, c.lse = lse, c.work = work;
  c.work_bytes = ws;
  CHECK_OK(cpu->be->attention(cpu->be_ctx, &c));
  ftq_attention_args d = a;
  float *dq = up(q, 4 * nq), *dk = up(k, 4 * nkv), *dv = up(v, 4 * nkv), *dout = dev(4 * nq), *dlse = dev(4 * nl);
  int32_t *dvalid = valid ? up(valid, 4 * (size_t)(B * kv_len)) : NULL, *dseq = seq ? up(seq, 4 * (size_t)(B * kv_len)) : NULL;
  void *dW = dev(ws);
  poison(dout, nq), poison(dlse, nl);
  d.q = dq, d.k = dk, d.v = dv, d.key_valid = dvalid, d.seq_ids = dseq, d.out = dout, d.lse = dlse, d.work = dW;
  d.work_bytes = ws;
  CHECK_OK(gpu->be->attention(gpu->be_ctx, &d));
  char what[160];
  snprintf(what, sizeof what, "attention B=%lld q=%lld kv=%lld(%lld) heads %lld/%lld d=%lld%s%s%s: out", (long long)B,
           (long long)q_len, (long long)kv_len, (long long)kv_stride, (long long)H, (long long)KV, (long long)D,
           pad ? " pad" : "", packed ? " packed" : "", fp16 ? " fp16" : "");
  cmp(what, dout, out, nq, tol);
  cmp_lse("  lse", dlse, lse, nl);
  if (backward) {
    c.dout = dO, c.dq = gq, c.dk = gk, c.dv = gv;
    CHECK_OK(cpu->be->attention_backward(cpu->be_ctx, &c));
    float *ddO = up(dO, 4 * nq), *ddq = dev(4 * nq), *ddk = dev(4 * nkv), *ddv = dev(4 * nkv);
    poison(ddq, nq), poison(ddk, nkv), poison(ddv, nkv);
    d.dout = ddO, d.dq = ddq, d.dk = ddk, d.dv = ddv;
    CHECK_OK(gpu->be->attention_backward(gpu->be_ctx, &d));
    cmp("  backward dq", ddq, gq, nq, tol);
    cmp("  backward dk", ddk, gk, nkv, tol);
    cmp("  backward dv", ddv, gv, nkv, tol);
    dfree(ddO), dfree(ddq), dfree(ddk), dfree(ddv);
  }
  dfree(dq), dfree(dk), dfree(dv), dfree(dout), dfree(dlse), dfree(dW);
  if (dvalid) dfree(dvalid);
  if (dseq) dfree(dseq);
  free(q), free(k), free(v), free(dO), free(valid), free(seq), free(out), free(lse), free(gq), free(gk), free(gv);
  free(work);
}

/* ---- LM head ------------------------------------------------------------------ */

static void test_lm_head(int64_t n, int64_t dim, int64_t vocab, int64_t chunk, ftq_dtype wt, int fp16) {
  const double tol = fp16 ? TOL_F16 : TOL_BF16;
  float *h = rnd((size_t)(n * dim), 1, 0), *w = rnd((size_t)(vocab * dim), 3.0f / sqrtf((float)dim), 0);
  uint16_t *wb = to_bf16(w, (size_t)(vocab * dim));
  const void *wh = wt == FTQ_DTYPE_BF16 ? (const void *)wb : (const void *)w;
  int32_t *tg = malloc(4 * (size_t)n);
  int64_t counted = 0;
  for (int64_t i = 0; i < n; i++) {
    tg[i] = i % 5 == 2 ? -100 : (int32_t)(test_rand_u64(&seed) % (uint64_t)vocab);
    counted += tg[i] != -100;
  }
  ftq_lm_head_args a;
  memset(&a, 0, sizeof a);
  a.n = n, a.dim = dim, a.vocab = vocab, a.w_type = wt, a.grad_scale = 1.0f / (float)counted, a.vocab_chunk = chunk;
  a.fp16 = fp16;
  const size_t ws = ftq_lm_head_work_bytes(n, dim, chunk, wt);
  /* CPU */
  ftq_lm_head_args c = a;
  double loss_c = 0;
  int64_t cnt_c = 0;
  float *tl = malloc(4 * (size_t)n), *dh = malloc(4 * (size_t)(n * dim)), *lg = malloc(4 * (size_t)(n * vocab));
  void *work = malloc(ws);
  c.h = h, c.w = wh, c.targets = tg, c.loss_sum = &loss_c, c.count = &cnt_c, c.token_loss = tl, c.dh = dh;
  c.work = work, c.work_bytes = ws;
  CHECK_OK(cpu->be->lm_head(cpu->be_ctx, &c));
  /* GPU */
  ftq_lm_head_args d = a;
  double loss_g = 0;
  int64_t cnt_g = -1;
  float *dH = up(h, 4 * (size_t)(n * dim)), *dTl = dev(4 * (size_t)n), *dDh = dev(4 * (size_t)(n * dim));
  float *dLg = dev(4 * (size_t)(n * vocab));
  void *dWt = up(wh, (size_t)(vocab * dim) * (wt == FTQ_DTYPE_BF16 ? 2 : 4)), *dWk = dev(ws);
  int32_t *dTg = up(tg, 4 * (size_t)n);
  poison(dTl, (size_t)n), poison(dDh, (size_t)(n * dim));
  d.h = dH, d.w = dWt, d.targets = dTg, d.loss_sum = &loss_g, d.count = &cnt_g, d.token_loss = dTl, d.dh = dDh;
  d.work = dWk, d.work_bytes = ws;
  CHECK_OK(gpu->be->lm_head(gpu->be_ctx, &d));
  char what[160];
  snprintf(what, sizeof what, "lm_head n=%lld dim=%lld vocab=%lld chunk=%lld w %s%s: loss sum %.6f vs %.6f",
           (long long)n, (long long)dim, (long long)vocab, (long long)chunk, ftq_dtype_name(wt), fp16 ? " fp16" : "",
           loss_g, loss_c);
  float lg1 = (float)loss_g, lc1 = (float)loss_c;
  printf("  %-72s %.2e\n", what, test_rel_error_f32(&lg1, &lc1, 1));
  CHECK_MSG(fabs(loss_g - loss_c) <= tol * fabs(loss_c), "lm_head loss sum %.6f vs %.6f", loss_g, loss_c);
  CHECK_MSG(cnt_g == cnt_c, "lm_head count %lld vs %lld", (long long)cnt_g, (long long)cnt_c);
  cmp("  token losses", dTl, tl, (size_t)n, tol);
  cmp("  dh", dDh, dh, (size_t)(n * dim), tol);
  /* inference: full logits, and the loss from them */
  c.dh = NULL, c.logits = lg;
  CHECK_OK(cpu->be->lm_head(cpu->be_ctx, &c));
  poison(dLg, (size_t)(n * vocab));
  d.dh = NULL, d.logits = dLg;
  CHECK_OK(gpu->be->lm_head(gpu->be_ctx, &d));
  cmp("  logits", dLg, lg, (size_t)(n * vocab), tol);
  CHECK_MSG(fabs(loss_g - loss_c) <= tol * fabs(loss_c), "lm_head (logits) loss sum %.6f vs %.6f", loss_g, loss_c);
  /* a label outside the vocabulary is an error naming it */
  tg[n / 2] = (int32_t)vocab;
  REQUIRE_OK(gpu->be->copy(gpu->be_ctx, dTg, tg, 4 * (size_t)n, FTQ_COPY_H2D));
  d.logits = NULL, d.dh = dDh;
  CHECK_STATUS(gpu->be->lm_head(gpu->be_ctx, &d), FTQ_ERR_INVALID_ARGUMENT);
  CHECK_ERROR_MENTIONS("label");
  dfree(dH), dfree(dTl), dfree(dDh), dfree(dLg), dfree(dWt), dfree(dWk), dfree(dTg);
  free(h), free(w), free(wb), free(tg), free(tl), free(dh), free(lg), free(work);
}

int main(void) {
  int ndev = 0;
  ftq_cuda_device_count(&ndev);
  if (ndev == 0) return test_gpu_unavailable("test_ops_cuda", ftq_last_error());
  const char *qe = getenv("FTQ_TEST_QUICK");
  quick = qe && *qe && strcmp(qe, "0") != 0;
  REQUIRE_OK(ftq_context_create("cpu", NULL, &cpu));
  REQUIRE_OK(ftq_context_create("cuda:0", NULL, &gpu));
  printf("test_ops_cuda on %s%s\n", ftq_context_device_name(gpu), quick ? " (quick)" : "");

  test_embedding(37, 101, 64, FTQ_DTYPE_F32);
  if (!quick) test_embedding(515, 1000, 576, FTQ_DTYPE_BF16);

  test_rmsnorm(37, 64, FTQ_DTYPE_F32, 1, 1);
  if (!quick) {
    test_rmsnorm(5, 37, FTQ_DTYPE_F32, 0, 0);
    test_rmsnorm(129, 4096, FTQ_DTYPE_BF16, 1, 0);
    test_rmsnorm(64, 576, FTQ_DTYPE_F32, 0, 0);
  }

  test_rope(37, 4, 16, 0);
  if (!quick) {
    test_rope(130, 3, 64, 64);
    test_rope(64, 32, 128, 0);
  }
  test_swiglu(1001);
  if (!quick) test_swiglu(3 * 1000 * 1000 + 7);

  test_linear(37, 64, 96, 3, W_F32, 0.1f, 1, 0);
  test_linear(33, 80, 48, 4, W_NF4, 0.0f, 0, 0);
  if (!quick) {
    test_linear(130, 256, 192, 8, W_NF4, 0.1f, 0, 0);
    test_linear(64, 128, 320, 16, W_BF16, 0.05f, 1, 0);
    test_linear(50, 96, 64, 0, W_INT8, 0.0f, 0, 0);
    test_linear(77, 64, 65, 5, W_F32, 0.0f, 0, 1);
    test_linear(256, 512, 1024, 64, W_NF4, 0.1f, 0, 0);
  }

  test_attention(2, 37, 37, 37, 4, 2, 16, 1, 1, 0);
  test_attention(1, 3, 21, 32, 4, 2, 64, 0, 0, 0); /* decoding: 3 new queries after 18 cached keys */
  if (!quick) {
    test_attention(1, 130, 130, 130, 2, 1, 64, 1, 0, 0);
    test_attention(2, 64, 64, 64, 4, 4, 128, 0, 0, 0);
    test_attention(1, 200, 200, 200, 8, 2, 128, 0, 1, 0);
    test_attention(2, 70, 70, 70, 2, 2, 80, 1, 0, 0);
    test_attention(1, 96, 96, 96, 4, 1, 32, 0, 0, 1);
    test_attention(1, 1, 77, 80, 4, 4, 128, 0, 0, 0);
    test_attention(2, 512, 512, 512, 4, 4, 128, 0, 0, 0);
  }

  test_lm_head(37, 64, 1000, 300, FTQ_DTYPE_F32, 0);
  if (!quick) {
    test_lm_head(130, 256, 5003, 1024, FTQ_DTYPE_BF16, 0);
    test_lm_head(64, 128, 700, 700, FTQ_DTYPE_BF16, 1);
  }

  printf("test_ops_cuda: worst relative error: f32 paths %.2e, half-precision paths %.2e\n", worst_f32, worst_bf16);
  ftq_context_destroy(gpu);
  ftq_context_destroy(cpu);
  return test_finish("test_ops_cuda");
}

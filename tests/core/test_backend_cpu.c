/* CPU backend operations against float64 references computed here, and the
 * BLAS GEMM path against the plain-C one. Outputs are poisoned with NaN
 * before each call so unwritten elements show. */
#include "core/context.h"
#include "core/half.h"
#include "cpu/cpu.h"
#include "test_util.h"

static void fill_rand(float *x, size_t n, uint64_t *s) {
  for (size_t i = 0; i < n; i++) x[i] = test_rand_uniform(s);
}

/* Reference: double-precision C = alpha op(A) op(B) + beta C. */
static void ref_gemm(const ftq_gemm_args *g, const float *a, const float *b, const float *c0, double *out) {
  for (int64_t bi = 0; bi < g->batch; bi++)
    for (int64_t i = 0; i < g->m; i++)
      for (int64_t j = 0; j < g->n; j++) {
        double s = 0;
        for (int64_t p = 0; p < g->k; p++) {
          double av = g->trans_a ? a[bi * g->stride_a + p * g->lda + i] : a[bi * g->stride_a + i * g->lda + p];
          double bv = g->trans_b ? b[bi * g->stride_b + j * g->ldb + p] : b[bi * g->stride_b + p * g->ldb + j];
          s += av * bv;
        }
        size_t ci = (size_t)(bi * g->stride_c + i * g->ldc + j);
        out[ci] = g->alpha * s + (g->beta != 0 ? g->beta * (double)c0[ci] : 0.0);
      }
}

static void check_gemm(ftq_context *ctx, int m, int n, int k, int ta, int tb, int batch, float alpha, float beta,
                       int pad, uint64_t *seed) {
  ftq_gemm_args g = {0};
  g.trans_a = ta, g.trans_b = tb, g.m = m, g.n = n, g.k = k, g.alpha = alpha, g.beta = beta, g.batch = batch;
  g.a_type = g.b_type = g.c_type = FTQ_DTYPE_F32;
  g.lda = (ta ? m : k) + pad;
  g.ldb = (tb ? k : n) + pad;
  g.ldc = n + pad;
  if (g.lda < 1) g.lda = 1;
  if (g.ldb < 1) g.ldb = 1;
  g.stride_a = (int64_t)(ta ? k : m) * g.lda;
  g.stride_b = (int64_t)(tb ? n : k) * g.ldb;
  g.stride_c = (int64_t)m * g.ldc;
  size_t na = (size_t)(g.stride_a * batch), nb = (size_t)(g.stride_b * batch), nc = (size_t)(g.stride_c * batch);
  float *a = malloc(sizeof(float) * (na + 1)), *b = malloc(sizeof(float) * (nb + 1));
  float *c0 = malloc(sizeof(float) * (nc + 1)), *c = malloc(sizeof(float) * (nc + 1));
  double *ref = malloc(sizeof(double) * (nc + 1));
  fill_rand(a, na, seed);
  fill_rand(b, nb, seed);
  fill_rand(c0, nc, seed);
  ref_gemm(&g, a, b, c0, ref);
  for (int variant = 0; variant < 2; variant++) { /* 0: backend (BLAS if built), 1: plain C */
    for (size_t i = 0; i < nc; i++) c[i] = beta != 0 ? c0[i] : NAN; /* beta 0 must not read C */
    g.a = a, g.b = b, g.c = c;
    ftq_status st = variant == 0 ? ctx->be->gemm(ctx->be_ctx, &g) : ftq_cpu_gemm_plain(ctx->be_ctx, &g);
    CHECK_OK(st);
    double worst = 0;
    int unwritten = 0;
    for (int64_t bi = 0; bi < batch; bi++)
      for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
          size_t ci = (size_t)(bi * g.stride_c + (int64_t)i * g.ldc + j);
          if (isnan(c[ci])) unwritten++;
          double e = fabs(c[ci] - ref[ci]) / (1.0 + fabs(ref[ci]));
          if (e > worst) worst = e;
        }
    CHECK_MSG(unwritten == 0 && worst < 1e-5 * (1 + k / 64.0), "gemm variant %d m=%d n=%d k=%d ta=%d tb=%d batch=%d "
              "beta=%g: worst %.3g, unwritten %d", variant, m, n, k, ta, tb, batch, beta, worst, unwritten);
  }
  free(a), free(b), free(c0), free(c), free(ref);
}

int main(void) {
  ftq_context *ctx;
  ftq_options *o;
  REQUIRE_OK(ftq_options_create(&o));
  REQUIRE_OK(ftq_options_set_int(o, "num_threads", 2));
  REQUIRE_OK(ftq_context_create("cpu", o, &ctx));
  ftq_options_destroy(o);
  uint64_t seed = 11;
  const int shapes[][3] = {{1, 1, 1}, {3, 5, 7}, {17, 33, 65}, {64, 48, 96}, {129, 31, 200}, {5, 300, 1}, {2, 2, 0}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
    for (int ta = 0; ta < 2; ta++)
      for (int tb = 0; tb < 2; tb++) {
        check_gemm(ctx, shapes[s][0], shapes[s][1], shapes[s][2], ta, tb, 1, 1.0f, 0.0f, 0, &seed);
        check_gemm(ctx, shapes[s][0], shapes[s][1], shapes[s][2], ta, tb, 3, 0.5f, -1.25f, 3, &seed);
      }
  /* bad arguments */
  ftq_gemm_args g = {0};
  g.m = g.n = g.k = 2, g.lda = g.ldb = g.ldc = 2, g.batch = 1;
  g.a_type = FTQ_DTYPE_BF16, g.b_type = g.c_type = FTQ_DTYPE_F32;
  CHECK_STATUS(ctx->be->gemm(ctx->be_ctx, &g), FTQ_ERR_UNSUPPORTED);
  g.a_type = FTQ_DTYPE_F32, g.lda = 1;
  CHECK_STATUS(ctx->be->gemm(ctx->be_ctx, &g), FTQ_ERR_INVALID_ARGUMENT);

  /* elementwise and reductions */
  enum { N = 1001 };
  float x[N], y[N], y0[N];
  uint16_t h[N];
  fill_rand(x, N, &seed);
  fill_rand(y0, N, &seed);
  memcpy(y, y0, sizeof y);
  CHECK_OK(ctx->be->axpby(ctx->be_ctx, N, 2.0f, x, -0.5f, y));
  int ok = 1;
  for (int i = 0; i < N; i++) ok &= y[i] == 2.0f * x[i] + -0.5f * y0[i];
  CHECK(ok);
  for (int i = 0; i < N; i++) y[i] = NAN;
  CHECK_OK(ctx->be->axpby(ctx->be_ctx, N, 3.0f, x, 0.0f, y));
  ok = 1;
  for (int i = 0; i < N; i++) ok &= y[i] == 3.0f * x[i];
  CHECK(ok);
  CHECK_OK(ctx->be->fill(ctx->be_ctx, y, FTQ_DTYPE_F32, N, 1.5f));
  CHECK(y[0] == 1.5f && y[N - 1] == 1.5f);
  CHECK_OK(ctx->be->fill(ctx->be_ctx, h, FTQ_DTYPE_BF16, N, 1.0f));
  CHECK(h[7] == 0x3f80);
  int32_t ints[4];
  CHECK_OK(ctx->be->fill(ctx->be_ctx, ints, FTQ_DTYPE_I32, 4, -100.0f));
  CHECK(ints[3] == -100);
  CHECK_STATUS(ctx->be->fill(ctx->be_ctx, ints, FTQ_DTYPE_I32, 4, 0.5f), FTQ_ERR_INVALID_ARGUMENT);
  for (int t = 0; t < 2; t++) {
    ftq_dtype dt = t ? FTQ_DTYPE_BF16 : FTQ_DTYPE_F16;
    CHECK_OK(ctx->be->convert(ctx->be_ctx, h, dt, x, FTQ_DTYPE_F32, N));
    ok = 1;
    for (int i = 0; i < N; i++) ok &= h[i] == (t ? ftq_f32_to_bf16(x[i]) : ftq_f32_to_f16(x[i]));
    CHECK(ok);
    CHECK_OK(ctx->be->convert(ctx->be_ctx, y, FTQ_DTYPE_F32, h, dt, N));
    ok = 1;
    for (int i = 0; i < N; i++) ok &= y[i] == (t ? ftq_bf16_to_f32(h[i]) : ftq_f16_to_f32(h[i]));
    CHECK(ok);
  }
  double r, sum = 0, sq = 0, amax = 0;
  for (int i = 0; i < N; i++) sum += x[i], sq += (double)x[i] * x[i], amax = fmax(amax, fabs(x[i]));
  CHECK_OK(ctx->be->reduce(ctx->be_ctx, FTQ_REDUCE_SUM, x, FTQ_DTYPE_F32, N, &r));
  CHECK(fabs(r - sum) < 1e-9);
  CHECK_OK(ctx->be->reduce(ctx->be_ctx, FTQ_REDUCE_SUMSQ, x, FTQ_DTYPE_F32, N, &r));
  CHECK(fabs(r - sq) < 1e-9);
  CHECK_OK(ctx->be->reduce(ctx->be_ctx, FTQ_REDUCE_ABSMAX, x, FTQ_DTYPE_F32, N, &r));
  CHECK(r == amax);
  x[500] = NAN;
  CHECK_OK(ctx->be->reduce(ctx->be_ctx, FTQ_REDUCE_ABSMAX, x, FTQ_DTYPE_F32, N, &r));
  CHECK(isnan(r));
  CHECK_STATUS(ctx->be->reduce(ctx->be_ctx, FTQ_REDUCE_SUM, ints, FTQ_DTYPE_I32, 4, &r), FTQ_ERR_UNSUPPORTED);
  ftq_context_destroy(ctx);
  return test_finish("test_backend_cpu");
}

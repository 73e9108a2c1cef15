/* CUDA backend operations against the CPU backend on fresh random inputs of
 * several shapes, outputs poisoned (NaN) before every call. Skips (77)
 * where no CUDA device is usable. */
#include "core/context.h"
#include "core/half.h"
#include "test_util.h"

static ftq_context *cpu, *gpu;

static void *to_dev(const void *host, size_t bytes) {
  ftq_buffer b;
  REQUIRE_OK(ftq_buffer_alloc(gpu, FTQ_MEM_OTHER, bytes, "test buffer", &b));
  REQUIRE_OK(gpu->be->copy(gpu->be_ctx, b.ptr, host, bytes, FTQ_COPY_H2D));
  return b.ptr;
}
static void from_dev(void *host, const void *dev, size_t bytes) {
  REQUIRE_OK(gpu->be->copy(gpu->be_ctx, host, dev, bytes, FTQ_COPY_D2H));
}
static void dev_free(void *p) { gpu->be->free(gpu->be_ctx, p); }

/* Rounds an f32 array through `t` (so CPU and GPU see identical inputs) and
 * returns both the rounded f32 copy and the encoded bytes. */
static void round_through(float *x, size_t n, ftq_dtype t, uint16_t *enc) {
  for (size_t i = 0; i < n; i++) {
    if (t == FTQ_DTYPE_F16) enc[i] = ftq_f32_to_f16(x[i]), x[i] = ftq_f16_to_f32(enc[i]);
    else if (t == FTQ_DTYPE_BF16) enc[i] = ftq_f32_to_bf16(x[i]), x[i] = ftq_bf16_to_f32(enc[i]);
  }
}

static void check_gemm(int m, int n, int k, int ta, int tb, int batch, float alpha, float beta, ftq_dtype in_t,
                       ftq_dtype out_t, uint64_t *seed) {
  ftq_gemm_args g = {0};
  g.trans_a = ta, g.trans_b = tb, g.m = m, g.n = n, g.k = k, g.alpha = alpha, g.beta = beta, g.batch = batch;
  g.lda = ta ? m : k, g.ldb = tb ? k : n, g.ldc = n;
  g.stride_a = (int64_t)m * k, g.stride_b = (int64_t)k * n, g.stride_c = (int64_t)m * n;
  size_t na = (size_t)(g.stride_a * batch), nb = (size_t)(g.stride_b * batch), nc = (size_t)(g.stride_c * batch);
  float *a = malloc(4 * na), *b = malloc(4 * nb), *c0 = malloc(4 * nc), *cref = malloc(4 * nc), *cgot = malloc(4 * nc);
  uint16_t *ea = malloc(2 * na), *eb = malloc(2 * nb), *ec = malloc(2 * nc);
  for (size_t i = 0; i < na; i++) a[i] = test_rand_uniform(seed);
  for (size_t i = 0; i < nb; i++) b[i] = test_rand_uniform(seed);
  for (size_t i = 0; i < nc; i++) c0[i] = test_rand_uniform(seed);
  round_through(a, na, in_t, ea);
  round_through(b, nb, in_t, eb);
  round_through(c0, nc, out_t, ec);
  /* CPU reference in f32 on the same (rounded) values */
  memcpy(cref, c0, 4 * nc);
  g.a = a, g.b = b, g.c = cref, g.a_type = g.b_type = g.c_type = FTQ_DTYPE_F32;
  CHECK_OK(cpu->be->gemm(cpu->be_ctx, &g));
  /* GPU */
  size_t es_in = in_t == FTQ_DTYPE_F32 ? 4 : 2, es_out = out_t == FTQ_DTYPE_F32 ? 4 : 2;
  void *da = to_dev(in_t == FTQ_DTYPE_F32 ? (void *)a : (void *)ea, es_in * na);
  void *db = to_dev(in_t == FTQ_DTYPE_F32 ? (void *)b : (void *)eb, es_in * nb);
  void *dc = to_dev(out_t == FTQ_DTYPE_F32 ? (void *)c0 : (void *)ec, es_out * nc);
  if (beta == 0.0f) CHECK_OK(gpu->be->fill(gpu->be_ctx, dc, out_t, nc, NAN)); /* must not be read */
  g.a = da, g.b = db, g.c = dc, g.a_type = g.b_type = in_t, g.c_type = out_t;
  CHECK_OK(gpu->be->gemm(gpu->be_ctx, &g));
  if (out_t == FTQ_DTYPE_F32) {
    from_dev(cgot, dc, 4 * nc);
  } else {
    from_dev(ec, dc, 2 * nc);
    for (size_t i = 0; i < nc; i++) cgot[i] = out_t == FTQ_DTYPE_F16 ? ftq_f16_to_f32(ec[i]) : ftq_bf16_to_f32(ec[i]);
  }
  /* f32 accumulation on both sides: only summation order and the output
   * rounding differ */
  double out_ulp = out_t == FTQ_DTYPE_F32 ? 0 : out_t == FTQ_DTYPE_F16 ? 1.0 / 1024 : 1.0 / 128;
  int bad = 0;
  for (size_t i = 0; i < nc; i++) {
    double tol = 2e-6 * sqrt((double)k) * (1 + fabs(cref[i])) + out_ulp * fabs(cref[i]) + 1e-6;
    if (!(fabs(cgot[i] - cref[i]) <= tol)) bad++;
  }
  CHECK_MSG(bad == 0, "gemm %s->%s m=%d n=%d k=%d ta=%d tb=%d batch=%d beta=%g: %d of %zu wrong (rel err %.3g)",
            ftq_dtype_name(in_t), ftq_dtype_name(out_t), m, n, k, ta, tb, batch, beta, bad, nc,
            test_rel_error_f32(cgot, cref, nc));
  dev_free(da), dev_free(db), dev_free(dc);
  free(a), free(b), free(c0), free(cref), free(cgot), free(ea), free(eb), free(ec);
}

int main(void) {
  int ndev = 0;
  REQUIRE_OK(ftq_cuda_device_count(&ndev));
  if (ndev == 0) return test_gpu_unavailable("test_backend_cuda", ftq_last_error());
  REQUIRE_OK(ftq_context_create("cpu", NULL, &cpu));
  REQUIRE_OK(ftq_context_create("cuda:0", NULL, &gpu));
  printf("device: %s\n", ftq_context_device_name(gpu));
  CHECK(ftq_context_device_type(gpu) == FTQ_DEVICE_CUDA);
  CHECK(strncmp(ftq_context_device_name(gpu), "cuda:0 ", 7) == 0);
  uint64_t seed = 3;

  const int shapes[][3] = {{1, 1, 1}, {3, 5, 7}, {17, 33, 65}, {128, 64, 256}, {129, 31, 200}, {1000, 72, 333}};
  const ftq_dtype ins[] = {FTQ_DTYPE_F32, FTQ_DTYPE_F16, FTQ_DTYPE_BF16};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
    for (int ta = 0; ta < 2; ta++)
      for (int tb = 0; tb < 2; tb++)
        for (int t = 0; t < 3; t++) {
          check_gemm(shapes[s][0], shapes[s][1], shapes[s][2], ta, tb, 1, 1.0f, 0.0f, ins[t], FTQ_DTYPE_F32, &seed);
          check_gemm(shapes[s][0], shapes[s][1], shapes[s][2], ta, tb, 3, 0.75f, 0.5f, ins[t], ins[t], &seed);
        }
  /* the cache hands back the plan for a repeated shape */
  check_gemm(129, 31, 200, 0, 1, 1, 1.0f, 0.0f, FTQ_DTYPE_BF16, FTQ_DTYPE_F32, &seed);

  /* elementwise ops, odd lengths */
  const size_t lens[] = {1, 255, 4097, 1000003};
  for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
    size_t n = lens[li];
    float *x = malloc(4 * n), *y = malloc(4 * n), *want = malloc(4 * n), *got = malloc(4 * n);
    uint16_t *h = malloc(2 * n), *hg = malloc(2 * n);
    for (size_t i = 0; i < n; i++) x[i] = test_rand_uniform(&seed) * 100.0f, y[i] = test_rand_uniform(&seed);
    float *dx = to_dev(x, 4 * n), *dy = to_dev(y, 4 * n);
    memcpy(want, y, 4 * n);
    CHECK_OK(cpu->be->axpby(cpu->be_ctx, n, 1.5f, x, -2.0f, want));
    CHECK_OK(gpu->be->axpby(gpu->be_ctx, n, 1.5f, dx, -2.0f, dy));
    from_dev(got, dy, 4 * n);
    CHECK(memcmp(got, want, 4 * n) == 0);
    for (int t = 1; t <= 2; t++) {
      ftq_dtype dt = (ftq_dtype)t;
      void *dh = to_dev(h, 2 * n);
      CHECK_OK(gpu->be->fill(gpu->be_ctx, dh, dt, n, NAN));
      CHECK_OK(cpu->be->convert(cpu->be_ctx, h, dt, x, FTQ_DTYPE_F32, n));
      CHECK_OK(gpu->be->convert(gpu->be_ctx, dh, dt, dx, FTQ_DTYPE_F32, n));
      from_dev(hg, dh, 2 * n);
      CHECK_MSG(memcmp(h, hg, 2 * n) == 0, "convert f32->%s n=%zu", ftq_dtype_name(dt), n);
      CHECK_OK(gpu->be->fill(gpu->be_ctx, dy, FTQ_DTYPE_F32, n, NAN));
      CHECK_OK(gpu->be->convert(gpu->be_ctx, dy, FTQ_DTYPE_F32, dh, dt, n));
      CHECK_OK(cpu->be->convert(cpu->be_ctx, want, FTQ_DTYPE_F32, h, dt, n));
      from_dev(got, dy, 4 * n);
      CHECK(memcmp(got, want, 4 * n) == 0);
      for (int op = 0; op < 3; op++) {
        double rc, rg;
        CHECK_OK(cpu->be->reduce(cpu->be_ctx, (ftq_reduce_op)op, h, dt, n, &rc));
        CHECK_OK(gpu->be->reduce(gpu->be_ctx, (ftq_reduce_op)op, dh, dt, n, &rg));
        CHECK_MSG(fabs(rc - rg) <= 1e-12 * (1 + fabs(rc)) * n, "reduce op %d n=%zu: cpu %.17g gpu %.17g", op, n, rc, rg);
      }
      dev_free(dh);
    }
    CHECK_OK(gpu->be->fill(gpu->be_ctx, dy, FTQ_DTYPE_F32, n, 2.5f));
    from_dev(got, dy, 4 * n);
    CHECK(got[0] == 2.5f && got[n - 1] == 2.5f);
    x[n / 2] = NAN;
    REQUIRE_OK(gpu->be->copy(gpu->be_ctx, dx, x, 4 * n, FTQ_COPY_H2D));
    double r;
    CHECK_OK(gpu->be->reduce(gpu->be_ctx, FTQ_REDUCE_ABSMAX, dx, FTQ_DTYPE_F32, n, &r));
    CHECK(isnan(r));
    dev_free(dx), dev_free(dy);
    free(x), free(y), free(want), free(got), free(h), free(hg);
  }

  /* errors become statuses with text */
  ftq_buffer huge;
  CHECK_STATUS(ftq_buffer_alloc(gpu, FTQ_MEM_WEIGHTS, (size_t)1 << 50, "an impossible tensor", &huge),
               FTQ_ERR_DEVICE_OUT_OF_MEMORY);
  CHECK_ERROR_MENTIONS("an impossible tensor");
  ftq_gemm_args g = {0};
  g.m = g.n = g.k = 2, g.lda = g.ldb = g.ldc = 2, g.batch = 1;
  g.a_type = FTQ_DTYPE_F16, g.b_type = FTQ_DTYPE_BF16, g.c_type = FTQ_DTYPE_F32;
  CHECK_STATUS(gpu->be->gemm(gpu->be_ctx, &g), FTQ_ERR_UNSUPPORTED);
  /* the context still works after errors */
  size_t fr, tot;
  CHECK_OK(ftq_context_device_memory(gpu, &fr, &tot));
  CHECK(tot > fr && fr > 0);
  CHECK_OK(ftq_context_synchronize(gpu));
  size_t cur;
  CHECK_OK(ftq_context_memory(gpu, FTQ_MEM_OTHER, &cur, NULL));
  printf("device memory: %zu of %zu bytes free\n", fr, tot);
  ftq_context_destroy(gpu);
  ftq_context_destroy(cpu);
  return test_finish("test_backend_cuda");
}
